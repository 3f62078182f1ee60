"""One end of a two-process gossip exchange, through the product's own link, transport and engine.

Run by ``benchmarks/exchange_time.py``, never by hand. Both ends are what ``swarm join`` runs
for an exchange: a ``peer.link.PeerLink`` over aiortc (the installed aiortc, or stock aiortc
when the parent puts it first on PYTHONPATH), ``peer.transport.MeshTransport`` with a
``FrameVerifier``, and ``peer.gossip.GossipEngine`` over the default MLP's weights held as
numpy arrays (no TensorFlow: the exchange, not a training step, is timed). uvloop, as the CLI.

Signaling is JSON lines on stdin/stdout: the initiator prints ``{"sdp": offer}`` and reads the
answer; the responder reads the offer and prints ``{"sdp": answer}``. The initiator runs one
warm-up exchange, then ``--rounds`` timed ones, one starting every ``--interval-ms`` (``GossipEngine.initiate``: propose, accept,
request, verification, averaging and response, merge), and prints
``{"result": {"ms": [...], "cpu_s": ...}}``; the responder prints its own result
(``served``, ``cpu_s`` since the warm-up was served) once the parent writes ``{"stop": true}``.
CPU is the whole process's (every thread) over the timed exchanges.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import numpy as np
import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.dc_endpoint import emit, read_line
from peer.gossip import GossipEngine, Outcome, Update
from peer.ice import use_candidate_addresses
from peer.link import PeerLink
from peer.metrics import PeerMetrics
from peer.transport import MeshTransport
from peer.verifier import FrameVerifier
from protocols.crypto import peer_id_of, public_key_bytes
from protocols.signaling import PeerInfo

SHAPES = [(784, 128), (128,), (128, 10), (10,)]  # the default MLP, in weight order
SWARM, MODEL = bytes(range(16)), bytes(range(32))
MAX_FRAME = 4 * 1024 * 1024
TIMEOUT_S = 60.0  # per exchange; a benchmark exchange that takes this long is a failure
OPEN_TIMEOUT_S = 30.0


class ArrayModel:
    """gossip.LocalModel over plain arrays (the trainer's current/assign without TensorFlow)."""

    def __init__(self, weights: list[np.ndarray], weight: float) -> None:
        self.lock = asyncio.Lock()
        self.weights, self.weight = weights, weight

    def current(self) -> Update:
        return Update([w.copy() for w in self.weights], self.weight, 0)

    def assign(self, weights: list[np.ndarray], weight: float) -> None:
        self.weights, self.weight = weights, weight


async def run(role: str, key: Ed25519PrivateKey, peer_key: bytes, rounds: int, seed: int, interval_s: float) -> None:
    use_candidate_addresses(["127.0.0.1"])  # nothing leaves loopback
    rng = np.random.default_rng(seed)
    model = ArrayModel([rng.standard_normal(s).astype(np.float32) for s in SHAPES], 1600.0)
    me = public_key_bytes(key)
    verifier = FrameVerifier(swarm_id=SWARM, model_id=MODEL, own_key=me, is_known={me, peer_key}.__contains__,
                             shapes=SHAPES, max_frame_size=MAX_FRAME)  # fmt: skip
    engine = GossipEngine(model)
    links: dict[str, PeerLink] = {}
    metrics = PeerMetrics(peer_id_of(me))
    transport = MeshTransport(key, swarm_id=SWARM, model_id=MODEL, verifier=verifier, engine=engine, metrics=metrics,
                              links=lambda: links)  # fmt: skip
    rejects: list[str] = []
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN server on loopback
    remote = PeerInfo(peer_id=peer_id_of(peer_key), public_key=peer_key.hex())
    link = PeerLink(remote, pc, max_frame_size=MAX_FRAME, on_frame=transport.on_frame, on_closed=lambda _: None,
                    on_chunk_error=lambda _, why: rejects.append(why))  # fmt: skip
    links[link.peer_id] = link
    try:
        if role == "initiator":
            link.attach(pc.createDataChannel("gossip", ordered=True))
            await pc.setLocalDescription(await pc.createOffer())
            emit({"sdp": pc.localDescription.sdp})
            await pc.setRemoteDescription(RTCSessionDescription((await read_line())["sdp"], "answer"))
        else:
            pc.on("datachannel", link.attach)
            await pc.setRemoteDescription(RTCSessionDescription((await read_line())["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            emit({"sdp": pc.localDescription.sdp})
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            await link.opened.wait()
        if role == "initiator":
            times, cpu0, next_start = [], 0.0, time.perf_counter()
            for i in range(rounds + 1):  # the first exchange warms up
                if i == 1:
                    cpu0 = time.process_time()
                # paced as training paces live exchanges: back to back they would pass the responder's
                # per-neighbor frame limit (peer.transport FRAME_RATE) and be dropped as rate_limited
                await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
                start = time.perf_counter()
                next_start = start + interval_s
                outcome = await engine.initiate(link.peer_id, transport, timeout=TIMEOUT_S)
                if outcome != Outcome.MERGED:
                    raise RuntimeError(f"exchange {i} ended {outcome.value}")
                if i:
                    times.append((time.perf_counter() - start) * 1e3)
            emit({"result": {"ms": times, "cpu_s": time.process_time() - cpu0, "rejected": dict(metrics.rejected),
                             "chunk_rejects": rejects}})  # fmt: skip
        else:
            while engine.served < 1:  # the warm-up
                await asyncio.sleep(0.001)
            cpu0, served0 = time.process_time(), engine.served
            await read_line()  # the parent's stop
            emit({"result": {"served": engine.served - served0, "cpu_s": time.process_time() - cpu0,
                             "rejected": dict(metrics.rejected), "chunk_rejects": rejects}})  # fmt: skip
    finally:
        await link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["initiator", "responder"], required=True)
    parser.add_argument("--key", required=True, help="this end's Ed25519 private key, 32 bytes hex")
    parser.add_argument("--peer", required=True, help="the other end's public key, 32 bytes hex")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval-ms", type=float, default=100.0, help="from one exchange's start to the next's")
    args = parser.parse_args()
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(args.key))
    uvloop.run(run(args.role, key, bytes.fromhex(args.peer), args.rounds, args.seed, args.interval_ms / 1e3))


if __name__ == "__main__":
    main()
