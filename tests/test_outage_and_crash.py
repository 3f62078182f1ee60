"""Reliability with real processes: a signaling outage mid-training, and SIGKILL then resume."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from apps.procs import PeerProcess, free_port, spawn_peer, start_server
from apps.publish import upload

OUTAGE_S = float(os.environ.get("SWARM_TEST_OUTAGE_S", "10"))  # docs/RELIABILITY.md runs it with 30


async def _until(predicate: Any, timeout: float, procs: list[PeerProcess]) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            assert all(p.proc.poll() is None for p in procs), "a peer exited; see its log"
            await asyncio.sleep(0.3)


async def test_the_mesh_keeps_training_through_a_signaling_outage(default_publication: Any, tmp_path: Path) -> None:
    port = free_port()
    runner, base = await start_server(tmp_path / "server", port=port)
    procs: list[PeerProcess] = []
    try:
        join = (await upload(base, default_publication))["join_url"]
        procs = [spawn_peer(join, tmp_path, f"peer{i}", "--eval-limit", "500", "--seed", str(i)) for i in range(2)]
        await _until(lambda: all((r := p.latest) and r["neighbors"] >= 1 and r["step"] >= 100 for p in procs), 120, procs)
        await runner.cleanup()  # the server goes away; the WebRTC links do not need it
        before = [p.latest for p in procs]
        await asyncio.sleep(OUTAGE_S)
        during = [p.latest for p in procs]
        for b, d, p in zip(before, during, procs, strict=True):
            assert d["signaling"] is False, d  # the peer noticed the outage...
            assert d["step"] > b["step"] and d["exchanges"]["merged"] + d["served"] > b["exchanges"]["merged"] + b["served"]
            rows = [r for r in p.rows if r["t"] > b["t"]]
            assert rows and min(r["test_loss"] for r in rows) < b["test_loss"], (b, rows)  # ...and kept learning
        runner, base = await start_server(tmp_path / "server", port=port)  # same port and data: it comes back
        await _until(lambda: all((r := p.latest) and r["signaling"] for p in procs), 60, procs)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as resp:
            assert (await resp.json())["peers"] == 2
    finally:
        for p in procs:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in procs))
        await runner.cleanup()
    for p in procs:
        assert "Traceback" not in p.log.read_text()


async def test_a_killed_peer_resumes_from_its_last_checkpoint(server: str, default_publication: Any, tmp_path: Path) -> None:
    join = (await upload(server, default_publication))["join_url"]
    args = ("--eval-limit", "500", "--checkpoint-interval", "1")
    peer = spawn_peer(join, tmp_path, "peer", *args)
    state_file = tmp_path / "peer-checkpoint" / "state.json"
    try:
        await _until(lambda: state_file.is_file() and json.loads(state_file.read_text())["step"] >= 200, 120, [peer])
    finally:
        os.killpg(peer.proc.pid, signal.SIGKILL)  # no chance to save anything more
        peer.proc.wait(30)
    state = json.loads(state_file.read_text())
    assert not list((tmp_path / "peer-checkpoint").glob(".tmp-*/state.json"))

    weights = await asyncio.to_thread(_checkpoint_accuracy, tmp_path / "peer-checkpoint", default_publication)
    (tmp_path / "peer.jsonl").rename(tmp_path / "before.jsonl")
    again = spawn_peer(join, tmp_path, "peer", *args)  # same identity and checkpoint directory
    try:
        await _until(lambda: again.latest is not None, 120, [again])
        first = again.rows[0]
        assert first["step"] == state["step"]
        assert abs(first["test_acc"] - weights) < 1e-9  # the very weights of the checkpoint
        await _until(lambda: again.latest["step"] > state["step"], 60, [again])  # type: ignore[index]
    finally:
        again.terminate()
        await again.wait(60)


def _checkpoint_accuracy(directory: Path, publication: Any) -> float:
    """Test accuracy of the checkpointed weights on the peer's evaluation examples (the first 500)."""
    from peer.checkpoint import load_weights
    from peer.trainer import Trainer
    from protocols.dataset import decode_shard

    m = publication.manifest
    test = decode_shard(publication.blobs[m.dataset.test.digest])
    trainer = Trainer(m, publication.blobs[m.model.initial_weights.digest], test, test)
    trainer.set_weights([np.asarray(w) for w in load_weights(directory)])
    return trainer.evaluate(500)[1]
