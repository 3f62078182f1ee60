"""Wire codecs at equal rounds: float32 vs float16 vs int8 (with error feedback), several seeds.

Gossip on the default MNIST MLP (784-128-10; ``--models 784-512-256-10`` adds a 4x wider one,
about 2 minutes per run here), 16 peers, IID and Dirichlet 0.5 shards, 120 rounds of 10 local steps, the time model measured (loopback
link, Python step time). Decides whether int8 may be a default: its accuracy cost against
float32 must stay within 0.5 points (issue 15). Writes docs/research/codec/codec.json (command,
config per cell, git commit, machine, per seed the mean and worst-peer accuracy and the bytes
sent) and prints the table.
Run: ``PYTHONPATH=. .venv/bin/python experiments/codec_table.py``.
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

CODECS = ("float32", "float16", "int8")
MODELS = {"784-128-10": [128], "784-512-256-10": [512, 256]}
PARTITIONS = {"iid": {"partition": "iid"}, "dirichlet 0.5": {"partition": "dirichlet", "alpha": 0.5}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", type=int, default=16)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=120)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=["784-128-10"])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "research" / "codec" / "codec.json")
    args = p.parse_args()
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    from research import sim
    from research.config import ExperimentConfig

    results = {"command": " ".join(["experiments/codec_table.py", *sys.argv[1:]]), "commit": git_commit(),
               "machine": {**machine(), "load_average": os.getloadavg()}, "cells": []}  # fmt: skip
    for model in args.models:
        hidden = MODELS[model]
        for part, data in PARTITIONS.items():
            for codec in CODECS:
                cfg = ExperimentConfig.model_validate({
                    "name": f"codec-{codec}", "data": {**data, "eval_examples": 1000}, "model": {"hidden": hidden},
                    "swarm": {"peers": args.peers, "degree": 4, "local_steps": 10, "codec": codec},
                    "network": {"measured": "benchmarks/results/transfer.json", "profile": "loopback",
                                "step_times": "benchmarks/results/browser.json"},
                    "budget": {"rounds": args.rounds, "eval_every": 10},
                })  # fmt: skip
                runs = []
                for seed in args.seeds:
                    started = time.monotonic()
                    r = sim.run(cfg, "gossip", seed)  # type: ignore[arg-type]
                    last = r.rows[-1]
                    runs.append({"seed": seed, "mean_acc": last["mean_acc"], "min_acc": last["min_acc"],
                                 "bytes_sent": last["bytes_sent"], "wall_s": round(time.monotonic() - started, 1)})  # fmt: skip
                    print(model, part, codec, runs[-1], flush=True)
                results["cells"].append({"model": model, "partition": part, "codec": codec,
                                         "config": json.loads(cfg.model_dump_json()), "runs": runs,
                                         "mean_acc": sum(x["mean_acc"] for x in runs) / len(runs),
                                         "min_acc": sum(x["min_acc"] for x in runs) / len(runs),
                                         "mb_sent": sum(x["bytes_sent"] for x in runs) / len(runs) / 1e6})  # fmt: skip
    lines = ["| model | shards | codec | mean acc | worst peer | vs float32 (points) | MB sent |", "|---|---|---|---|---|---|---|"]
    base = {(c["model"], c["partition"]): c for c in results["cells"] if c["codec"] == "float32"}
    for c in results["cells"]:
        ref = base[(c["model"], c["partition"])]
        lines.append(f"| {c['model']} | {c['partition']} | {c['codec']} | {c['mean_acc']:.3f} | {c['min_acc']:.3f} | "
                     f"{100 * (c['mean_acc'] - ref['mean_acc']):+.1f} | {c['mb_sent']:.0f} |")  # fmt: skip
    results["table"] = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(results["table"])


if __name__ == "__main__":
    main()
