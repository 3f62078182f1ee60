"""One side of a data-channel measurement across the emulated internet (run by ``benchmarks.wan``).

``python -m benchmarks.wan_probe sink WS_URL SWARM_ID OUT.json`` waits for a link and echoes;
``python -m benchmarks.wan_probe source WS_URL SWARM_ID OUT.json --frame-bytes N ...`` links
to the sink, times ``--exchanges`` request/reply pairs of one frame each way (a gossip
exchange's transfers), then sends ``--frames`` frames back to back and takes the receive rate
the sink measured. Frames go through ``PeerLink.send`` (chunking, backpressure): the
product's own link code, signaling and ICE, no ``--ice-address``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.link import PeerLink
from peer.mesh import Mesh, MeshConfig

DATA, REQUEST, REPLY, STATS = b"D", b"E", b"R", b"S"


class Sink:
    """Echoes requests, times tagged data frames; with ``count``, times any ``count`` frames (a browser's)."""

    def __init__(self, count: int | None = None, out: Path | None = None) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.bytes = 0
        self.frames = 0
        self.expected: int | None = None
        self.count, self.out = count, out

    async def on_frame(self, link: PeerLink, data: bytes) -> None:
        tag = data[:1]
        if self.count is not None:  # untagged frames: the receive rate after the first one arrived
            now = time.perf_counter()
            if self.first is None:
                self.first = now
            else:
                self.bytes += len(data)
            self.last, self.frames = now, self.frames + 1
            if self.frames == self.count and self.out is not None:
                self.out.write_text(json.dumps({"frames": self.frames, "bytes_after_first": self.bytes,
                                                "seconds": self.last - self.first}))  # fmt: skip
            return
        if tag == REQUEST:
            await link.send(lambda: REPLY + data[1:])
        elif tag == DATA:  # the rate counts the bytes that arrived after the first frame, over the time since it
            now = time.perf_counter()
            if self.first is None:
                self.first = now
            else:
                self.bytes += len(data)
            self.last, self.frames = now, self.frames + 1
            self.expected = int.from_bytes(data[1:5], "big")
            if self.frames == self.expected:
                stats = {"frames": self.frames, "bytes": self.bytes, "seconds": self.last - self.first}
                await link.send(lambda: STATS + json.dumps(stats).encode())


async def run(args: argparse.Namespace) -> dict[str, object]:
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    sink = Sink(args.count, args.out) if args.count else Sink()

    async def on_frame(link: PeerLink, data: bytes) -> None:
        if args.role == "sink":
            await sink.on_frame(link, data)
        else:
            replies.put_nowait(data)

    degree = 0 if args.role == "sink" else 1
    mesh = Mesh(Ed25519PrivateKey.generate(), args.ws_url, args.swarm_id, MeshConfig(degree=degree, max_degree=1),
                max_frame_size=args.frame_bytes + 64, on_frame=on_frame)  # fmt: skip
    try:
        await asyncio.wait_for(mesh.start(), 60)
        mesh.accept_links()
        if args.role == "sink":
            await asyncio.sleep(args.lifetime)  # the source ends the measurement; the benchmark kills us
            return {}
        async with asyncio.timeout(90):
            while not mesh.open_links():
                await asyncio.sleep(0.1)
        link = mesh.open_links()[0]
        payload = os.urandom(args.frame_bytes - 1)
        if args.link_to_browser:
            for _ in range(args.frames):
                await link.send(lambda: DATA + payload)
            await asyncio.sleep(args.lifetime)  # the benchmark reads the page's counters, then kills us
            return {}
        times = []
        for i in range(args.exchanges + 1):  # the first one warms up SCTP's congestion window
            t0 = time.perf_counter()
            await link.send(lambda: REQUEST + payload)
            await asyncio.wait_for(replies.get(), 120)
            if i:
                times.append(time.perf_counter() - t0)
        result: dict[str, object] = {"ice": link.ice_info(), "frame_bytes": args.frame_bytes, "exchange_s": times,
                                     "exchange_median_s": statistics.median(times)}  # fmt: skip
        frame = DATA + args.frames.to_bytes(4, "big") + payload[: args.frame_bytes - 5]
        sent = 0
        try:  # a lossy link may not carry the bulk part in time: the exchanges above still count
            async with asyncio.timeout(args.bulk_timeout):
                for sent in range(args.frames):
                    await link.send(lambda: frame)
                stats = json.loads((await replies.get())[1:])
        except (TimeoutError, ConnectionError) as exc:
            result["rate_error"] = f"{type(exc).__name__} after {sent} of {args.frames} frames were handed to the link"
            return result
        return {**result, "rate_mb_s": stats["bytes"] / stats["seconds"] / 1e6, "rate_bytes": stats["bytes"],
                "rate_seconds": stats["seconds"]}  # fmt: skip
    finally:
        await mesh.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["sink", "source"])
    parser.add_argument("ws_url")
    parser.add_argument("swarm_id")
    parser.add_argument("out", type=Path, help="JSON result (source only)")
    parser.add_argument("--frame-bytes", type=int, default=407_200, help="bytes per frame (default: one default-model frame)")
    parser.add_argument("--exchanges", type=int, default=5, help="timed request/reply pairs")
    parser.add_argument("--frames", type=int, default=20, help="frames sent back to back for the rate")
    parser.add_argument("--bulk-timeout", type=float, default=240, help="source: seconds for the frames sent for the rate")
    parser.add_argument("--lifetime", type=float, default=600, help="sink: seconds to stay up")
    parser.add_argument("--count", type=int, help="sink: time any COUNT frames (from a browser) and write OUT")
    parser.add_argument("--link-to-browser", action="store_true",
                        help="source: only link, send --frames tagged frames, no exchanges or stats (the browser times them)")
    args = parser.parse_args()
    try:
        import uvloop  # as the peers do (apps/cli.py)

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args))
    if args.role == "source":
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
