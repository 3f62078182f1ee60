"""Counters a peer reports, written as JSON lines (one object per evaluation)."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


@dataclass
class PeerMetrics:
    peer_id: str
    started: float = field(default_factory=time.time)
    frames_sent: int = 0
    frames_accepted: int = 0
    bans: int = 0  # neighbors banned for misbehaviour
    rejected: Counter[str] = field(default_factory=Counter)
    accepted_from: Counter[str] = field(default_factory=Counter)  # peer id -> verified frames
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, **values: Any) -> dict[str, Any]:
        now = time.time()  # "wall" is the one clock every process shares (Unix seconds); "t" is since this peer started
        row = {"t": round(now - self.started, 3), "wall": round(now, 3), "peer_id": self.peer_id, **values,
               "frames_sent": self.frames_sent, "frames_accepted": self.frames_accepted, "bans": self.bans,
               "rejected": dict(self.rejected), "accepted_from": dict(self.accepted_from)}  # fmt: skip
        self.history.append(row)
        return row


class JsonLines:
    def __init__(self, path: Path | None) -> None:
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", buffering=1)

    def write(self, row: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
