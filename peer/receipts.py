"""Signed receipts for the contribution board: "I verified and accepted N frames from peer P".

The transport counts the verified frames it accepts per neighbor (``PeerMetrics.accepted_from``);
a ``ReceiptBook`` turns those counts into receipts signed with this peer's identity key
(``protocols.crypto.receipt_message``) for its ``Report``. Counts are cumulative per *session*
(8 random bytes per process start), so the server keeps the largest per session and a replayed
receipt adds nothing. Only receipts whose count changed since the last report are sent (at
most ``MAX_RECEIPTS``, the largest change first), and all of them again on a new signaling
session: the server may have restarted and forgotten them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.crypto import MAX_RECEIPT_FRAMES, RECEIPT_SESSION_SIZE, peer_id_of, public_key_bytes, receipt_message, sign
from protocols.signaling import MAX_RECEIPTS, Receipt


def make_receipt(key: Ed25519PrivateKey, swarm_id: str, peer_id: str, session: bytes, frames: int) -> Receipt:
    """One receipt, signed by ``key``: its holder vouches for ``frames`` frames from ``peer_id``."""
    voucher = peer_id_of(public_key_bytes(key))
    signature = sign(key, receipt_message(swarm_id, voucher, peer_id, session, frames))
    return Receipt(peer_id=peer_id, session=session.hex(), frames=frames, signature=signature.hex())


class ReceiptBook:
    def __init__(self, key: Ed25519PrivateKey, swarm_id: str, counts: Mapping[str, int], session: bytes | None = None) -> None:
        self.key, self.swarm_id, self.counts = key, swarm_id, counts
        self.peer_id = peer_id_of(public_key_bytes(key))
        self.session = session if session is not None else os.urandom(RECEIPT_SESSION_SIZE)
        self.sent: dict[str, int] = {}  # peer id -> frames of the last receipt sent

    def resend_all(self) -> None:
        """Forget what was sent: the next reports carry a receipt for every neighbor again."""
        self.sent.clear()

    def due(self, limit: int = MAX_RECEIPTS) -> list[Receipt]:
        """Receipts for the neighbors whose count grew since the last report, largest growth first."""
        changed = [(peer, min(n, MAX_RECEIPT_FRAMES)) for peer, n in list(self.counts.items())
                   if peer != self.peer_id and n > 0 and min(n, MAX_RECEIPT_FRAMES) != self.sent.get(peer)]  # fmt: skip
        changed.sort(key=lambda item: (self.sent.get(item[0], 0) - item[1], item[0]))
        receipts = []
        for peer, frames in changed[:limit]:
            receipts.append(make_receipt(self.key, self.swarm_id, peer, self.session, frames))
            self.sent[peer] = frames
        return receipts
