"""Signed receipts for the contribution board: "I verified and accepted N frames from peer P".

The transport counts the verified frames it accepts per neighbor (``PeerMetrics.accepted_from``);
a ``ReceiptBook`` turns those counts into receipts signed with this peer's identity key
(``protocols.crypto.receipt_message``) for its ``Report``. Counts are cumulative per *session*
(8 random bytes per process start), so the server keeps the largest per session and a replayed
receipt adds nothing. Only receipts whose count changed since the last report are sent (at
most ``MAX_RECEIPTS``, the largest change first), each unchanged one again after a minute (a
report may have been dropped), and all of them again on a new signaling session: the server may
have restarted and forgotten them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.crypto import MAX_RECEIPT_FRAMES, RECEIPT_SESSION_SIZE, peer_id_of, public_key_bytes, receipt_message, sign
from protocols.signaling import MAX_RECEIPTS, Receipt


def make_receipt(key: Ed25519PrivateKey, swarm_id: str, peer_id: str, session: bytes, frames: int) -> Receipt:
    """One receipt, signed by ``key``: its holder vouches for ``frames`` frames from ``peer_id``."""
    voucher = peer_id_of(public_key_bytes(key))
    signature = sign(key, receipt_message(swarm_id, voucher, peer_id, session, frames))
    return Receipt(peer_id=peer_id, session=session.hex(), frames=frames, signature=signature.hex())


REFRESH_S = 60.0  # a receipt not sent for this long is sent again (a report may have been dropped)


class ReceiptBook:
    def __init__(self, key: Ed25519PrivateKey, swarm_id: str, counts: Mapping[str, int], session: bytes | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.key, self.swarm_id, self.counts, self.clock = key, swarm_id, counts, clock
        self.peer_id = peer_id_of(public_key_bytes(key))
        self.session = session if session is not None else os.urandom(RECEIPT_SESSION_SIZE)
        self.sent: dict[str, tuple[int, float]] = {}  # peer id -> (frames, when) of the last receipt sent

    def resend_all(self) -> None:
        """Forget what was sent: the next reports carry a receipt for every neighbor again."""
        self.sent.clear()

    def due(self, limit: int = MAX_RECEIPTS) -> list[Receipt]:
        """Receipts for the neighbors whose count grew since the last report, largest growth first,
        then those not sent for ``REFRESH_S``, oldest first: a report the server dropped (rate
        limits, a session that ended while it was in flight) costs a minute at most."""
        now = self.clock()
        ranked: list[tuple[int, float, str, int]] = []
        for peer, count in list(self.counts.items()):
            frames = min(count, MAX_RECEIPT_FRAMES)
            if peer == self.peer_id or frames <= 0:
                continue
            last = self.sent.get(peer)
            if last is None or last[0] != frames:
                ranked.append((0, (last[0] if last else 0) - frames, peer, frames))
            elif now - last[1] >= REFRESH_S:
                ranked.append((1, last[1], peer, frames))
        ranked.sort()
        receipts = []
        for _, _, peer, frames in ranked[:limit]:
            receipts.append(make_receipt(self.key, self.swarm_id, peer, self.session, frames))
            self.sent[peer] = (frames, now)
        return receipts
