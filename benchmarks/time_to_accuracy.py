"""Time to a target test accuracy over real WebRTC: gossip vs central FedAvg, float32 vs int8.

8 headless Python peers (``swarm join`` subprocesses) on this machine, the default MLP on the
MNIST split, IID shards; ``research.webrtc`` runs each variant in turn in one invocation, and a
single peer training on all the training data in this process is the reference. Time counts
from the first evaluation of the slowest-starting peer (TensorFlow start-up excluded).
Writes benchmarks/results/time_to_accuracy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from research.config import ExperimentConfig
from research.webrtc import run_one

ROOT = Path(__file__).resolve().parent.parent


def first_time(rows: list[dict], target: float) -> float | None:
    return next((r["time_s"] for r in rows if r["mean_acc"] >= target), None)


def single_peer_seconds(config: ExperimentConfig, target: float, max_steps: int) -> tuple[float | None, float]:
    """One Trainer on all training data: seconds of training until the target (evaluated every 25 steps)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from apps.publish import default_publication
    from peer.trainer import Trainer
    from protocols.dataset import decode_shard

    pub = default_publication(Ed25519PrivateKey.generate(), shards=1, seed=0)
    m = pub.manifest
    trainer = Trainer(m, pub.blobs[m.model.initial_weights.digest], decode_shard(pub.blobs[m.dataset.train_shards[0].digest]),
                      decode_shard(pub.blobs[m.dataset.test.digest]))  # fmt: skip
    trainer.train_steps(1)  # trace the tf.function outside the timing
    spent, acc = 0.0, 0.0
    while trainer.step < max_steps:
        t0 = time.perf_counter()
        trainer.train_steps(25)
        spent += time.perf_counter() - t0
        acc = trainer.evaluate(config.data.eval_examples)[1]
        if acc >= target:
            return spent, acc
    return None, acc


async def run(args: argparse.Namespace) -> dict:
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
                     "peers": args.peers, "target": args.target, "variants": {}}  # fmt: skip
    with TemporaryDirectory() as tmp:
        for method, codec in [("gossip", "float32"), ("central", "float32"), ("gossip", "int8")]:
            config = ExperimentConfig.model_validate({
                "name": "tta", "backend": "webrtc", "data": {"eval_examples": args.eval_examples},
                "swarm": {"peers": args.peers, "local_steps": args.local_steps, "degree": 3, "codec": codec},
                "budget": {"rounds": args.rounds, "eval_every": 1},
            })  # fmt: skip
            result = await run_one(config, Path(tmp) / f"{method}-{codec}", method, 0, lambda done: None)
            name = f"{method} {codec}"
            results["variants"][name] = {
                "seconds_to_target": first_time(result.rows, args.target), "final_mean_acc": result.rows[-1]["mean_acc"],
                "bytes_sent": result.rows[-1]["bytes_sent"], "seconds": result.rows[-1]["time_s"],
            }  # fmt: skip
            print(name, results["variants"][name], flush=True)
    config = ExperimentConfig.model_validate({"data": {"eval_examples": args.eval_examples}})
    seconds, acc = single_peer_seconds(config, args.target, args.rounds * args.local_steps * args.peers)
    results["variants"]["single peer, all data"] = {"seconds_to_target": seconds, "final_mean_acc": acc}
    v = results["variants"]
    g, c, q = (v[k]["seconds_to_target"] for k in ("gossip float32", "central float32", "gossip int8"))
    results["ratios"] = {
        "gossip / central (time to target)": g / c if g and c else None,
        "int8 / float32 gossip (time to target)": q / g if q and g else None,
        "int8 - float32 final accuracy (points)": 100 * (v["gossip int8"]["final_mean_acc"] - v["gossip float32"]["final_mean_acc"]),
        "int8 / float32 bytes": v["gossip int8"]["bytes_sent"] / max(1, v["gossip float32"]["bytes_sent"]),
    }  # fmt: skip
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.92)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--local-steps", type=int, default=25)
    parser.add_argument("--eval-examples", type=int, default=1000)
    result = asyncio.run(run(parser.parse_args()))
    (ROOT / "benchmarks" / "results" / "time_to_accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
