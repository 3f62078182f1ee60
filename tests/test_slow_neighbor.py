"""Issue 15: local training never waits for the network.

A deliberately slow neighbor (a real WebRTC peer in this test) accepts every proposal at once
but answers each request only after ``SLOW_S`` seconds, inside the exchange deadline. Before
exchanges ran beside training, such a neighbor cut an honest peer from about 100 to 7.5 steps
per second. The honest peer's step rate while an exchange with it is pending is compared with
its own rate before it had any neighbor, in the same run (so a loaded machine slows both).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import PeerProcess, spawn_peer
from apps.publish import default_publication, upload
from peer.fetch import fetch_manifest
from peer.ice import use_candidate_addresses
from peer.link import PeerLink
from peer.mesh import Mesh, MeshConfig
from protocols.frame import FrameKind, build_frame, decode_frame, parse_header
from protocols.manifest import TrainingConfig

SLOW_S = 6.0  # the default exchange deadline for this model is 10 s


def _step_at(rows: list[dict[str, Any]], wall: float) -> float:
    """The peer's step at wall-clock time ``wall``, interpolated between its metrics rows."""
    walls = np.array([r["wall"] for r in rows])
    steps = np.array([r["step"] for r in rows], dtype=float)
    return float(np.interp(wall, walls, steps))


@pytest.mark.timeout(600)
async def test_a_neighbor_that_answers_just_inside_the_deadline_does_not_stall_training(
    server: str, publisher_key: Any, tmp_path: Path
) -> None:
    pub = await asyncio.to_thread(default_publication, publisher_key, swarm_id="5107" * 8,
                                  training=TrainingConfig(eval_every=50))  # fmt: skip
    join = (await upload(server, pub))["join_url"]
    honest: PeerProcess = spawn_peer(join, tmp_path, "honest", "--eval-limit", "100")
    slow: Mesh | None = None
    try:
        async with asyncio.timeout(120):  # alone first: its own step rate with nobody to wait for
            while len(honest.rows) < 3 or honest.rows[-1]["step"] < 500:
                assert honest.proc.poll() is None, honest.log.read_text()[-3000:]
                await asyncio.sleep(0.3)
                honest.poll_metrics()
        key = Ed25519PrivateKey.generate()
        seq = 0
        pending: list[tuple[float, float]] = []  # (request arrived, response sent), wall clock

        def frame(link: PeerLink, kind: FrameKind, exchange_id: int, **fields: Any) -> Any:
            def build() -> bytes:
                nonlocal seq
                seq += 1
                return build_frame(key, kind=kind, swarm_id=bytes.fromhex(pub.manifest.swarm_id),
                                   model_id=bytes.fromhex(model_id), receiver=link.remote_key, session=1, seq=seq,
                                   exchange_id=exchange_id, **fields).encode()  # fmt: skip

            return build

        async def answer_slowly(link: PeerLink, data: bytes) -> None:
            header = parse_header(data)[0]
            if header.kind == FrameKind.EXCHANGE_PROPOSE:
                await link.send(frame(link, FrameKind.EXCHANGE_ACCEPT, header.exchange_id, sample_weight=0.0, step=0))
            elif header.kind == FrameKind.EXCHANGE_REQUEST:
                arrived = time.time()
                tensors = decode_frame(data).tensors()  # echo its own model: the merge changes nothing
                await asyncio.sleep(SLOW_S)
                await link.send(frame(link, FrameKind.EXCHANGE_RESPONSE, header.exchange_id,
                                      sample_weight=header.sample_weight, step=header.step, tensors=tensors))  # fmt: skip
                pending.append((arrived, time.time()))

        async with aiohttp.ClientSession() as http:
            model_id = (await fetch_manifest(http, server, pub.manifest.swarm_id))[0].model_id
        use_candidate_addresses(["127.0.0.1"])
        slow = Mesh(key, server.replace("http", "ws", 1) + "/ws", pub.manifest.swarm_id, MeshConfig(degree=1, max_degree=1),
                    max_frame_size=1 << 21, on_frame=answer_slowly)  # fmt: skip
        await asyncio.wait_for(slow.start(), 30)
        honest.poll_metrics()
        alone = [r for r in honest.rows if r["neighbors"] == 0][1:]  # after its first evaluation, before any link
        slow.accept_links()
        async with asyncio.timeout(120):
            while len(pending) < 3:
                assert honest.proc.poll() is None, honest.log.read_text()[-3000:]
                await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        honest.poll_metrics()
        alone_rate = (alone[-1]["step"] - alone[0]["step"]) / (alone[-1]["wall"] - alone[0]["wall"])
        waits = [(_step_at(honest.rows, t1) - _step_at(honest.rows, t0)) / (t1 - t0) for t0, t1 in pending]
        print(f"steps/s alone {alone_rate:.1f}; while an exchange waited {SLOW_S:.0f} s: {[round(w, 1) for w in waits]}")
        assert alone_rate > 0
        assert np.median(waits) > 0.25 * alone_rate, (alone_rate, waits)  # trained on while waiting (it was 0.075x)
        last = honest.rows[-1]
        assert last["exchanges"]["timeout"] == 0 and last["exchanges"]["merged"] >= 3, last["exchanges"]
    finally:
        if slow is not None:
            await slow.close()
        honest.terminate()
        await honest.wait(60)
    assert "Traceback" not in honest.log.read_text()
