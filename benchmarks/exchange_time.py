"""One gossip exchange of the default model between two processes: aiortc with the SCTP patch vs stock.

Each run is two processes on this machine (``benchmarks/exchange_endpoint.py``), each on its
own core as two peers on two machines would be, running the product's link, transport and
engine on uvloop: one warm-up exchange, then ``--rounds`` timed ones, one every 100 ms (the
receivers' per-neighbor frame limit allows no more), each from
``GossipEngine.initiate`` to the merged reply (propose, accept, a signed 407 kB request,
verification and averaging on the responder, a 407 kB response, verification and merge).
The same runs with stock aiortc (``benchmarks.aiortc_variant``: the installed package with
the patch reversed, first on PYTHONPATH) follow in the same invocation, side by side.

Reported per variant: the median, p90 and max exchange time in ms over all timed exchanges of
all ``--trials`` runs (p90 by nearest rank), and CPU ms per exchange on each side (whole process, all threads, over
the timed exchanges). Writes benchmarks/results/exchange_time.json (config, commit, machine).
Run: ``.venv/bin/python -m benchmarks.exchange_time``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from benchmarks.aiortc_variant import env_with, installed_is_patched, stock_overlay
from benchmarks.dc_rate import endpoint_pair, result_of, write_report
from benchmarks.run_all import commit_of_checkout
from benchmarks.transfer import machine
from peer.transport import FRAME_RATE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TIMEOUT_S = 600.0
VARIANTS = ["aiortc", "stock aiortc"]
# an exchange is two frames into each side (propose and request, or accept and response); a
# receiver admits FRAME_RATE frames a second per neighbor and drops the rest (rate_limited), so
# back-to-back exchanges faster than this would time out rather than measure the link
INTERVAL_MS = 1e3 * 2 / FRAME_RATE


def _raw(key: Ed25519PrivateKey) -> tuple[str, str]:
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
    return private, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def one_run(rounds: int, seed: int, overlay: Path | None, interval_ms: float = INTERVAL_MS) -> dict[str, Any]:
    """Two endpoint processes (with stock aiortc when ``overlay`` is given); both result lines.

    Raises RuntimeError if an exchange did not merge or a frame was refused.
    """
    keys = [_raw(Ed25519PrivateKey.generate()) for _ in range(2)]
    cmd = {role: [sys.executable, "-m", "benchmarks.exchange_endpoint", "--role", role, "--key", keys[i][0],
                  "--peer", keys[1 - i][1], "--rounds", str(rounds), "--seed", str(seed + i),
                  "--interval-ms", str(interval_ms)]
           for i, role in enumerate(("initiator", "responder"))}  # fmt: skip
    with endpoint_pair(cmd["initiator"], cmd["responder"], (env_with(overlay), env_with(overlay)), TIMEOUT_S) as (initiator, responder):
        started = result_of(initiator, "initiator")
        responder.stdin.write('{"stop": true}\n')  # type: ignore[union-attr]
        responder.stdin.flush()  # type: ignore[union-attr]
        served = result_of(responder, "responder")
    for who, r in (("initiator", started), ("responder", served)):
        if r["rejected"] or r["chunk_rejects"]:
            raise RuntimeError(f"the {who} refused frames during the benchmark: {r['rejected']} {r['chunk_rejects']}")
    if served["served"] != rounds:
        raise RuntimeError(f"the responder served {served['served']} timed exchanges, not {rounds}")
    return {"initiator": started, "responder": served}


def measure(rounds: int, trials: int, overlay: Path | None, interval_ms: float = INTERVAL_MS) -> dict[str, Any]:
    runs = [one_run(rounds, 100 * t, overlay, interval_ms) for t in range(trials)]
    ms = sorted(x for r in runs for x in r["initiator"]["ms"])
    exchanges = rounds * trials
    return {"median_ms": statistics.median(ms), "p90_ms": ms[math.ceil(0.9 * len(ms)) - 1], "max_ms": ms[-1],
            "initiator_cpu_ms": 1e3 * sum(r["initiator"]["cpu_s"] for r in runs) / exchanges,
            "responder_cpu_ms": 1e3 * sum(r["responder"]["cpu_s"] for r in runs) / exchanges,
            "all_ms": [x for r in runs for x in r["initiator"]["ms"]]}  # fmt: skip


def table(results: dict[str, Any]) -> str:
    lines = ["| aiortc | median ms | p90 ms | max ms | initiator CPU ms | responder CPU ms |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | |")
        else:
            lines.append(f"| {name} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['max_ms']:.1f} | "
                         f"{r['initiator_cpu_ms']:.1f} | {r['responder_cpu_ms']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed exchanges per run (default 30)")
    parser.add_argument("--trials", type=int, default=3, help="runs (process pairs) per variant (default 3)")
    parser.add_argument("--interval-ms", type=float, default=INTERVAL_MS,
                        help=f"from one exchange's start to the next's (default {INTERVAL_MS:.0f}: the receivers' frame rate limit)")
    parser.add_argument("--out", type=Path, default=RESULTS / "exchange_time.json", help="results file")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stock = stock_overlay(Path(tmp)) if installed_is_patched() else None
        for name in VARIANTS:
            if name == "stock aiortc" and stock is None:
                results[name] = {"error": "the installed aiortc is stock (scripts/setup.sh applies the patch)"}
                continue
            results[name] = measure(args.rounds, args.trials, stock if name == "stock aiortc" else None, args.interval_ms)
            print(name, {k: round(v, 1) for k, v in results[name].items() if k != "all_ms"}, flush=True)
    text = table(results)
    report = {"benchmark": "exchange_time",
              "command": "python -m benchmarks.exchange_time " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": commit_of_checkout(), "machine": machine(),
              "config": {"rounds": args.rounds, "trials": args.trials, "interval_ms": args.interval_ms, "loop": "uvloop", "model": "MLP 784-128-10",
                         "params": 101770, "codec": "float32", "aiortc_sctp_patch": stock is not None},
              "results": results, "table": text}  # fmt: skip
    write_report(args.out, report)
    print(text)


if __name__ == "__main__":
    main()
