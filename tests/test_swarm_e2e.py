"""End to end: signaling server + 3 headless Python peers (subprocesses) over real aiortc.

The peers train the default MLP on real MNIST shards; a rogue peer with a valid key joins
and sends tampered frames, every one of which must be rejected while training goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.procs import PeerProcess, spawn_peer
from apps.publish import upload
from peer.averaging import consensus_distance

from rogue import join_rogue

MAX_STEPS = 1500  # then the peers stop training and keep gossiping: consensus must follow
TARGET = 0.85


@pytest.fixture
async def peers(server: str, default_publication: Any, tmp_path: Path) -> AsyncIterator[tuple[str, list[PeerProcess]]]:
    reply = await upload(server, default_publication)
    procs = [spawn_peer(reply["join_url"], tmp_path, f"peer{i}", "--max-steps", str(MAX_STEPS),
                        "--seed", str(i)) for i in range(3)]  # fmt: skip
    try:
        yield reply["join_url"], procs
    finally:
        for p in procs:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in procs))


def _ok(row: dict[str, Any] | None, others: set[str], rejects: int) -> bool:
    return (row is not None and row["test_acc"] >= TARGET and row["step"] >= MAX_STEPS
            and others <= set(row["accepted_from"]) and sum(row["rejected"].values()) >= rejects)  # fmt: skip


async def test_three_peers_train_together_and_reject_a_rogue(peers: tuple[str, list[PeerProcess]], tmp_path: Path) -> None:
    join_url, procs = peers
    # the rogue arrives once the peers are up and linked
    async with asyncio.timeout(120):
        while not all((r := p.latest) is not None and r["neighbors"] >= 2 for p in procs):
            assert all(p.proc.poll() is None for p in procs), "a peer exited early; see its log"
            await asyncio.sleep(0.5)
    rogue, sent_per_peer, declined = await join_rogue(join_url, len(procs))
    try:
        ids = {p.latest["peer_id"] for p in procs}  # type: ignore[index]
        deadline = time.monotonic() + 240
        while not all(_ok(p.latest, ids - {p.latest["peer_id"]}, sent_per_peer) for p in procs):  # type: ignore[index]
            assert time.monotonic() < deadline, [p.latest for p in procs]
            assert all(p.proc.poll() is None for p in procs), "a peer exited early; see its log"
            await asyncio.sleep(0.5)
    finally:
        await rogue.close()
    # gossip without training pulls the models together: wait until every peer's latest
    # exchange found its neighbor close, relative to how far apart training had pushed them
    spread = max(r["neighbor_distance"] or 0 for p in procs for r in p.rows if r["step"] < MAX_STEPS)
    assert spread > 0

    def converged(p: PeerProcess) -> bool:
        # any exchange after training stopped that found the neighbor close counts: a peer whose
        # later tries are declined (its neighbors were busy with each other) keeps its last value
        p.poll_metrics()
        return any(r["step"] >= MAX_STEPS and r["neighbor_distance"] is not None
                   and r["neighbor_distance"] < 0.02 * spread for r in p.rows)  # fmt: skip

    deadline = time.monotonic() + 180
    while not all(converged(p) for p in procs):
        assert time.monotonic() < deadline, [(p.latest or {}).get("exchanges") for p in procs]
        await asyncio.sleep(0.5)
    for p in procs:
        p.terminate()
    codes = await asyncio.gather(*(p.wait(60) for p in procs))
    assert codes == [0, 0, 0]

    for p in procs:
        p.poll_metrics()
        first, final = p.rows[0], p.rows[-1]
        # from the initial weights, or from a neighbor's model pulled on joining (a late starter)
        assert final["final"] and (first["test_acc"] < 0.3 or first["pulled_from"] in ids) and TARGET <= final["test_acc"]
        assert final["frames_sent"] > 0 and final["frames_accepted"] > 0
        # the rogue's declines are honest frames; anything it sent beyond them was tampered
        assert final["accepted_from"].get(rogue.peer_id, 0) <= declined.get(final["peer_id"], 0), "a tampered frame was accepted"
        expected = {"bad_digest", "bad_signature", "wrong_swarm", "wrong_model", "wrong_receiver", "non_finite", "bad_shape"}
        assert expected <= set(final["rejected"]), final["rejected"]
        assert final["exchanges"]["merged"] + final["served"] > 0
        # the publisher's target (signed into the manifest) is what a peer reports reaching
        hit = [r["step"] for r in p.rows if r["test_acc"] >= final["target_accuracy"]]
        assert final["target_accuracy"] == 0.90 and final["target_reached_step"] == (hit[0] if hit else None)
        log = p.log.read_text()
        assert "Traceback" not in log, log[-3000:]

    weights = await asyncio.to_thread(_checkpoint_weights, [tmp_path / f"peer{i}-checkpoint" for i in range(3)])
    final_distance = consensus_distance(weights)
    assert final_distance < 0.1 * spread, (final_distance, spread)


def _checkpoint_weights(dirs: list[Path]) -> list[list[np.ndarray]]:
    from peer.checkpoint import load_weights

    return [load_weights(d) for d in dirs]
