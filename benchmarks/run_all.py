"""Run the whole benchmark suite and write benchmarks/results/SUMMARY.md (the table the README shows).

``.venv/bin/python -m benchmarks.run_all`` runs every benchmark as its own process, in turn
(each writes benchmarks/results/<name>.json), then summarizes. ``--only NAME`` reruns one;
``--summarize`` only rebuilds the table from the JSON files already there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SUITE = {
    "transfer": ["-m", "benchmarks.transfer"],
    "dc_rate": ["-m", "benchmarks.dc_rate"],
    "exchange_time": ["-m", "benchmarks.exchange_time"],
    "sync_rate": ["-m", "benchmarks.sync_rate"],
    "signaling_load": ["-m", "benchmarks.signaling_load"],
    "time_to_accuracy": ["-m", "benchmarks.time_to_accuracy"],
    "mesh_scale": ["-m", "benchmarks.mesh_scale"],
    "browser": ["-m", "benchmarks.browser"],
}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(x: Any, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def summary() -> str:
    rows: list[tuple[str, str, str, str]] = []
    if t := _load("transfer"):
        by_loop = {r["loop"]: r for r in t["results"]}
        base = by_loop["asyncio"]["aiortc"]["aiortc"]["mb_s"]
        best_loop = by_loop.get("uvloop", by_loop["asyncio"])
        tuned = max(v["mb_s"] for v in best_loop["aiortc"].values())
        ws = by_loop["asyncio"]["websocket"]["mb_s"]
        rows += [("raw data channel, both ends in one process, tuned vs default aiortc", f"{_fmt(tuned, '.1f')} vs {_fmt(base, '.1f')} MB/s",
                  f"{tuned / base:.2f}x", ">= 1.5x"),
                 ("aiortc (default) vs aiohttp websocket, same bytes", f"{_fmt(base, '.1f')} vs {_fmt(ws, '.0f')} MB/s",
                  f"{base / ws:.4f}x", "(reference)")]  # fmt: skip
    if d := _load("dc_rate"):
        res = d["results"]
        a, n = res.get("aiortc -> aiortc", {}), res.get("native -> native", {})
        if "mb_s" in a and "mb_s" in n:
            rows.append(("data channel, two processes (uvloop): libdatachannel vs aiortc, CPU s/MB send / receive",
                         f"{n['mb_s']:.1f} vs {a['mb_s']:.1f} MB/s; CPU {n['send_cpu_s_per_mb']:.3f} / {n['receive_cpu_s_per_mb']:.3f} "
                         f"vs {a['send_cpu_s_per_mb']:.3f} / {a['receive_cpu_s_per_mb']:.3f} s/MB",
                         f"{n['mb_s'] / a['mb_s']:.2f}x", ">= 25 MB/s"))  # fmt: skip
            st = res.get("stock aiortc -> stock aiortc", {})
            if "mb_s" in st:
                rows.append(("data channel, two processes: aiortc with the SCTP patch vs stock aiortc",
                             f"{a['mb_s']:.1f} vs {st['mb_s']:.1f} MB/s; CPU {a['send_cpu_s_per_mb']:.3f} / {a['receive_cpu_s_per_mb']:.3f} "
                             f"vs {st['send_cpu_s_per_mb']:.3f} / {st['receive_cpu_s_per_mb']:.3f} s/MB",
                             f"{a['mb_s'] / st['mb_s']:.2f}x", "(no loss on loopback)"))  # fmt: skip
            mixed = [(k, v) for k, v in res.items() if k.count("native") == 1 and "mb_s" in v]
            if mixed:
                rows.append(("data channel, two processes: the two stacks on one wire",
                             "; ".join(f"{k} {v['mb_s']:.1f} MB/s" for k, v in mixed), "", "(interop)"))
        elif "mb_s" in a:
            rows.append(("data channel, two processes (uvloop), aiortc, CPU s/MB send / receive",
                         f"{a['mb_s']:.1f} MB/s; CPU {a['send_cpu_s_per_mb']:.3f} / {a['receive_cpu_s_per_mb']:.3f} s/MB; "
                         "no native stack here", "", ">= 25 MB/s"))  # fmt: skip
    if e := _load("exchange_time"):
        res = e["results"]
        a, st = res.get("aiortc", {}), res.get("stock aiortc", {})
        if "median_ms" in a:
            stock = (f" vs {st['median_ms']:.1f} ms stock (p90 {st['p90_ms']:.1f}; CPU {st['initiator_cpu_ms']:.1f} / "
                     f"{st['responder_cpu_ms']:.1f} ms)" if "median_ms" in st else "")  # fmt: skip
            rows.append(("one gossip exchange of the default model, two processes (uvloop): aiortc with the SCTP patch "
                         "vs stock, median; CPU per exchange initiator / responder",
                         f"{a['median_ms']:.1f} ms (p90 {a['p90_ms']:.1f}; CPU {a['initiator_cpu_ms']:.1f} / "
                         f"{a['responder_cpu_ms']:.1f} ms){stock}",
                         f"{a['median_ms'] / st['median_ms']:.2f}x" if "median_ms" in st else "", "<= 50 ms"))  # fmt: skip
    if s := _load("sync_rate"):
        r = s["ratio_vs_float32"]
        rows.append(("weight-sync rate int8 vs float32 (params/s)",
                     f"{s['params_per_second']['int8'] / 1e6:.2f}M vs {s['params_per_second']['float32'] / 1e6:.2f}M",
                     f"{r['int8']:.2f}x (float16 {r['float16']:.2f}x)", ">= 3.5x"))  # fmt: skip
    if g := _load("signaling_load"):
        rows.append((f"signaling: {g['peers']} websocket peers / {g['swarms']} swarms, p99 join / relay",
                     f"{g['join_to_welcome_ms']['p99']:.1f} / {g['relay_ms']['p99']:.1f} ms, RSS {g['server_rss_mb']['loaded']:.0f} MB",
                     "", "< 50 ms"))  # fmt: skip
    if a := _load("time_to_accuracy"):
        v, r = a["variants"], a["ratios"]
        secs = ", ".join(f"{k} {_fmt(x['seconds_to_target'], '.1f')} s" for k, x in v.items())
        rows += [(f"time to {a['target']} test accuracy, {a['peers']} peers over WebRTC", secs,
                  f"gossip/central {_fmt(r['gossip / central (time to target)'])}x", "<= 1.25x"),
                 ("int8 vs float32 gossip", f"time {_fmt(r['int8 / float32 gossip (time to target)'])}x, "
                  f"final acc {_fmt(r['int8 - float32 final accuracy (points)'], '+.2f')} points, bytes {_fmt(r['int8 / float32 bytes'])}x",
                  "", "time <= 1.05x, acc within 0.5")]  # fmt: skip
    if m := _load("mesh_scale"):
        rows.append((f"real mesh of {m['peers']} Python peers to {m['target']}",
                     f"{'reached' if m['reached'] else 'NOT reached'} in {_fmt(m['seconds_to_target_after_start'], '.0f')} s; "
                     f"peak RSS max {m['peak_rss_mb']['max']:.0f} MB; PSS mean {m.get('pss_mb', {}).get('mean', float('nan')):.0f} MB, "
                     f"private mean {m.get('private_mb', {}).get('mean', float('nan')):.0f} MB", "", "< 600 MB"))  # fmt: skip
    if b := _load("browser"):
        steps = ", ".join(f"{k} {v['msPerStep']:.1f}" for k, v in b["browser"].items() if "msPerStep" in v)
        rows.append(("browser step time (best backend) vs Python peer, default MLP",
                     f"Python {b['python_ms_per_step']:.1f} ms; browser {steps} ms", f"{b['best_backend']} {b['best_over_python']:.2f}x", "<= 2x"))
        t, c = b["transfer_mb_s"], b["channel_over_websocket"]
        rows.append(("raw data channel browser<->Python vs websocket, same bytes",
                     f"browser->Python {t['channel_browser_to_python']:.1f} vs {t['websocket_browser_to_python']:.0f} MB/s; "
                     f"Python->browser {t['channel_python_to_browser']:.1f} vs {t['websocket_python_to_browser']:.0f} MB/s",
                     f"{c['browser_to_python']:.3f}x / {c['python_to_browser']:.3f}x", "(reference)"))  # fmt: skip
    machine = next((d["machine"] for n in SUITE if (d := _load(n)) and "machine" in d), {})
    lines = ["| measurement | figures | ratio | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", f"Machine: {machine.get('platform', '?')}, {machine.get('cpu_count', machine.get('cpus', '?'))} CPUs, "
              f"Python {machine.get('python', '?')}. Ratios are measured side by side in one run."]  # fmt: skip
    return "\n".join(lines) + "\n"


def commit_of_checkout() -> str:
    """HEAD, with ``-dirty`` when tracked files differ from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
                           cwd=ROOT, capture_output=True, text=True).stdout  # earlier benchmarks' own outputs do not count
    return head + ("-dirty" if dirty.strip() else "")


def _stamp(name: str, commit: str) -> None:
    """Record the commit and the command in ``<name>.json`` (the benchmark wrote its config and machine)."""
    path = RESULTS / f"{name}.json"
    data = json.loads(path.read_text())
    data.setdefault("commit", commit)
    data.setdefault("command", " ".join(["python", *SUITE[name]]) + " (via benchmarks.run_all)")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # atomic: a killed run leaves the old file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SUITE), action="append")
    parser.add_argument("--summarize", action="store_true")
    args = parser.parse_args()
    if not args.summarize:
        for name in args.only or SUITE:
            module = ROOT / "benchmarks" / f"{SUITE[name][-1].split('.')[-1]}.py"
            if not module.is_file():
                print(f"skipping {name}: {module.name} is not here")
                continue
            print(f"== {name}", flush=True)
            commit = commit_of_checkout()  # what the benchmark ran, recorded in its results file
            subprocess.run([sys.executable, *SUITE[name]], cwd=ROOT, check=True)
            _stamp(name, commit)
    text = summary()
    (RESULTS / "SUMMARY.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
