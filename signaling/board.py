"""The contribution board of a swarm: what each peer reports, credited by the others.

Peers send ``Report`` messages (step, test accuracy, verified updates accepted per neighbor)
over signaling; weights never reach the server. A peer's *contribution* is the number of its
updates that other peers say they verified and accepted, so a peer cannot vouch for itself;
its own claims (steps, accuracy) are shown as claims.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from protocols.signaling import PeerInfo, Report

MAX_PEERS = 1024  # per swarm, the least recently reporting forgotten first


@dataclass
class Entry:
    peer_id: str
    client: str
    step: int = 0
    test_acc: float | None = None
    accepted_from: dict[str, int] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.time)


class Board:
    def __init__(self) -> None:
        self.entries: OrderedDict[str, Entry] = OrderedDict()

    def update(self, info: PeerInfo, report: Report) -> None:
        entry = self.entries.pop(info.peer_id, None) or Entry(info.peer_id, info.client)
        entry.step, entry.test_acc, entry.last_seen = report.step, report.test_acc, time.time()
        entry.accepted_from = {k: v for k, v in report.accepted_from.items() if k != info.peer_id}
        self.entries[info.peer_id] = entry
        while len(self.entries) > MAX_PEERS:
            self.entries.popitem(last=False)

    def best_accuracy(self) -> float | None:
        accs = [e.test_acc for e in self.entries.values() if e.test_acc is not None]
        return max(accs) if accs else None

    def summary(self, online: set[str]) -> dict[str, Any]:
        verified: dict[str, int] = {}
        vouchers: dict[str, int] = {}
        for e in self.entries.values():
            for peer, count in e.accepted_from.items():
                verified[peer] = verified.get(peer, 0) + count
                vouchers[peer] = vouchers.get(peer, 0) + 1
        rows = [
            {"peer_id": e.peer_id, "client": e.client, "online": e.peer_id in online, "steps": e.step,
             "test_acc": e.test_acc, "updates_verified_by_others": verified.get(e.peer_id, 0),
             "vouching_peers": vouchers.get(e.peer_id, 0), "last_report_age_s": round(time.time() - e.last_seen, 1)}
            for e in self.entries.values()
        ]  # fmt: skip
        rows.sort(key=lambda r: (-r["updates_verified_by_others"], r["peer_id"]))
        return {"best_accuracy": self.best_accuracy(), "peers": rows}
