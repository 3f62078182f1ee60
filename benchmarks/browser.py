"""Browser benchmark: TF.js step time per backend against the Python peer, and transfer rates.

One run on one machine, everything on 127.0.0.1 with the default swarm (MLP 784-128-10):

(a) training step time of the default MLP: the Python peer's ``Trainer`` (tf.function) and
    the browser peer's ``Trainer`` on each TF.js backend (wasm with TF.js's default thread count,
    one per core, since the pages are cross-origin isolated; wasm with one thread, the peer's
    default; webgl; cpu) in headless Chromium,
    both in chunks of 10 steps as the peers train, after a warm-up;
(b) raw data-channel rate browser -> Python and Python -> browser: frames of one float32
    update (407 kB) sent with each side's ``PeerLink`` (256 KiB chunks, backpressure), after an
    untimed warm-up each way, timed at the receiver from the first to the last reassembled
    frame, the Python side on uvloop as the peers run;
(c) the same chunk messages over a WebSocket between the page and an aiohttp server in this
    process, timed the same way: the baseline the data channel is compared with.

Run: ``.venv/bin/python -m benchmarks.browser`` (about 2 minutes; needs Chromium from
``./scripts/setup.sh --browser``). Results: ``benchmarks/results/browser.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import start_server
from apps.publish import default_publication, upload
from peer.ice import use_candidate_addresses
from peer.link import PeerLink
from peer.mesh import Mesh, MeshConfig
from protocols.chunking import Reassembler, split_frame

from apps.chromium import chromium  # the same Chromium set-up as the browser tests

from benchmarks.transfer import machine  # noqa: E402

FRAME = 407_370  # one float32 update of the default MLP, header included
RESULTS = Path(__file__).resolve().parent / "results" / "browser.json"


def python_step_ms(manifest: Any, initial: bytes, train: Any, steps: int, warmup: int = 20) -> float:
    from peer.trainer import Trainer

    trainer = Trainer(manifest, initial, train, train, seed=0)
    trainer.train_steps(warmup)
    started = time.perf_counter()
    for _ in range(steps // 10):
        trainer.train_steps(10)
    return (time.perf_counter() - started) * 1000 / steps


class Receiver:
    """Counts reassembled frames and when the first and last arrived."""

    def __init__(self) -> None:
        self.frames, self.first, self.last = 0, 0.0, 0.0
        self.done = asyncio.Event()
        self.expect = 0

    def reset(self, expect: int) -> None:
        self.frames, self.expect = 0, expect
        self.done.clear()

    def record(self) -> None:
        now = time.perf_counter()
        if self.frames == 0:
            self.first = now
        self.last = now
        self.frames += 1
        if self.frames >= self.expect:
            self.done.set()

    def rate(self, size: int) -> float:
        return (self.frames - 1) * size / (self.last - self.first) / 1e6


def websocket_app(receiver: Receiver, count: int, size: int) -> web.Application:
    async def sink(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        reassembler = Reassembler(size + 1024, max_transfers=8)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY and reassembler.feed(msg.data) is not None:
                receiver.record()
                if receiver.done.is_set():
                    await ws.send_str("done")
        return ws

    async def source(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        data = bytes(size)
        for i in range(count):
            for chunk in split_frame(data, i + 1):
                await ws.send_bytes(chunk)
        await ws.receive()  # the page closes when it has everything
        return ws

    app = web.Application()
    app.router.add_get("/sink", sink)
    app.router.add_get("/source", source)
    return app


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from peer.fetch import fetch_blob, fetch_manifest
    from protocols.dataset import decode_shard

    work = Path(args.workdir)
    runner, base = await start_server(work / "server")
    key = Ed25519PrivateKey.generate()
    reply = await upload(base, default_publication(key, seed=0))
    swarm_id = reply["swarm_id"]
    async with aiohttp.ClientSession() as http:
        _, manifest = await fetch_manifest(http, base, swarm_id)
        initial = await fetch_blob(http, base, manifest.model.initial_weights)
        train = decode_shard(await fetch_blob(http, base, manifest.dataset.train_shards[0]))  # type: ignore[union-attr]
    result: dict[str, Any] = {"machine": machine(), "steps": args.steps, "frame_bytes": FRAME, "frames": args.frames}
    print("python step time…", flush=True)
    result["python_ms_per_step"] = await asyncio.to_thread(python_step_ms, manifest, initial, train, args.steps)

    receiver = Receiver()
    ws_runner = web.AppRunner(websocket_app(receiver, args.frames, FRAME))
    await ws_runner.setup()
    site = web.TCPSite(ws_runner, "127.0.0.1", 0)
    await site.start()
    ws_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def on_frame(link: PeerLink, data: bytes) -> None:
        receiver.record()

    use_candidate_addresses(["127.0.0.1"])
    mesh = Mesh(key, base.replace("http", "ws", 1) + "/ws", swarm_id, MeshConfig(degree=0, max_degree=1),
                max_frame_size=FRAME + 1024, on_frame=on_frame)  # fmt: skip
    await mesh.start()
    mesh.accept_links()
    try:
        async with chromium() as browser:
            context = await browser.new_context()
            backends = {}
            for backend in ("wasm", "wasm-1thread", "webgl", "cpu"):  # a fresh page each: one backend per page
                print(f"browser step time ({backend})…", flush=True)
                page = await context.new_page()
                await page.goto(f"{base}/peer/bench/bench.html")
                await page.wait_for_function("window.benchReady === true")
                backends[backend] = await page.evaluate("([s, b, n]) => benchSteps(s, b, n)", [swarm_id, backend, args.steps])
                await page.close()
            page = await context.new_page()
            await page.goto(f"{base}/peer/bench/bench.html")
            await page.wait_for_function("window.benchReady === true")
            result["browser"] = backends
            measured = {b: r["msPerStep"] for b, r in backends.items() if "msPerStep" in r}
            best = min(measured, key=measured.__getitem__)
            result["best_backend"] = best
            result["best_over_python"] = measured[best] / result["python_ms_per_step"]

            print("transfer browser <-> python…", flush=True)
            await page.evaluate("([s, m]) => benchLink(s, m)", [swarm_id, FRAME + 1024])
            link = mesh.open_links()[0]
            rates: dict[str, float] = {}
            # warm-up both ways, untimed: SCTP's congestion window and the JIT start cold
            receiver.reset(args.warmup)
            await page.evaluate("([n, size]) => benchSendChannel(n, size)", [args.warmup, FRAME])
            await asyncio.wait_for(receiver.done.wait(), 300)
            data = bytes(FRAME)
            for _ in range(args.warmup):
                await link.send(lambda: data)
            await page.wait_for_function(f"window.received.frames >= {args.warmup}", timeout=300_000)
            await page.evaluate("() => window.resetReceived()")
            receiver.reset(args.frames)
            await page.evaluate("([n, size]) => benchSendChannel(n, size)", [args.frames, FRAME])
            await asyncio.wait_for(receiver.done.wait(), 300)
            rates["channel_browser_to_python"] = receiver.rate(FRAME)
            for _ in range(args.frames):
                await link.send(lambda: data)
            await page.wait_for_function(f"window.received.frames >= {args.frames}", timeout=300_000)
            got = await page.evaluate("() => window.received")
            rates["channel_python_to_browser"] = (got["frames"] - 1) * FRAME / ((got["last"] - got["first"]) / 1000) / 1e6
            receiver.reset(args.frames)
            await page.evaluate("([u, n, s]) => benchSendWebSocket(u, n, s)", [f"ws://127.0.0.1:{ws_port}/sink", args.frames, FRAME])
            rates["websocket_browser_to_python"] = receiver.rate(FRAME)
            got = await page.evaluate("([u, n, s]) => benchReceiveWebSocket(u, n, s)", [f"ws://127.0.0.1:{ws_port}/source", args.frames, FRAME])
            rates["websocket_python_to_browser"] = (got["frames"] - 1) * FRAME / got["seconds"] / 1e6
            result["transfer_mb_s"] = rates
            result["channel_over_websocket"] = {
                "browser_to_python": rates["channel_browser_to_python"] / rates["websocket_browser_to_python"],
                "python_to_browser": rates["channel_python_to_browser"] / rates["websocket_python_to_browser"],
            }
    finally:
        await mesh.close()
        use_candidate_addresses(None)
        await ws_runner.cleanup()
        await runner.cleanup()
    return result


def table(r: dict[str, Any]) -> str:
    py = r["python_ms_per_step"]
    lines = ["| peer / backend | ms per step | vs Python |", "|---|---:|---:|", f"| Python (tf.function) | {py:.2f} | 1.00x |"]
    for backend, b in r["browser"].items():
        if "msPerStep" in b:
            lines.append(f"| browser {backend} | {b['msPerStep']:.2f} | {b['msPerStep'] / py:.2f}x |")
        else:
            lines.append(f"| browser {backend} | {b['error']} | |")
    t = r["transfer_mb_s"]
    lines += ["", "| transfer | data channel MB/s | WebSocket MB/s | channel / WebSocket |", "|---|---:|---:|---:|"]
    for d, label in (("browser_to_python", "browser -> Python"), ("python_to_browser", "Python -> browser")):
        lines.append(f"| {label} | {t['channel_' + d]:.1f} | {t['websocket_' + d]:.1f} | {r['channel_over_websocket'][d]:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="timed training steps per backend")
    p.add_argument("--frames", type=int, default=60, help="frames per transfer measurement (60: 24 MB)")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames each way before measuring")
    p.add_argument("--workdir", default="runs/bench-browser")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    import uvloop  # the peers' event loop (apps/cli.py): aiortc's SCTP is CPU-bound in Python

    result = uvloop.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"best browser backend {result['best_backend']}: {result['best_over_python']:.2f}x the Python step time "
          f"(target <= 2x); results in {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
