"""Label-skew remedies vs plain gossip and FedAvg at equal bytes (Dirichlet alpha 0.1), several seeds.

For each peer count: plain gossip, the one-peer exponential graph (``swarm.mixing``), denser
mixing with 2 partners per round (``swarm.fanout``) and FedAvg, all stopping at the bytes of 40
FedAvg rounds (``peers x 2 x frame x 40``) or the round cap, the time model measured
(loopback link, Python step time). Writes docs/research/skew/skew.json (command, config per
cell, git commit, machine, per seed the mean and worst-peer accuracy of every peer's model right
after its last exchange, and of its model at the stop) and prints the table.
Run: ``PYTHONPATH=. .venv/bin/python experiments/skew_table.py`` (16 and 64 peers, seeds 0 1 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.transfer import machine  # noqa: E402
from benchmarks.wan import git_commit  # noqa: E402

VARIANTS = {"gossip": ("gossip", {}), "gossip + exponential graph": ("gossip", {"mixing": "exponential"}),
            "gossip + fanout 2": ("gossip", {"fanout": 2}), "FedAvg": ("central", {})}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", type=int, nargs="+", default=[16, 64])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=120, help="round cap")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "research" / "skew" / "skew.json")
    args = p.parse_args()
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    from research import sim
    from research.config import ExperimentConfig
    from research.sim import frame_bytes

    results = {"command": " ".join(["experiments/skew_table.py", *sys.argv[1:]]), "commit": git_commit(),
               "machine": {**machine(), "load_average": os.getloadavg()}, "cells": []}  # fmt: skip
    frame = frame_bytes([(784, 128), (128,), (128, 10), (10,)], "float32")
    for peers in args.peers:
        for name, (method, swarm) in VARIANTS.items():
            cfg = ExperimentConfig.model_validate({
                "name": f"skew-{peers}", "data": {"partition": "dirichlet", "alpha": 0.1, "eval_examples": 1000},
                "swarm": {"peers": peers, "degree": 4, "local_steps": 10, **swarm},
                "network": {"measured": "benchmarks/results/transfer.json", "profile": "loopback",
                            "step_times": "benchmarks/results/browser.json"},
                "budget": {"rounds": args.rounds, "eval_every": 10, "bytes": peers * 2 * frame * 40},
            })  # fmt: skip
            runs = []
            for seed in args.seeds:
                started = time.monotonic()
                r = sim.run(cfg, method, seed)  # type: ignore[arg-type]
                last, current = r.rows[-1], r.rows[-2]  # after each peer's last exchange; at the stop, mid local drift
                runs.append({"seed": seed, "mean_acc": last["mean_acc"], "min_acc": last["min_acc"], "bytes_sent": last["bytes_sent"],
                             "current_mean_acc": current["mean_acc"], "current_min_acc": current["min_acc"],
                             "round": last["round"], "exchanges": r.stats["exchanges"], "wall_s": round(time.monotonic() - started, 1)})  # fmt: skip
                print(peers, name, runs[-1], flush=True)
            results["cells"].append({"peers": peers, "variant": name, "config": json.loads(cfg.model_dump_json()), "runs": runs,
                                     "mean_acc": sum(x["mean_acc"] for x in runs) / len(runs),
                                     "min_acc": sum(x["min_acc"] for x in runs) / len(runs)})  # fmt: skip
    lines = ["| peers | variant | mean acc after last exchange | worst peer | per seed mean / worst | at the stop (mid local steps): mean / worst | MB sent |",
             "|---|---|---|---|---|---|---|"]
    for c in results["cells"]:
        per = ", ".join(f"{x['mean_acc']:.3f}/{x['min_acc']:.3f}" for x in c["runs"])
        mb = sum(x["bytes_sent"] for x in c["runs"]) / len(c["runs"]) / 1e6
        cur = (sum(x["current_mean_acc"] for x in c["runs"]) / len(c["runs"]), sum(x["current_min_acc"] for x in c["runs"]) / len(c["runs"]))
        lines.append(f"| {c['peers']} | {c['variant']} | {c['mean_acc']:.3f} | {c['min_acc']:.3f} | {per} | {cur[0]:.3f} / {cur[1]:.3f} | {mb:.0f} |")
    results["table"] = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(results["table"])


if __name__ == "__main__":
    main()
