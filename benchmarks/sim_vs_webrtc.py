"""Simulated vs measured time to accuracy: one configuration on the ``sim`` and ``webrtc`` backends.

8 peers, the default MLP on the MNIST split (IID), gossip and FedAvg, the same seed, data and
manifest on both backends (``research.published``). The ``webrtc`` run is real ``swarm join``
processes over loopback WebRTC on this machine (wall clock, one clock for every process); the
``sim`` runs take their time model from measured files only (``research.timing``): the loopback
link of ``benchmarks/results/transfer.json`` and the step time of ``benchmarks/results/browser.json``,
once with a machine per peer and once with the 8 peers sharing this machine's cores (as the
webrtc run does). Reports, per method, the seconds to the target mean test accuracy and the
ratio simulated / measured.

Writes benchmarks/results/sim_vs_webrtc.json (command, config, git commit, machine, every time
series). Run: ``.venv/bin/python -m benchmarks.sim_vs_webrtc`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.time_to_accuracy import first_time
from benchmarks.transfer import machine
from benchmarks.wan import git_commit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def config(args: argparse.Namespace, backend: str, **network: Any) -> Any:
    from research.config import ExperimentConfig

    return ExperimentConfig.model_validate({
        "name": "sim-vs-webrtc", "backend": backend, "seeds": [args.seed], "data": {"eval_examples": args.eval_examples},
        "swarm": {"peers": args.peers, "local_steps": args.local_steps, "degree": 3},
        "budget": {"rounds": args.rounds, "eval_every": 1}, "network": network,
    })  # fmt: skip


def summary(rows: list[dict[str, Any]], target: float) -> dict[str, Any]:
    return {"seconds_to_target": first_time(rows, target), "final_mean_acc": rows[-1]["mean_acc"],
            "final_min_acc": rows[-1]["min_acc"], "bytes_sent": rows[-1]["bytes_sent"], "seconds": rows[-1]["time_s"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.92)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--local-steps", type=int, default=25)
    parser.add_argument("--eval-examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--link", default="benchmarks/results/transfer.json", help="measured link file (loopback)")
    parser.add_argument("--steps", default="benchmarks/results/browser.json", help="measured step-time file")
    parser.add_argument("--skip-webrtc", action="store_true", help="reuse the webrtc series of an earlier results file")
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    from research import sim
    from research.webrtc import run_one

    out_path = RESULTS / "sim_vs_webrtc.json"
    previous = json.loads(out_path.read_text()) if args.skip_webrtc and out_path.exists() else None
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.sim_vs_webrtc", *sys.argv[1:]]), "commit": git_commit(),
        "machine": {**machine(), "load_average": os.getloadavg()}, "config": vars(args), "methods": {},
    }  # fmt: skip
    measured = {"measured": args.link, "profile": "loopback", "step_times": args.steps}
    variants = {"sim, a machine per peer": measured, "sim, peers share 2 cores": {**measured, "cores": os.cpu_count() or 2}}
    for method in ("gossip", "central"):
        entry: dict[str, Any] = {}
        if previous is not None:
            entry["webrtc"] = previous["methods"][method]["webrtc"]
        else:
            with tempfile.TemporaryDirectory() as tmp:
                started = time.monotonic()
                run = asyncio.run(run_one(config(args, "webrtc"), Path(tmp) / method, method, args.seed, lambda done: None))
                entry["webrtc"] = {**summary(run.rows, args.target), "wall_s": round(time.monotonic() - started, 1), "rows": run.rows}
        print(method, "webrtc", {k: v for k, v in entry["webrtc"].items() if k != "rows"}, flush=True)
        for name, net in variants.items():
            started = time.monotonic()
            r = sim.run(config(args, "sim", **net), method, args.seed)  # type: ignore[arg-type]
            entry[name] = {**summary(r.rows, args.target), "wall_s": round(time.monotonic() - started, 1),
                           "time_model": r.stats["time_model"], "exchanges": r.stats["exchanges"], "rows": r.rows}  # fmt: skip
            measured_s, simulated_s = entry["webrtc"]["seconds_to_target"], entry[name]["seconds_to_target"]
            entry[name]["over_measured"] = simulated_s / measured_s if measured_s and simulated_s else None
            print(method, name, {k: v for k, v in entry[name].items() if k != "rows"}, flush=True)
        results["methods"][method] = entry
    g = results["methods"]
    for name in ["webrtc", *variants]:
        a, b = g["gossip"][name]["seconds_to_target"], g["central"][name]["seconds_to_target"]
        results.setdefault("gossip_over_central", {})[name] = a / b if a and b else None
    lines = ["| method | webrtc (measured) | " + " | ".join(variants) + " |", "|---|---|" + "---|" * len(variants)]
    for method, entry in g.items():
        cells = [f"{entry['webrtc']['seconds_to_target']} s"]
        for name in variants:
            e = entry[name]
            ratio = f" ({e['over_measured']:.2f}x)" if e["over_measured"] else ""
            cells.append(f"{e['seconds_to_target']:.1f} s{ratio}" if e["seconds_to_target"] else "not reached")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    results["table"] = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    print(results["table"])


if __name__ == "__main__":
    main()
