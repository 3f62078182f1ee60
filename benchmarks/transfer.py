"""Transfer benchmark: aiortc data channel vs aiohttp WebSocket, and one gossip exchange.

All in one process on 127.0.0.1, with real signed update frames of the default model
(MLP 784-128-10: 101,770 float32 parameters, about 407 kB a frame):

(a) ``PeerLink.send`` over a real aiortc data channel, timed until the receiver reassembled
    every frame;
(b) the same chunk messages (``protocols.chunking``) over an aiohttp WebSocket, timed until
    the server reassembled every frame;
(c) full gossip exchanges between two ``MeshTransport`` peers over aiortc: request frame,
    verification, averaging and response on one end, verification and merge on the other.

Each figure is the median of ``--trials`` runs, and the whole set is repeated per event loop
(asyncio's default, uvloop). Absolute numbers depend on the machine; the ratios measured in
one run are the result. Run: ``.venv/bin/python -m benchmarks.transfer``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import ClientSession, WSMsgType, web
from aiortc import RTCPeerConnection
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.gossip import GossipEngine, Outcome, Update
from peer.ice import use_candidate_addresses
from peer.link import PeerLink
from peer.metrics import PeerMetrics
from peer.transport import MeshTransport
from peer.verifier import FrameVerifier
from protocols.chunking import Reassembler, split_frame
from protocols.crypto import peer_id_of, public_key_bytes
from protocols.frame import FrameKind, build_frame
from protocols.signaling import PeerInfo

SHAPES = [(784, 128), (128,), (128, 10), (10,)]  # the default MLP, in weight order
PARAMS = sum(int(np.prod(s)) for s in SHAPES)
SWARM, MODEL = secrets.token_bytes(16), secrets.token_bytes(32)
MAX_FRAME = 4 * 1024 * 1024
DEADLINE = 300.0  # every timed wait is bounded
MB = 1e6


# ---- the two ends of one aiortc data channel --------------------------------------------


def _info(key: Ed25519PrivateKey) -> PeerInfo:
    return PeerInfo(peer_id=peer_id_of(public_key_bytes(key)), public_key=public_key_bytes(key).hex())


def _ignore(link: PeerLink) -> None:
    return None


CHUNK_REJECTS: list[str] = []  # must stay empty: checked after every measurement


def _count_reject(link: PeerLink, reason: str) -> None:
    CHUNK_REJECTS.append(reason)


FrameCallback = Callable[[PeerLink, bytes], Coroutine[Any, Any, None]]


@dataclass
class LinkPair:
    a: PeerLink
    b: PeerLink

    async def close(self) -> None:
        await asyncio.gather(self.a.close(), self.b.close())


async def link_pair(key_a: Ed25519PrivateKey, key_b: Ed25519PrivateKey, on_a: FrameCallback, on_b: FrameCallback) -> LinkPair:
    """Two PeerLinks joined directly (SDP handed over in-process, every candidate in the SDP)."""
    pc_a, pc_b = RTCPeerConnection(), RTCPeerConnection()
    a = PeerLink(_info(key_b), pc_a, max_frame_size=MAX_FRAME, on_frame=on_a, on_closed=_ignore, on_chunk_error=_count_reject)
    b = PeerLink(_info(key_a), pc_b, max_frame_size=MAX_FRAME, on_frame=on_b, on_closed=_ignore, on_chunk_error=_count_reject)
    pair = LinkPair(a, b)
    try:
        a.attach(pc_a.createDataChannel("gossip", ordered=True))
        pc_b.on("datachannel", b.attach)
        await pc_a.setLocalDescription(await pc_a.createOffer())
        await pc_b.setRemoteDescription(pc_a.localDescription)
        await pc_b.setLocalDescription(await pc_b.createAnswer())
        await pc_a.setRemoteDescription(pc_b.localDescription)
        async with asyncio.timeout(30):
            await a.opened.wait()
            await b.opened.wait()
    except BaseException:
        await pair.close()
        raise
    return pair


# ---- (a) and (b): bulk transfer of update frames ----------------------------------------


def update_frames(key: Ed25519PrivateKey, receiver: bytes, count: int, rng: np.random.Generator) -> list[bytes]:
    """Signed EXCHANGE_REQUEST frames of the default model, random float32 weights each."""
    return [
        build_frame(key, kind=FrameKind.EXCHANGE_REQUEST, swarm_id=SWARM, model_id=MODEL, receiver=receiver,
                    session=1, seq=i + 1, exchange_id=i + 1, sample_weight=1600.0, step=50 * i,
                    tensors=[rng.standard_normal(s).astype(np.float32) for s in SHAPES]).encode()
        for i in range(count)
    ]  # fmt: skip


class Counter:
    """Counts reassembled frames; ``done`` is set once ``target`` frames arrived since ``reset``."""

    def __init__(self) -> None:
        self.reset(1)

    def reset(self, target: int) -> None:
        self.target, self.seen, self.bytes = target, 0, 0
        self.done = asyncio.Event()

    async def wait(self) -> None:
        async with asyncio.timeout(DEADLINE):
            await self.done.wait()

    def add(self, frame: bytes) -> None:
        self.seen += 1
        self.bytes += len(frame)
        if self.seen >= self.target:
            self.done.set()


async def aiortc_rate(frames: Sequence[bytes]) -> float:
    """MB/s of frame bytes from the first ``PeerLink.send`` until the last frame is reassembled."""
    counter = Counter()

    async def receive(link: PeerLink, data: bytes) -> None:
        counter.add(data)

    async def nothing(link: PeerLink, data: bytes) -> None:
        return None

    pair = await link_pair(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), nothing, receive)
    try:
        await pair.a.send(lambda: frames[0])  # warm-up: SCTP congestion window, first allocations
        await counter.wait()
        counter.reset(len(frames))
        start = time.perf_counter()
        for data in frames:
            await pair.a.send(lambda d=data: d)  # type: ignore[misc]
        await counter.wait()
        elapsed = time.perf_counter() - start
    finally:
        await pair.close()
    if CHUNK_REJECTS or counter.bytes != sum(map(len, frames)):
        raise RuntimeError(f"aiortc transfer incomplete: {counter.bytes} bytes, rejects {CHUNK_REJECTS}")
    return counter.bytes / elapsed / MB


async def websocket_rate(frames: Sequence[bytes]) -> float:
    """MB/s of the same chunk messages over an aiohttp WebSocket on 127.0.0.1."""
    counter = Counter()
    reassembler = Reassembler(max_frame_size=MAX_FRAME)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                break
            frame = reassembler.feed(msg.data)
            if frame is not None:
                counter.add(frame)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        async with ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{runner.addresses[0][1]}/ws") as ws:
            for chunk in split_frame(frames[0], 0):  # warm-up, as for aiortc
                await ws.send_bytes(chunk)
            await counter.wait()
            counter.reset(len(frames))
            start = time.perf_counter()
            for transfer_id, data in enumerate(frames, start=1):
                for chunk in split_frame(data, transfer_id):
                    await ws.send_bytes(chunk)
            await counter.wait()
            elapsed = time.perf_counter() - start
    finally:
        await runner.cleanup()
    if counter.bytes != sum(map(len, frames)):
        raise RuntimeError(f"websocket transfer incomplete: {counter.bytes} bytes")
    return counter.bytes / elapsed / MB


# ---- (c): one gossip exchange, verified on both ends ------------------------------------


class ArrayModel:
    """gossip.LocalModel over plain arrays (the trainer's current/assign without TensorFlow)."""

    def __init__(self, weights: list[np.ndarray], weight: float) -> None:
        self.lock = asyncio.Lock()
        self.weights, self.weight = weights, weight

    def current(self) -> Update:
        return Update([w.copy() for w in self.weights], self.weight, 0)

    def assign(self, weights: list[np.ndarray], weight: float) -> None:
        self.weights, self.weight = weights, weight


@dataclass
class GossipPeer:
    key: Ed25519PrivateKey
    model: ArrayModel
    transport: MeshTransport
    links: dict[str, PeerLink] = field(default_factory=dict)


def gossip_peer(key: Ed25519PrivateKey, members: set[bytes], rng: np.random.Generator) -> GossipPeer:
    model = ArrayModel([rng.standard_normal(s).astype(np.float32) for s in SHAPES], 1600.0)
    verifier = FrameVerifier(swarm_id=SWARM, model_id=MODEL, own_key=public_key_bytes(key), is_known=members.__contains__,
                             shapes=SHAPES, max_frame_size=MAX_FRAME)  # fmt: skip
    links: dict[str, PeerLink] = {}
    transport = MeshTransport(key, swarm_id=SWARM, model_id=MODEL, verifier=verifier, engine=GossipEngine(model),
                              metrics=PeerMetrics(peer_id_of(public_key_bytes(key))), links=lambda: links)  # fmt: skip
    return GossipPeer(key, model, transport, links)


async def gossip_round_trips(rounds: int, rng: np.random.Generator) -> list[float]:
    """Seconds per exchange: ``GossipEngine.initiate`` from request to merged reply."""
    ka, kb = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    members = {public_key_bytes(ka), public_key_bytes(kb)}
    a, b = gossip_peer(ka, members, rng), gossip_peer(kb, members, rng)
    pair = await link_pair(ka, kb, a.transport.on_frame, b.transport.on_frame)
    a.links[pair.a.peer_id], b.links[pair.b.peer_id] = pair.a, pair.b
    engine = a.transport.engine
    assert isinstance(engine, GossipEngine)
    times = []
    try:
        for i in range(rounds + 1):  # the first round warms up
            start = time.perf_counter()
            outcome = await engine.initiate(pair.a.peer_id, a.transport, timeout=60.0)
            if outcome != Outcome.MERGED:
                raise RuntimeError(f"gossip exchange {i} ended {outcome.value}")
            if i:
                times.append(time.perf_counter() - start)
    finally:
        await pair.close()
    for mine, theirs in zip(a.model.weights, b.model.weights, strict=True):  # push-pull: both hold the average
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6)
    rejected = a.transport.metrics.rejected + b.transport.metrics.rejected
    if rejected:
        raise RuntimeError(f"frames rejected during the benchmark: {dict(rejected)}")
    return times


def frame_cpu_ms(rng: np.random.Generator, repeats: int = 20) -> dict[str, float]:
    """Median CPU time of building (encode + hash + sign) and admitting (verify + decode) one frame."""
    sender, receiver = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    tensors = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    verifier = FrameVerifier(swarm_id=SWARM, model_id=MODEL, own_key=public_key_bytes(receiver),
                             is_known=lambda k: True, shapes=SHAPES, max_frame_size=MAX_FRAME)  # fmt: skip
    build, admit = [], []
    for seq in range(1, repeats + 1):
        t0 = time.perf_counter()
        data = build_frame(sender, kind=FrameKind.EXCHANGE_REQUEST, swarm_id=SWARM, model_id=MODEL,
                           receiver=public_key_bytes(receiver), session=1, seq=seq, exchange_id=seq,
                           sample_weight=1.0, step=0, tensors=tensors).encode()  # fmt: skip
        t1 = time.perf_counter()
        verifier.admit(data, public_key_bytes(sender))
        t2 = time.perf_counter()
        build.append(t1 - t0)
        admit.append(t2 - t1)
    return {"build_ms": statistics.median(build) * 1e3, "admit_ms": statistics.median(admit) * 1e3}


# ---- one event loop's set ---------------------------------------------------------------


@dataclass
class LoopResult:
    loop: str
    aiortc_mb_s: float
    websocket_mb_s: float
    ratio_aiortc_over_websocket: float
    gossip_round_trip_ms_median: float
    gossip_round_trip_ms_p90: float
    frame_build_ms: float
    frame_admit_ms: float
    aiortc_trials_mb_s: list[float]
    websocket_trials_mb_s: list[float]


async def measure(loop_name: str, frames_per_trial: int, trials: int, rounds: int) -> LoopResult:
    rng = np.random.default_rng(0)
    frames = update_frames(Ed25519PrivateKey.generate(), secrets.token_bytes(32), frames_per_trial, rng)
    rtc, ws = [], []
    for _ in range(trials):  # interleaved, so drifts of the machine hit both alike
        rtc.append(await aiortc_rate(frames))
        ws.append(await websocket_rate(frames))
    trips = sorted(await gossip_round_trips(rounds, rng))
    cpu = frame_cpu_ms(rng)
    rtc_mb_s, ws_mb_s = statistics.median(rtc), statistics.median(ws)
    return LoopResult(
        loop=loop_name, aiortc_mb_s=rtc_mb_s, websocket_mb_s=ws_mb_s, ratio_aiortc_over_websocket=rtc_mb_s / ws_mb_s,
        gossip_round_trip_ms_median=statistics.median(trips) * 1e3,
        gossip_round_trip_ms_p90=trips[min(len(trips) - 1, int(0.9 * len(trips)))] * 1e3,
        frame_build_ms=cpu["build_ms"], frame_admit_ms=cpu["admit_ms"],
        aiortc_trials_mb_s=rtc, websocket_trials_mb_s=ws,
    )  # fmt: skip


def loop_factories(names: Sequence[str]) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {}
    for name in names:
        if name == "asyncio":
            factories[name] = asyncio.new_event_loop
        elif name == "uvloop":
            try:
                import uvloop
            except ImportError:
                print("uvloop is not installed; skipping it", file=sys.stderr)
                continue
            factories[name] = uvloop.new_event_loop
        else:
            raise SystemExit(f"unknown loop {name!r}: choose asyncio or uvloop")
    return factories


def machine() -> dict[str, Any]:
    def v(dist: str) -> str | None:
        try:
            return version(dist)
        except Exception:  # not installed: recorded as null
            return None

    return {
        "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "implementation": platform.python_implementation(),
        "aiortc": v("aiortc"), "aioice": v("aioice"), "aiohttp": v("aiohttp"), "uvloop": v("uvloop"),
        "numpy": v("numpy"), "cryptography": v("cryptography"),
    }  # fmt: skip


def table(results: Sequence[LoopResult], frame_bytes: int) -> str:
    rows = [
        ("loop", "aiortc MB/s", "websocket MB/s", "aiortc/ws", "gossip RTT ms (median / p90)", "build / admit ms"),
        *[(r.loop, f"{r.aiortc_mb_s:.1f}", f"{r.websocket_mb_s:.1f}", f"{r.ratio_aiortc_over_websocket:.3f}",
           f"{r.gossip_round_trip_ms_median:.1f} / {r.gossip_round_trip_ms_p90:.1f}",
           f"{r.frame_build_ms:.2f} / {r.frame_admit_ms:.2f}") for r in results],
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(results) == 2:
        base, other = results
        lines.append(f"\n{other.loop} / {base.loop}: aiortc x{other.aiortc_mb_s / base.aiortc_mb_s:.2f}, "
                     f"websocket x{other.websocket_mb_s / base.websocket_mb_s:.2f}, "
                     f"gossip RTT x{other.gossip_round_trip_ms_median / base.gossip_round_trip_ms_median:.2f}")  # fmt: skip
    lines.insert(0, f"frame: {PARAMS:,} float32 parameters, {frame_bytes:,} bytes signed; MB = 10^6 bytes of frames\n")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="update frames per transfer trial (~0.4 MB each)")
    parser.add_argument("--trials", type=int, default=3, help="transfer trials per transport (median reported)")
    parser.add_argument("--rounds", type=int, default=30, help="timed gossip exchanges")
    parser.add_argument("--loops", nargs="+", default=["asyncio", "uvloop"], help="event loops to compare")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "transfer.json")
    args = parser.parse_args(argv)

    frame_bytes = len(update_frames(Ed25519PrivateKey.generate(), bytes(32), 1, np.random.default_rng(0))[0])
    use_candidate_addresses(["127.0.0.1"])  # nothing leaves loopback
    results = []
    try:
        for name, factory in loop_factories(args.loops).items():
            print(f"measuring on the {name} loop ...", file=sys.stderr, flush=True)
            with asyncio.Runner(loop_factory=factory) as runner:
                results.append(runner.run(measure(name, args.frames, args.trials, args.rounds)))
    finally:
        use_candidate_addresses(None)
    print(table(results, frame_bytes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "transfer", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
        "settings": {"frames_per_trial": args.frames, "trials": args.trials, "gossip_rounds": args.rounds,
                     "params": PARAMS, "frame_bytes": frame_bytes, "chunk_bytes": 262144},
        "results": [asdict(r) for r in results],
        "note": "figures from one run on one machine; compare the ratios, not the absolute numbers",
    }  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
