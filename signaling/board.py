"""The contribution board of a swarm: credit from signed receipts, claims shown as claims.

Peers send ``Report`` messages over signaling: their own claims (steps, test accuracy) and
**receipts**, each signed by the reporting peer's identity key, saying "I verified and accepted
N frames from peer P in this swarm during my session S" (``protocols.crypto.receipt_message``).
Weights never reach the server. What the board believes:

- **Credit is evidence.** A peer's credit is the number of distinct keys holding a verified
  receipt for it (``vouching_peers``), each key counted once however often or however much it
  vouches; ``updates_verified_by_others`` adds up the frames those receipts vouch for, each
  voucher's share bounded by what the receiver's frame rate limit allows in the time both keys
  have been known here. Self-reported steps never count.
- **A receipt is admitted only if** it is about another known peer of the swarm, is news (more
  frames than the same session already vouched: a replay adds nothing), fits the rate bound
  (``over_claim`` otherwise) and its signature verifies against the reporter's joined key. The
  cheap checks run first, and reports are rate-limited, so receipts cost the server at most a
  few Ed25519 verifications per member per second. Refusals are counted by reason.
- **The swarm's accuracy is corroborated**: the lower median of the claims of peers that at
  least one other key vouched for, shown only when there are two or more such claims. One
  claim of 1.0 cannot set it; a majority of vouched keys can (see docs/THREAT_MODEL.md).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocols.crypto import receipt_message, verify
from protocols.errors import SignatureError
from protocols.signaling import PeerInfo, Receipt, Report

MAX_PEERS = 1024  # per swarm, the least recently active forgotten first
MAX_VOUCHERS = 64  # remembered per credited peer, the most recent
# the receiver's per-neighbor frame rate limit (docs/PROTOCOL.md, `rate_limited`): no honest
# peer accepts more frames than this from one neighbor, so no receipt may vouch for more
FRAME_RATE = 20.0
FRAME_BURST = 40
REPORT_RATE = 0.5  # reports per second per peer, sustained (peers report every 10 s)
REPORT_BURST = 4


class Refusal:
    """Why a receipt or a report gave no credit; each a one-line meaning."""

    SELF = "self"  # a receipt about the reporter itself
    UNKNOWN_PEER = "unknown_peer"  # about a peer id that never joined this swarm here
    STALE = "stale"  # no more frames than the same session already vouched (a replay)
    OVER_CLAIM = "over_claim"  # more frames than the frame rate limit allows since both keys were known
    BAD_SIGNATURE = "bad_signature"  # does not verify against the reporter's key
    REPORT_RATE = "report_rate"  # the whole report: sent faster than REPORT_RATE


@dataclass
class Vouch:
    """One voucher's latest evidence for one peer."""

    voucher_key: str
    receipt: Receipt
    retired: int = 0  # frames vouched in the voucher's earlier sessions
    at: float = 0.0

    @property
    def frames(self) -> int:
        return self.retired + self.receipt.frames


@dataclass
class Entry:
    peer_id: str
    client: str
    public_key: str
    first_seen: float
    step: int | None = None  # claims: what the peer says of itself
    test_acc: float | None = None
    last_report: float | None = None
    report_tokens: float = REPORT_BURST
    report_stamp: float | None = None  # when the report bucket was last refilled
    vouches: OrderedDict[str, Vouch] = field(default_factory=OrderedDict)  # voucher peer id -> evidence


class Board:
    def __init__(self, swarm_id: str, clock: Callable[[], float] = time.time) -> None:
        self.swarm_id = swarm_id
        self.clock = clock
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.refused: Counter[str] = Counter()

    # ---- input ------------------------------------------------------------------------
    def joined(self, info: PeerInfo) -> Entry:
        """A member joined (its key proved at join): it may now be vouched for and vouch."""
        entry = self.entries.pop(info.peer_id, None)
        if entry is None or entry.public_key != info.public_key:
            entry = Entry(info.peer_id, info.client, info.public_key, self.clock())
        entry.client = info.client
        self.entries[info.peer_id] = entry
        while len(self.entries) > MAX_PEERS:
            self.entries.popitem(last=False)
        return entry

    def update(self, info: PeerInfo, report: Report) -> bool:
        """Take a member's report; False if it came too soon after the last (dropped whole)."""
        now = self.clock()
        entry = self.entries.get(info.peer_id)
        if entry is None or entry.public_key != info.public_key:
            entry = self.joined(info)
        if not self._take_report_token(entry, now):
            self.refused[Refusal.REPORT_RATE] += 1
            return False
        self.entries.move_to_end(info.peer_id)
        entry.step, entry.test_acc, entry.last_report = report.step, report.test_acc, now
        outcomes = [self._admit(entry, receipt, now) for receipt in report.receipts]
        self.refused.update(o for o in outcomes if o)
        return True

    def _take_report_token(self, entry: Entry, now: float) -> bool:
        elapsed = 0.0 if entry.report_stamp is None else max(0.0, now - entry.report_stamp)
        entry.report_stamp = now
        entry.report_tokens = min(REPORT_BURST, entry.report_tokens + elapsed * REPORT_RATE)
        if entry.report_tokens < 1:
            return False
        entry.report_tokens -= 1
        return True

    def _admit(self, voucher: Entry, receipt: Receipt, now: float) -> str:
        """Check one receipt, cheapest checks first, the signature last; store it if admitted."""
        if receipt.peer_id == voucher.peer_id:
            return Refusal.SELF
        target = self.entries.get(receipt.peer_id)
        if target is None:
            return Refusal.UNKNOWN_PEER
        prev = target.vouches.get(voucher.peer_id)
        if prev is not None and prev.voucher_key != voucher.public_key:
            prev = None  # evidence of an older key with this id cannot be (ids are key hashes): start over
        same_session = prev is not None and prev.receipt.session == receipt.session
        if same_session and receipt.frames <= prev.receipt.frames:  # type: ignore[union-attr]
            return Refusal.STALE
        retired = 0 if prev is None else prev.retired + (0 if same_session else prev.receipt.frames)
        since = max(voucher.first_seen, target.first_seen)
        if retired + receipt.frames > FRAME_BURST + FRAME_RATE * max(0.0, now - since):
            return Refusal.OVER_CLAIM
        message = receipt_message(self.swarm_id, voucher.peer_id, receipt.peer_id,
                                  bytes.fromhex(receipt.session), receipt.frames)  # fmt: skip
        try:
            verify(bytes.fromhex(voucher.public_key), bytes.fromhex(receipt.signature), message)
        except SignatureError:
            return Refusal.BAD_SIGNATURE
        target.vouches.pop(voucher.peer_id, None)
        target.vouches[voucher.peer_id] = Vouch(voucher.public_key, receipt, retired, now)
        while len(target.vouches) > MAX_VOUCHERS:
            target.vouches.popitem(last=False)
        return ""

    # ---- output -----------------------------------------------------------------------
    def swarm_accuracy(self) -> float | None:
        """The lower median of the accuracy claims of vouched peers; None below two such claims."""
        claims = sorted(e.test_acc for e in self.entries.values() if e.test_acc is not None and e.vouches)
        return claims[(len(claims) - 1) // 2] if len(claims) >= 2 else None

    def receipts(self, peer_id: str) -> list[dict[str, Any]] | None:
        """The evidence for one peer: each voucher's latest receipt, re-verifiable by anyone."""
        entry = self.entries.get(peer_id)
        if entry is None:
            return None
        return [{"voucher": v, "voucher_key": vouch.voucher_key, **vouch.receipt.model_dump()}
                for v, vouch in entry.vouches.items()]  # fmt: skip

    def summary(self, online: set[str]) -> dict[str, Any]:
        now = self.clock()
        rows = [
            {"peer_id": e.peer_id, "client": e.client, "online": e.peer_id in online,
             "vouching_peers": len(e.vouches), "updates_verified_by_others": sum(v.frames for v in e.vouches.values()),
             "claimed_steps": e.step, "claimed_test_acc": e.test_acc,
             "last_report_age_s": None if e.last_report is None else round(now - e.last_report, 1)}
            for e in self.entries.values()
        ]  # fmt: skip
        rows.sort(key=lambda r: (-r["vouching_peers"], -r["updates_verified_by_others"], r["peer_id"]))
        return {"swarm_accuracy": self.swarm_accuracy(), "refused_receipts": dict(self.refused), "peers": rows}
