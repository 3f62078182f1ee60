"""Simulator scale-out: peer-steps per second on 1 and 2 Ray workers, and 1,024 peers x 100 rounds.

(a) scaling: the same gossip run (``--peers`` peers in 2 blocks, ``--rounds`` rounds of
    ``--local-steps`` steps of the default MLP) in one process (``sim``) and on a local Ray
    instance with the 2 blocks on 1 worker and on 2 workers; peer-steps per second of wall time
    (control plane, replay and evaluations included), and whether the results are identical;
(b) the large run: ``--big-peers`` x ``--big-rounds`` of the default MLP, gossip, on the backend
    given by ``--big-backend``; wall time, final accuracy.

Writes benchmarks/results/ray_scale.json (command, config, git commit, machine). Run:
``.venv/bin/python -m benchmarks.ray_scale``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.transfer import machine
from benchmarks.wan import git_commit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def config(peers: int, rounds: int, local_steps: int, blocks: int, workers: int | None, backend: str) -> Any:
    from research.config import ExperimentConfig

    return ExperimentConfig.model_validate({
        "name": "ray-scale", "backend": backend, "methods": ["gossip"], "data": {"eval_examples": 500},
        "swarm": {"peers": peers, "local_steps": local_steps, "degree": 4},
        "network": {"measured": "benchmarks/results/transfer.json", "profile": "loopback",
                    "step_times": "benchmarks/results/browser.json"},
        "budget": {"rounds": rounds, "eval_every": max(1, rounds // 5)}, "sim": {"blocks": blocks, "ray_workers": workers},
    })  # fmt: skip


def timed(cfg: Any) -> tuple[float, Any]:
    from research import sim

    factory = None
    if cfg.backend == "ray":
        from research.ray_backend import RayBlocks

        factory = RayBlocks.factory(cfg)
    started = time.monotonic()
    result = sim.run(cfg, "gossip", 0, blocks_factory=factory)
    return time.monotonic() - started, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", type=int, default=128)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--big-peers", type=int, default=1024)
    p.add_argument("--big-rounds", type=int, default=100)
    p.add_argument("--big-local-steps", type=int, default=5)
    p.add_argument("--big-backend", choices=["sim", "ray"], default="sim")
    p.add_argument("--skip-big", action="store_true")
    args = p.parse_args()
    from research import ray_backend

    out: dict[str, Any] = {"command": " ".join(["python -m benchmarks.ray_scale", *sys.argv[1:]]), "commit": git_commit(),
                           "machine": {**machine(), "load_average": os.getloadavg()}, "config": vars(args), "scaling": {}}  # fmt: skip
    steps = args.peers * args.rounds * args.local_steps
    reference = None
    for name, backend, workers in (("sim (one process)", "sim", None), ("ray, 1 worker", "ray", 1), ("ray, 2 workers", "ray", 2)):
        if backend == "ray":
            ray_backend.stop()
            ray_backend.start(None, workers or 1)
        seconds, result = timed(config(args.peers, args.rounds, args.local_steps, 2, workers, backend))
        reference = reference or result
        out["scaling"][name] = {"wall_s": round(seconds, 1), "peer_steps_per_s": round(steps / seconds, 1),
                                "final_mean_acc": result.rows[-1]["mean_acc"], "same_as_sim": result.rows == reference.rows,
                                "train_batches": result.stats["train_batches"], "operations": result.stats["operations"]}  # fmt: skip
        print(name, out["scaling"][name], flush=True)
    ray_backend.stop()
    previous = RESULTS / "ray_scale.json"
    if args.skip_big and previous.exists():  # keep the large run of an earlier invocation, with its own provenance
        old = json.loads(previous.read_text())
        if "big" in old:
            out["big"] = {**old["big"], "from": {k: old.get(k) for k in ("command", "commit", "machine")}}
    if not args.skip_big:
        if args.big_backend == "ray":
            ray_backend.start(None, 2)
        cfg = config(args.big_peers, args.big_rounds, args.big_local_steps, 2 if args.big_backend == "ray" else 1,
                     2 if args.big_backend == "ray" else None, args.big_backend)  # fmt: skip
        seconds, result = timed(cfg)
        big_steps = args.big_peers * args.big_rounds * args.big_local_steps
        out["big"] = {"peers": args.big_peers, "rounds": args.big_rounds, "local_steps": args.big_local_steps,
                      "backend": args.big_backend, "wall_s": round(seconds, 1), "peer_steps_per_s": round(big_steps / seconds, 1),
                      "final_mean_acc": result.rows[-1]["mean_acc"], "final_min_acc": result.rows[-1]["min_acc"],
                      "simulated_s": result.rows[-1]["time_s"], "stats": result.stats}  # fmt: skip
        print("big", {k: v for k, v in out["big"].items() if k != "stats"}, flush=True)
        ray_backend.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ray_scale.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
