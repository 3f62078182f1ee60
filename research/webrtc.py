"""The ``webrtc`` backend: real headless peers and a signaling server on this machine.

Each method publishes its own swarm (same data split, model and training config) and starts
``swarm join`` subprocesses over loopback WebRTC; for ``central`` one more process is the
FedAvg aggregator named in the manifest. Time is wall-clock and bytes are what the data
channels carried. ``local`` and ``pooled`` involve no transport and run on the simulator.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rich.progress import Progress

from apps.procs import PeerProcess, spawn_peer, start_server
from apps.publish import default_publication, upload
from peer.identity import load_or_create
from protocols.crypto import public_key_bytes
from protocols.manifest import GossipConfig, TrainingConfig

from .config import ExperimentConfig
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
                results.append(await _run_one(config, out / "webrtc" / f"{method}-{seed}", method, seed,
                                              lambda done, t=task: bar.update(t, completed=done)))  # fmt: skip
    return results


async def _run_one(config: ExperimentConfig, workdir: Path, method: str, seed: int, progress) -> RunResult:  # type: ignore[no-untyped-def]
    workdir.mkdir(parents=True, exist_ok=True)
    runner, base = await start_server(workdir / "server-data")
    peers: list[PeerProcess] = []
    max_steps = config.budget.rounds * config.swarm.local_steps
    try:
        publisher = load_or_create(workdir / "publisher.key")
        aggregator_key = public_key_bytes(load_or_create(workdir / "aggregator.key")).hex()
        gossip = GossipConfig(method=method, aggregator=aggregator_key if method == "central" else None,  # type: ignore[arg-type]
                              degree=config.swarm.degree, codec=config.swarm.codec, exchange_timeout_s=60)  # fmt: skip
        training = TrainingConfig(optimizer=config.model.optimizer, learning_rate=max(config.model.learning_rate, 1e-9),
                                  batch_size=config.model.batch_size, local_steps=config.swarm.local_steps,
                                  eval_every=config.swarm.local_steps * config.budget.eval_every)  # fmt: skip
        pub = await asyncio.to_thread(
            default_publication, publisher, name=f"{config.name}-{method}", hidden=config.model.hidden,
            shards=config.swarm.peers, test_fraction=config.data.test_fraction, partition=config.data.partition,
            alpha=config.data.alpha, seed=seed, training=training, gossip=gossip,
        )  # fmt: skip
        join = (await upload(base, pub))["join_url"]
        extra = ["--max-steps", str(max_steps), "--eval-limit", str(config.data.eval_examples), "--seed", str(seed)]
        if config.budget.seconds:
            extra += ["--duration", str(config.budget.seconds)]
        peers = [spawn_peer(join, workdir, f"peer{i}", *extra) for i in range(config.swarm.peers)]
        if method == "central":  # its identity is workdir/aggregator.key, the key the manifest names
            peers.append(spawn_peer(join, workdir, "aggregator", *extra))
        trainers = [p for p in peers if p.name != "aggregator"]
        started = time.monotonic()
        while True:
            rows = [p.latest for p in trainers]
            progress(min((r or {}).get("step", 0) for r in rows))
            if all(r is not None and r["step"] >= max_steps for r in rows):
                break
            if any(p.proc.poll() is not None for p in peers):
                raise RuntimeError(f"a peer exited early; see the logs in {workdir}")
            if config.budget.seconds and time.monotonic() - started > config.budget.seconds + 120:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # let the last exchanges finish
    finally:
        for p in peers:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in peers))
        await runner.cleanup()
    return _series(method, seed, [p for p in peers if p.name != "aggregator"], peers)


def _series(method: str, seed: int, trainers: list[PeerProcess], everyone: list[PeerProcess]) -> RunResult:
    """Resample every peer's metric rows on a common 1 s grid (latest row at or before each instant)."""
    for p in everyone:
        p.poll_metrics()
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
