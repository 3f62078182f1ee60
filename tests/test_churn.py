"""Churn over real WebRTC: 6 peers train, 3 are SIGKILLed mid-training and 2 newcomers join.

The newcomers pull a neighbor's current model before training (so they start near the swarm's
accuracy, not from the initial weights); the survivors drop the dead neighbors within a bounded
time; everyone left reaches the target, and no peer logs an unhandled exception.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from apps.procs import PeerProcess, spawn_peer
from apps.publish import upload

TARGET = 0.88
DROP_WITHIN_S = 60.0  # exchange timeout (10 s) + connection-failure detection, with margin on 2 loaded cores


async def _wait(what: str, timeout: float, ok: Any, procs: list[PeerProcess]) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert all(p.proc.poll() is None for p in procs), f"a peer exited while waiting for {what}"
        assert time.monotonic() < deadline, (what, [p.latest for p in procs])
        await asyncio.sleep(1)


@pytest.mark.timeout(900)  # its own deadlines bound each phase
async def test_swarm_survives_churn_and_newcomers_catch_up(server: str, default_publication: Any, tmp_path: Path) -> None:
    join_url = (await upload(server, default_publication))["join_url"]
    common = ("--eval-limit", "1000")
    first = [spawn_peer(join_url, tmp_path, f"peer{i}", "--seed", str(i), *common) for i in range(6)]
    newcomers: list[PeerProcess] = []
    try:
        await _wait("six linked peers past 0.85", 300,
                    lambda: all((r := p.latest) and r["neighbors"] >= 2 and r["test_acc"] >= 0.85 for p in first), first)  # fmt: skip
        killed, survivors = first[:3], first[3:]
        killed_ids = {p.latest["peer_id"] for p in killed}  # type: ignore[index]
        # the survivors that had a killed peer as a neighbor: the ones that must notice (6 peers of degree 4: some do)
        linked = [p for p in survivors if killed_ids & set(p.latest["neighbor_ids"])]  # type: ignore[index]
        assert linked, [p.latest for p in survivors]
        for p in killed:
            p.proc.kill()  # SIGKILL: no goodbye to anyone
        killed_at, killed_wall = time.monotonic(), time.time()
        newcomers = [spawn_peer(join_url, tmp_path, f"new{i}", "--seed", str(10 + i), *common) for i in range(2)]
        everyone = survivors + newcomers

        def dropped(p: PeerProcess) -> bool:
            """A row written after the kill lists none of the killed peers as neighbors."""
            r = p.latest
            return r is not None and r["wall"] > killed_wall and not killed_ids & set(r["neighbor_ids"])

        await _wait("survivors to drop the dead neighbors", DROP_WITHIN_S, lambda: all(dropped(p) for p in linked), survivors)
        dropped_after = time.monotonic() - killed_at

        await _wait("everyone left at the target", 300,
                    lambda: all((r := p.latest) and r["test_acc"] >= TARGET and r["neighbors"] >= 1 for p in everyone), everyone)  # fmt: skip
        for p in newcomers:
            first_row = p.rows[0]
            assert first_row["pulled_from"] is not None, "a newcomer trained before pulling a neighbor's model"
            assert first_row["pulled_from"] not in killed_ids
            # it started where the swarm was, not from the initial weights (about 0.1 accuracy)
            assert first_row["step"] == 0 and first_row["test_acc"] >= 0.8, first_row
        assert dropped_after < DROP_WITHIN_S
    finally:
        for p in first + newcomers:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in first + newcomers))
    for p in first[3:] + newcomers:
        text = p.log.read_text()
        assert "Traceback" not in text and "never retrieved" not in text, f"{p.name}: {text[-3000:]}"
        assert p.proc.returncode == 0, p.name
