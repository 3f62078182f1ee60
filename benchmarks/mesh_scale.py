"""A real mesh at the scale of this machine: N headless Python peers train together to a target.

Starts the signaling server in-process, publishes the default swarm with N shards, and starts N
``swarm join`` subprocesses over loopback WebRTC. Reports the seconds until every peer reached
the target test accuracy, exchanges, and each peer's peak memory (VmHWM from /proc).
Writes benchmarks/results/mesh_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import spawn_peer, start_server
from apps.publish import default_publication, upload
from benchmarks.transfer import machine

ROOT = Path(__file__).resolve().parent.parent


def smaps_mb(pid: int) -> dict[str, float]:
    """Proportional (shared pages split among their users) and private memory of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value) / 1024
    return {"pss": fields.get("Pss", float("nan")),
            "private": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}  # fmt: skip


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(peers: int, target: float, timeout: float) -> dict:
    with TemporaryDirectory() as tmp:
        runner, base = await start_server(Path(tmp) / "server")
        procs = []
        try:
            pub = await asyncio.to_thread(default_publication, Ed25519PrivateKey.generate(), shards=peers)
            join = (await upload(base, pub))["join_url"]
            procs = [spawn_peer(join, Path(tmp), f"peer{i}", "--eval-limit", "1000", "--seed", str(i)) for i in range(peers)]
            started, first_eval, reached = time.monotonic(), None, None
            while time.monotonic() - started < timeout:
                rows = [p.latest for p in procs]
                if first_eval is None and all(r is not None for r in rows):
                    first_eval = time.monotonic()
                if all(r is not None and r["test_acc"] >= target for r in rows):
                    reached = time.monotonic()
                    break
                if any(p.proc.poll() is not None for p in procs):
                    raise RuntimeError("a peer exited; see its log")
                await asyncio.sleep(1.0)
            peaks = [peak_mb(p.proc.pid) for p in procs]
            shares = [smaps_mb(p.proc.pid) for p in procs]
            rows = [p.latest or {} for p in procs]
        finally:
            for p in procs:
                p.terminate()
            await asyncio.gather(*(p.wait(60) for p in procs))
            await runner.cleanup()
    return {
        "machine": machine(), "peers": peers, "target": target, "reached": reached is not None,
        "seconds_all_started": round(first_eval - started, 1) if first_eval else None,
        "seconds_to_target_after_start": round(reached - first_eval, 1) if reached and first_eval else None,
        "final_test_acc": [r.get("test_acc") for r in rows], "steps": [r.get("step") for r in rows],
        "neighbors": [r.get("neighbors") for r in rows],
        "exchanges_merged": [r.get("exchanges", {}).get("merged") for r in rows],
        # every outcome of the exchanges peers started, summed over peers (merged, declined, busy, timeout, ...)
        "exchange_outcomes": {k: sum(r.get("exchanges", {}).get(k, 0) or 0 for r in rows)
                              for k in sorted({k for r in rows for k in r.get("exchanges", {})})},
        "peak_rss_mb": {"max": max(peaks), "mean": sum(peaks) / len(peaks), "all": peaks},
        # RSS counts TensorFlow's shared libraries in full in every process; PSS splits them
        "pss_mb": {"max": max(s["pss"] for s in shares), "mean": sum(s["pss"] for s in shares) / len(shares)},
        "private_mb": {"max": max(s["private"] for s in shares), "mean": sum(s["private"] for s in shares) / len(shares)},
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=16)
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    result = asyncio.run(run(args.peers, args.target, args.timeout))
    (ROOT / "benchmarks" / "results" / "mesh_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
