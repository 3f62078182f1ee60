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
import socket
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
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcsctptransport import DataChunk, RTCSctpTransport
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.exchange_endpoint import ArrayModel
from peer.gossip import GossipEngine, Outcome
from peer.ice import use_candidate_addresses
import peer.link
from peer.link import PeerLink
from peer.metrics import PeerMetrics
from peer.transport import MeshTransport
from peer.verifier import FrameVerifier
from protocols.chunking import DEFAULT_MESSAGE_SIZE, Reassembler, split_frame
from protocols.crypto import peer_id_of, public_key_bytes
from protocols.frame import FrameKind, build_frame
from protocols.signaling import PeerInfo

# PeerLink enlarges its ICE socket buffers by default; the baseline here is aiortc untuned,
# and the --rcvbuf variant opts back in, so the ratio shows what the tuning buys.
peer.link.SOCKET_BUFFER = 0

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


@dataclass(frozen=True)
class Variant:
    """How the aiortc link is set up: the data-channel message size and the UDP receive buffer."""

    name: str
    message_size: int = DEFAULT_MESSAGE_SIZE
    rcvbuf: int = 0  # SO_RCVBUF of the ICE sockets; 0 keeps the OS default (net.core.rmem_default)


DEFAULT = Variant("aiortc")


def enlarge_receive_buffers(link: PeerLink, size: int) -> None:
    """Set SO_RCVBUF on the link's ICE sockets (reached through private aiortc/aioice attributes).

    On one machine SCTP bursts overflow the default UDP receive buffer and every dropped
    packet costs a retransmission; this variant shows what a larger buffer buys.
    """
    connection = link.pc.sctp.transport.transport._connection  # type: ignore[union-attr]
    for protocol in connection._protocols:
        protocol.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


async def link_pair(
    key_a: Ed25519PrivateKey, key_b: Ed25519PrivateKey, on_a: FrameCallback, on_b: FrameCallback,
    variant: Variant = DEFAULT,
) -> LinkPair:
    """Two PeerLinks joined directly (SDP handed over in-process, every candidate in the SDP)."""
    # no ICE servers: without them aiortc adds a public STUN server to a loopback benchmark
    pc_a, pc_b = RTCPeerConnection(RTCConfiguration(iceServers=[])), RTCPeerConnection(RTCConfiguration(iceServers=[]))
    a, b = (PeerLink(_info(remote), pc, max_frame_size=MAX_FRAME, on_frame=on, on_closed=_ignore,
                     on_chunk_error=_count_reject, message_size=variant.message_size)
            for remote, pc, on in ((key_b, pc_a, on_a), (key_a, pc_b, on_b)))  # fmt: skip
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
        if variant.rcvbuf:
            enlarge_receive_buffers(a, variant.rcvbuf)
            enlarge_receive_buffers(b, variant.rcvbuf)
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


async def aiortc_rate(frames: Sequence[bytes], variant: Variant = DEFAULT) -> float:
    """MB/s of frame bytes from the first ``PeerLink.send`` until the last frame is reassembled."""
    counter = Counter()

    async def receive(link: PeerLink, data: bytes) -> None:
        counter.add(data)

    async def nothing(link: PeerLink, data: bytes) -> None:
        return None

    pair = await link_pair(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), nothing, receive, variant)
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


async def gossip_round_trips(rounds: int, rng: np.random.Generator, variant: Variant = DEFAULT) -> list[float]:
    """Seconds per exchange: ``GossipEngine.initiate`` from request to merged reply."""
    ka, kb = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    members = {public_key_bytes(ka), public_key_bytes(kb)}
    a, b = gossip_peer(ka, members, rng), gossip_peer(kb, members, rng)
    pair = await link_pair(ka, kb, a.transport.on_frame, b.transport.on_frame, variant)
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


# ---- SCTP loss recovery (counted, not changed) -------------------------------------------


@dataclass
class SctpCounts:
    data_chunks: int = 0  # DATA chunks put on the wire, first sends and retransmissions
    retransmitted: int = 0  # of which retransmissions: the packet (or its SACK) was lost
    t3_timeouts: int = 0  # losses recovered only after the retransmission timeout (>= 1 s)


class SctpCounter:
    """Counts aiortc's SCTP retransmissions while active, by wrapping two private methods.

    For counting only; if aiortc renames them the counts stay zero and the benchmark still runs.
    """

    def __init__(self) -> None:
        self.counts = SctpCounts()
        self._send = getattr(RTCSctpTransport, "_send_chunk", None)
        self._t3 = getattr(RTCSctpTransport, "_t3_expired", None)

    def __enter__(self) -> SctpCounts:  # may be entered again: the counts accumulate
        send, t3, counts = self._send, self._t3, self.counts
        if send is not None and t3 is not None:

            async def counting_send(transport: RTCSctpTransport, chunk: Any) -> None:
                if isinstance(chunk, DataChunk):
                    counts.data_chunks += 1
                    counts.retransmitted += getattr(chunk, "_sent_count", 1) > 1
                await send(transport, chunk)

            def counting_t3(transport: RTCSctpTransport) -> None:
                counts.t3_timeouts += 1
                t3(transport)

            RTCSctpTransport._send_chunk = counting_send  # type: ignore[method-assign, assignment]
            RTCSctpTransport._t3_expired = counting_t3  # type: ignore[method-assign, assignment]
        return counts

    def __exit__(self, *exc: object) -> None:
        if self._send is not None and self._t3 is not None:
            RTCSctpTransport._send_chunk = self._send  # type: ignore[method-assign]
            RTCSctpTransport._t3_expired = self._t3  # type: ignore[method-assign]


# ---- one event loop's set ---------------------------------------------------------------


@dataclass
class Rate:
    mb_s: float  # median of the trials
    trials: list[float]
    sctp: SctpCounts | None = None


@dataclass
class RoundTrips:
    median_ms: float
    p90_ms: float
    max_ms: float
    all_ms: list[float]
    sctp: SctpCounts


@dataclass
class LoopResult:
    loop: str
    websocket: Rate
    aiortc: dict[str, Rate]  # by variant name; "aiortc" is the default link
    ratio_aiortc_over_websocket: float
    gossip: dict[str, RoundTrips]
    frame_build_ms: float
    frame_admit_ms: float


def transfer_variants(sizes: Sequence[int], rcvbuf: int) -> list[Variant]:
    variants = [DEFAULT]
    if rcvbuf:
        variants.append(Variant(f"aiortc, {rcvbuf // 1024} KiB SO_RCVBUF", rcvbuf=rcvbuf))
    variants += [Variant(f"aiortc, {size // 1024} KiB messages", message_size=size) for size in sizes if size != DEFAULT_MESSAGE_SIZE]
    return variants


async def measure(loop_name: str, frames_per_trial: int, trials: int, rounds: int, variants: Sequence[Variant]) -> LoopResult:
    rng = np.random.default_rng(0)
    frames = update_frames(Ed25519PrivateKey.generate(), secrets.token_bytes(32), frames_per_trial, rng)
    ws: list[float] = []
    rtc: dict[Variant, list[float]] = {v: [] for v in variants}
    counters = {v: SctpCounter() for v in variants}
    for _ in range(trials):  # interleaved, so drifts of the machine hit every variant alike
        ws.append(await websocket_rate(frames))
        for variant in variants:
            with counters[variant]:
                rtc[variant].append(await aiortc_rate(frames, variant))
    gossip = {}
    for variant in variants:
        if variant.message_size != DEFAULT_MESSAGE_SIZE:
            continue
        with SctpCounter() as counts:
            trips = sorted(t * 1e3 for t in await gossip_round_trips(rounds, rng, variant))
        gossip[variant.name] = RoundTrips(statistics.median(trips), trips[min(len(trips) - 1, int(0.9 * len(trips)))],
                                          trips[-1], trips, counts)  # fmt: skip
    cpu = frame_cpu_ms(rng)
    rates = {v.name: Rate(statistics.median(r), r, counters[v].counts) for v, r in rtc.items()}
    websocket = Rate(statistics.median(ws), ws)
    return LoopResult(
        loop=loop_name, websocket=websocket, aiortc=rates,
        ratio_aiortc_over_websocket=rates[DEFAULT.name].mb_s / websocket.mb_s,
        gossip=gossip, frame_build_ms=cpu["build_ms"], frame_admit_ms=cpu["admit_ms"],
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


def _rtx(c: SctpCounts | None) -> str:
    return "" if c is None else f"{100 * c.retransmitted / max(1, c.data_chunks):.1f}% rtx, {c.t3_timeouts} T3"


def _render(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _sysctl(name: str) -> int | None:
    try:
        return int(Path("/proc/sys", name).read_text())
    except (OSError, ValueError):
        return None


def table(results: Sequence[LoopResult], frame_bytes: int) -> str:
    lines = [f"frame: {PARAMS:,} float32 parameters = {frame_bytes:,} bytes signed; MB/s = 10^6 frame bytes per second",
             "rtx = share of SCTP DATA chunks sent again (lost on the way); T3 = losses found only by timeout (>= 1 s)", ""]  # fmt: skip
    rows: list[tuple[str, ...]] = [("loop", "transport", "MB/s", "vs websocket", "SCTP")]
    for r in results:
        rows.append((r.loop, "websocket (aiohttp)", f"{r.websocket.mb_s:.1f}", "1", ""))
        rows += [(r.loop, name, f"{rate.mb_s:.2f}", f"{rate.mb_s / r.websocket.mb_s:.4f}", _rtx(rate.sctp)) for name, rate in r.aiortc.items()]
    lines += _render(rows)
    rows = [("loop", "gossip exchange over", "RTT ms median", "p90", "max", "SCTP")]
    for r in results:
        rows += [(r.loop, name, f"{g.median_ms:.0f}", f"{g.p90_ms:.0f}", f"{g.max_ms:.0f}", _rtx(g.sctp)) for name, g in r.gossip.items()]
    lines += ["", *_render(rows)]
    lines += ["", "frame build (encode, hash, sign) / admit (verify, decode), ms: "
              + ", ".join(f"{r.loop} {r.frame_build_ms:.2f} / {r.frame_admit_ms:.2f}" for r in results)]  # fmt: skip
    if len(results) == 2:
        base, other = results
        lines.append(f"{other.loop} / {base.loop}: aiortc x{other.aiortc[DEFAULT.name].mb_s / base.aiortc[DEFAULT.name].mb_s:.2f}, "
                     f"websocket x{other.websocket.mb_s / base.websocket.mb_s:.2f}, gossip RTT x"
                     f"{other.gossip[DEFAULT.name].median_ms / base.gossip[DEFAULT.name].median_ms:.2f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="update frames per transfer trial (~0.4 MB each)")
    parser.add_argument("--trials", type=int, default=3, help="transfer trials per transport (median reported)")
    parser.add_argument("--rounds", type=int, default=30, help="timed gossip exchanges")
    parser.add_argument("--message-sizes", type=int, nargs="+", default=[16384, 65536, DEFAULT_MESSAGE_SIZE],
                        help="data-channel message sizes to sweep for aiortc (the comparison uses the default)")  # fmt: skip
    parser.add_argument("--rcvbuf", type=int, default=4 * 1024 * 1024,
                        help="SO_RCVBUF of the extra aiortc variant (0: no such variant); capped by net.core.rmem_max")  # fmt: skip
    parser.add_argument("--loops", nargs="+", default=["asyncio", "uvloop"], help="event loops to compare")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "transfer.json")
    args = parser.parse_args(argv)

    frame_bytes = len(update_frames(Ed25519PrivateKey.generate(), bytes(32), 1, np.random.default_rng(0))[0])
    use_candidate_addresses(["127.0.0.1"])  # nothing leaves loopback
    variants = transfer_variants(args.message_sizes, args.rcvbuf)
    results = []
    try:
        for name, factory in loop_factories(args.loops).items():
            print(f"measuring on the {name} loop ...", file=sys.stderr, flush=True)
            with asyncio.Runner(loop_factory=factory) as runner:
                results.append(runner.run(measure(name, args.frames, args.trials, args.rounds, variants)))
    finally:
        use_candidate_addresses(None)
    print(table(results, frame_bytes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "transfer", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
        "settings": {"frames_per_trial": args.frames, "trials": args.trials, "gossip_rounds": args.rounds,
                     "params": PARAMS, "frame_bytes": frame_bytes, "chunk_bytes": DEFAULT_MESSAGE_SIZE,
                     "variants": [asdict(v) for v in variants], "rmem_default": _sysctl("net/core/rmem_default"),
                     "rmem_max": _sysctl("net/core/rmem_max")},
        "results": [asdict(r) for r in results],
        "note": "figures from one run on one machine; compare the ratios, not the absolute numbers",
    }  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
