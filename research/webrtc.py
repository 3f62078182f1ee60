"""The ``webrtc`` backend: real headless peers and a signaling server on this machine.

Each method publishes its own swarm (same data split, model and training config) and starts
``swarm join`` subprocesses over loopback WebRTC; for ``central`` one more process is the
FedAvg aggregator named in the manifest. Time is wall-clock on one clock for every process
(each metrics row carries ``wall``, Unix seconds) and bytes are what the data channels
carried. ``local`` and ``pooled`` involve no transport and run on the simulator.

With ``network.profile`` set, the run happens in an emulated internet (``netlab``, root
only): the server on the public segment, the peers spread round-robin over
``network.homes`` homes behind NATs whose WAN links follow the profile, the FedAvg aggregator
on a public host (a cloud server), and ICE with no manual set-up (the server's STUN).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from rich.progress import Progress

from apps.procs import PeerProcess, spawn_peer, start_server
from apps.publish import upload
from peer.identity import load_or_create
from protocols.crypto import public_key_bytes

from .config import ExperimentConfig
from .published import publication_for
from .sim import RunResult

GRID_S = 1.0


def run_webrtc(config: ExperimentConfig, out: Path, show_progress: bool) -> list[RunResult]:
    unsupported = set(config.methods) - {"gossip", "central"}
    if unsupported:
        raise ValueError(f"the webrtc backend runs gossip and central only; run {sorted(unsupported)} with backend = \"sim\"")
    return asyncio.run(_run_all(config, out, show_progress))


async def _run_all(config: ExperimentConfig, out: Path, show_progress: bool) -> list[RunResult]:
    results = []
    with Progress(disable=not show_progress) as bar:
        for seed in config.seeds:
            for method in config.methods:
                task = bar.add_task(f"{method} seed {seed} (webrtc)", total=config.budget.rounds * config.swarm.local_steps)
                results.append(await run_one(config, out / "webrtc" / f"{method}-{seed}", method, seed,
                                              lambda done, t=task: bar.update(t, completed=done)))  # fmt: skip
    return results


async def _publication(config: ExperimentConfig, workdir: Path, method: str, seed: int) -> Any:
    """The swarm the sim backend simulates for the same config and seed (research.published)."""
    publisher = load_or_create(workdir / "publisher.key")
    aggregator_key = public_key_bytes(load_or_create(workdir / "aggregator.key")).hex()
    return await asyncio.to_thread(publication_for, config, seed, publisher, method, aggregator_key)


def _peer_args(config: ExperimentConfig, seed: int) -> list[str]:
    max_steps = config.budget.rounds * config.swarm.local_steps
    extra = ["--max-steps", str(max_steps), "--eval-limit", str(config.data.eval_examples), "--seed", str(seed)]
    return extra + (["--duration", str(config.budget.seconds)] if config.budget.seconds else [])


async def run_one(config: ExperimentConfig, workdir: Path, method: str, seed: int, progress) -> RunResult:  # type: ignore[no-untyped-def]
    """One live run of ``method`` (gossip | central) with ``seed``: real server and peer processes on
    loopback, or in the emulated internet when ``network.profile`` names a WAN profile; files under
    ``workdir``. The benchmarks' entry point into the webrtc backend."""
    workdir.mkdir(parents=True, exist_ok=True)
    if config.network.profile not in (None, "loopback"):
        return await _run_one_in_netlab(config, workdir, method, seed, progress)
    runner, base = await start_server(workdir / "server-data")
    peers: list[PeerProcess] = []
    try:
        pub = await _publication(config, workdir, method, seed)
        join = (await upload(base, pub))["join_url"]
        extra = _peer_args(config, seed)
        peers = [spawn_peer(join, workdir, f"peer{i}", *extra) for i in range(config.swarm.peers)]
        if method == "central":  # its identity is workdir/aggregator.key, the key the manifest names
            peers.append(spawn_peer(join, workdir, "aggregator", *extra))
        await _until_done(config, peers, workdir, progress)
    finally:
        for p in peers:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in peers))
        await runner.cleanup()
    return _series(method, seed, [p for p in peers if p.name != "aggregator"], peers)


async def _run_one_in_netlab(config: ExperimentConfig, workdir: Path, method: str, seed: int, progress) -> RunResult:  # type: ignore[no-untyped-def]
    from apps.netswarm import peer_in, preload, swarm_server
    from netlab import Home, Internet, NatType

    net_cfg = config.network
    per_home = -(-config.swarm.peers // net_cfg.homes)
    homes = [Home(f"h{chr(ord('a') + i)}", NatType(net_cfg.nat), net_cfg.profile or "lan", hosts=per_home)
             for i in range(net_cfg.homes)]  # fmt: skip
    pub = await _publication(config, workdir, method, seed)
    swarm_id = preload(workdir / "server-data", pub)
    peers: list[PeerProcess] = []
    with Internet(homes) as net:
        with swarm_server(net, workdir) as base:
            join = f"{base}/s/{swarm_id}"
            extra = _peer_args(config, seed)
            hosts = [home.hosts[i] for i in range(per_home) for home in net.homes.values()][: config.swarm.peers]
            try:
                peers = [peer_in(host, join, workdir, f"peer{i}", *extra) for i, host in enumerate(hosts)]
                if method == "central":  # the FedAvg server is a public host, as a cloud server would be
                    cloud = net.add_public_host("fedavg")
                    peers.append(peer_in(cloud, join, workdir, "aggregator", *extra))
                await _until_done(config, peers, workdir, progress)
            finally:
                for p in peers:
                    p.terminate()
                await asyncio.gather(*(p.wait(60) for p in peers))
    return _series(method, seed, [p for p in peers if p.name != "aggregator"], peers)


async def _until_done(config: ExperimentConfig, peers: list[PeerProcess], workdir: Path, progress) -> None:  # type: ignore[no-untyped-def]
    """Wait until every trainer did its steps (or the time budget ran out); raise if a peer died."""
    max_steps = config.budget.rounds * config.swarm.local_steps
    trainers = [p for p in peers if p.name != "aggregator"]
    started = time.monotonic()
    while True:
        rows = [p.latest for p in trainers]
        progress(min((r or {}).get("step", 0) for r in rows))
        if all(r is not None and r["step"] >= max_steps for r in rows):
            break
        codes = [p.proc.poll() for p in peers]
        if any(code not in (None, 0) for code in codes):
            raise RuntimeError(f"a peer failed (exit codes {codes}); see the logs in {workdir}")
        if all(p.proc.poll() == 0 for p in trainers):
            break  # every trainer left at the end of its --duration
        if config.budget.seconds and time.monotonic() - started > config.budget.seconds + 120:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # let the last exchanges finish


def _series(method: str, seed: int, trainers: list[PeerProcess], everyone: list[PeerProcess]) -> RunResult:
    """Resample every peer's metric rows on a common 1 s grid (latest row at or before each instant)."""
    for p in everyone:
        p.poll_metrics()
    for p in everyone:  # one clock for every process (rows written before "wall" existed keep their own)
        for r in p.rows:
            r["t"] = r.get("wall", r["t"])
    start = min(p.rows[0]["t"] for p in trainers)
    end = max(p.rows[-1]["t"] for p in trainers)
    result = RunResult(method, seed)
    t, round_ = start, 0
    while t <= end + GRID_S:
        accs, sent, steps = [], 0, []
        for p in everyone:
            past = [r for r in p.rows if r["t"] <= t] or p.rows[:1]
            sent += past[-1]["bytes_sent"]
            if p in trainers:
                accs.append(past[-1]["test_acc"])
                steps.append(past[-1]["step"])
        result.rows.append({"method": method, "seed": seed, "round": round_, "time_s": round(t - start, 3),
                            "bytes_sent": sent, "mean_acc": sum(accs) / len(accs), "min_acc": min(accs),
                            "max_acc": max(accs), "consensus_distance": float("nan"), "online": len(trainers),
                            "mean_step": sum(steps) / len(steps)})  # fmt: skip
        result.peer_rows += [{"method": method, "seed": seed, "round": round_, "peer": i, "acc": a} for i, a in enumerate(accs)]
        t += GRID_S
        round_ += 1
    return result
