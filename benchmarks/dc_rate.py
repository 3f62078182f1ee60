"""Data-channel rate and CPU per megabyte between two processes: aiortc and libdatachannel.

Each pair is two processes on this machine (``benchmarks/dc_endpoint.py``), one sending and
one receiving 48 MiB (after a 4 MiB warm-up) in 256 KiB messages, the product's chunk size,
with the product's 4 MiB / 1 MiB high/low-water backpressure, both on uvloop:

* ``aiortc -> aiortc``: today's Python peers (pure-Python SCTP and DTLS), aiortc as
  ``scripts/setup.sh`` patched it; ``stock aiortc -> stock aiortc`` the same without the patch
  (``benchmarks.aiortc_variant``), side by side;
* ``native -> native``: libdatachannel (C++ SCTP, DTLS and ICE) through ``aiolibdatachannel``,
  which needs Python >= 3.12 and runs from ``.venv-native`` (``scripts/setup.sh`` makes it
  when a Python 3.12 is on the machine);
* ``native -> aiortc`` and ``aiortc -> native``: the two stacks on one unchanged wire.

Reported per pair: the rate in MB/s (10^6 bytes: measured bytes over the sender's time from
its first measured send, on a channel emptied by the warm-up's reply, to the receiver's reply
that everything arrived) and, on each side, CPU seconds of the whole
process (all threads) per MB moved: ``(process CPU over the measured part) / (MB)``. The
median of ``--trials`` runs. Writes benchmarks/results/dc_rate.json (config, commit, machine).
Run: ``.venv/bin/python -m benchmarks.dc_rate``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.transfer import machine
from benchmarks.aiortc_variant import env_with, installed_is_patched, stock_overlay
from benchmarks.run_all import commit_of_checkout

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ENDPOINT = ROOT / "benchmarks" / "dc_endpoint.py"
NATIVE_PYTHON = ROOT / ".venv-native" / "bin" / "python"
PAIRS = [("aiortc", "aiortc"), ("stock aiortc", "stock aiortc"), ("native", "native"), ("native", "aiortc"), ("aiortc", "native")]
TIMEOUT_S = 600.0
MB = 1e6


def interpreter(stack: str, native_python: Path) -> str:
    return str(native_python) if stack == "native" else sys.executable


def endpoint_env(stack: str, stock: Path | None) -> dict[str, str] | None:
    """The stock-aiortc ends import aiortc from ``stock`` (benchmarks.aiortc_variant)."""
    if stack != "stock aiortc":
        return None
    if stock is None:
        raise RuntimeError("a stock-aiortc pair needs the stock copy (benchmarks.aiortc_variant.stock_overlay)")
    return env_with(stock)


def result_of(proc: subprocess.Popen[str], who: str) -> dict[str, Any]:
    """The ``{"result": ...}`` line an endpoint process prints; RuntimeError (with its stderr) if it ends without one."""
    for line in proc.stdout:  # type: ignore[union-attr]
        msg = json.loads(line)
        if "result" in msg:
            return msg["result"]
    raise RuntimeError(f"the {who} ended without a result (exit {proc.wait()}): {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]


@contextmanager
def endpoint_pair(offerer: list[str], answerer: list[str], envs: tuple[dict[str, str] | None, dict[str, str] | None] = (None, None),
                  timeout_s: float = TIMEOUT_S) -> Iterator[tuple[subprocess.Popen[str], subprocess.Popen[str]]]:  # fmt: skip
    """Start two endpoint processes (commands ``offerer`` and ``answerer``) and hand the offer and the answer across.

    Yields both, connected; both are killed after ``timeout_s`` and on the way out.
    """
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env=env) for cmd, env in ((offerer, envs[0]), (answerer, envs[1]))]  # fmt: skip
    timer = threading.Timer(timeout_s, lambda: [p.kill() for p in procs])
    timer.start()
    try:
        offering, answering = procs
        answering.stdin.write(offering.stdout.readline())  # type: ignore[union-attr]  # the offer
        answering.stdin.flush()  # type: ignore[union-attr]
        offering.stdin.write(answering.stdout.readline())  # type: ignore[union-attr]  # the answer
        offering.stdin.flush()  # type: ignore[union-attr]
        yield offering, answering
        for p in procs:
            p.wait(timeout=60)
    finally:
        timer.cancel()
        for p in procs:
            if p.poll() is None:
                p.kill()


def one_transfer(send_stack: str, receive_stack: str, native_python: Path, size: int, warmup: int, message_size: int,
                 stock: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one sender and one receiver process; their two result lines, and the rate.

    Stacks: "aiortc" (the installed, patched one), "stock aiortc" (from ``stock``), "native".
    """
    common = ["--bytes", str(size), "--warmup", str(warmup), "--message-size", str(message_size)]
    cmd = {role: [interpreter(stack, native_python), str(ENDPOINT), "--stack", stack.split()[-1], "--role", role, *common]
           for role, stack in (("send", send_stack), ("receive", receive_stack))}  # fmt: skip
    with endpoint_pair(cmd["send"], cmd["receive"], (endpoint_env(send_stack, stock), endpoint_env(receive_stack, stock))) as (send, receive):
        sent, got = result_of(send, f"{send_stack} sender"), result_of(receive, f"{receive_stack} receiver")
    mb = got["bytes"] / MB
    # the sender's window holds every measured byte's sending and arrival (and one short reply)
    return {"mb_s": mb / sent["wall_s"], "send_cpu_s_per_mb": sent["cpu_s"] / mb, "receive_cpu_s_per_mb": got["cpu_s"] / mb,
            "send": sent, "receive": got}  # fmt: skip


def measure_pair(send_stack: str, receive_stack: str, native_python: Path, trials: int, size: int, warmup: int,
                 message_size: int, stock: Path | None) -> dict[str, Any]:  # fmt: skip
    runs = [one_transfer(send_stack, receive_stack, native_python, size, warmup, message_size, stock) for _ in range(trials)]
    med = {key: statistics.median(r[key] for r in runs) for key in ("mb_s", "send_cpu_s_per_mb", "receive_cpu_s_per_mb")}
    return {**med, "trials": runs}


def native_version(native_python: Path) -> str | None:
    if not native_python.exists():
        return None
    out = subprocess.run([str(native_python), "-c", "import sys, aiolibdatachannel as m; print(sys.version.split()[0], m.__version__)"],
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip() if out.returncode == 0 else None


def table(results: dict[str, Any]) -> str:
    lines = ["| sender -> receiver | MB/s | sender CPU s/MB | receiver CPU s/MB |", "|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | |")
        else:
            lines.append(f"| {name} | {r['mb_s']:.1f} | {r['send_cpu_s_per_mb']:.3f} | {r['receive_cpu_s_per_mb']:.3f} |")
    return "\n".join(lines)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """``report`` as indented JSON at ``path``, atomically (its directory made if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(report, indent=1) + "\n")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_pair(results: dict[str, Any], send_stack: str, receive_stack: str, native: str | None, stock: Path | None,
             args: argparse.Namespace) -> None:  # fmt: skip
    name = f"{send_stack} -> {receive_stack}"
    if "native" in (send_stack, receive_stack) and native is None:
        results[name] = {"error": f"no native stack at {args.native_python} (scripts/setup.sh makes it with a Python 3.12)"}
        return
    if "stock aiortc" in (send_stack, receive_stack) and stock is None:
        results[name] = {"error": "the installed aiortc is stock (scripts/setup.sh applies the patch)"}
        return
    results[name] = measure_pair(send_stack, receive_stack, args.native_python, args.trials, args.mib * 1024 * 1024,
                                 args.warmup_mib * 1024 * 1024, args.message_size, stock)  # fmt: skip
    print(name, {k: round(v, 3) for k, v in results[name].items() if k != "trials"}, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="runs per pair, the median is reported (default 3)")
    parser.add_argument("--mib", type=int, default=48, help="measured MiB per run (default 48)")
    parser.add_argument("--warmup-mib", type=int, default=4, help="MiB sent before the measurement (default 4)")
    parser.add_argument("--message-size", type=int, default=262144, help="bytes per message (default 262144)")
    parser.add_argument("--native-python", type=Path, default=NATIVE_PYTHON,
                        help="interpreter with aiolibdatachannel (default .venv-native/bin/python)")
    parser.add_argument("--out", type=Path, default=RESULTS / "dc_rate.json", help="results file")
    args = parser.parse_args(argv)
    native = native_version(args.native_python)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stock = stock_overlay(Path(tmp)) if installed_is_patched() else None
        for send_stack, receive_stack in PAIRS:
            run_pair(results, send_stack, receive_stack, native, stock, args)
    text = table(results)
    report = {"benchmark": "dc_rate", "command": "python -m benchmarks.dc_rate " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": commit_of_checkout(), "machine": {**machine(), "native": native},
              "config": {"trials": args.trials, "mib": args.mib, "warmup_mib": args.warmup_mib, "message_size": args.message_size,
                         "loop": "uvloop", "aiortc_sctp_patch": stock is not None, "high_water": 4 * 1024 * 1024, "low_water": 1024 * 1024},
              "results": results, "table": text}  # fmt: skip
    write_report(args.out, report)
    print(text)


if __name__ == "__main__":
    main()
