"""What every experiment writes into its directory: CSVs, summary.json, PNG figures, report.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .config import ExperimentConfig  # noqa: E402
from .sim import RunResult  # noqa: E402

COLORS = {"gossip": "tab:blue", "central": "tab:orange", "local": "tab:gray", "pooled": "tab:green"}


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def summarize(config: ExperimentConfig, results: list[RunResult], seconds: float) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for r in results:
        final = r.rows[-1]
        entry = methods.setdefault(r.method, {"runs": []})
        entry["runs"].append({"seed": r.seed, "final_mean_acc": final["mean_acc"], "final_min_acc": final["min_acc"],
                              "time_s": final["time_s"], "bytes_sent": final["bytes_sent"], "rounds": final["round"],
                              "consensus_distance": final["consensus_distance"]})  # fmt: skip
    for entry in methods.values():
        runs = entry["runs"]
        entry["final_mean_acc"] = sum(x["final_mean_acc"] for x in runs) / len(runs)
        entry["bytes_sent"] = sum(x["bytes_sent"] for x in runs) / len(runs)
    return {"name": config.name, "config": json.loads(config.model_dump_json()), "wall_seconds": round(seconds, 2),
            "methods": methods}  # fmt: skip


def plot(results: list[RunResult], x: str, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        if x == "bytes_sent" and r.rows[-1]["bytes_sent"] == 0:  # local/pooled send nothing: a reference level
            ax.axhline(r.rows[-1]["mean_acc"], color=COLORS[r.method], linestyle="--", alpha=0.8,
                       label=f"{r.method} (final, no bytes)" if r.seed == results[0].seed else None)  # fmt: skip
            continue
        xs = [row[x] / (1e6 if x == "bytes_sent" else 1) for row in r.rows]
        label = r.method if r.seed == results[0].seed else None
        ax.plot(xs, [row["mean_acc"] for row in r.rows], color=COLORS[r.method], label=label)
        if r.method in ("gossip", "central", "local"):
            ax.plot(xs, [row["min_acc"] for row in r.rows], color=COLORS[r.method], linestyle=":", alpha=0.7)
    ax.set_xlabel({"time_s": "time (s)", "bytes_sent": "MB sent (all peers)"}[x])
    ax.set_ylabel("test accuracy (solid: mean, dotted: min over peers)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(out: Path, config: ExperimentConfig, results: list[RunResult], seconds: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.model_dump_json(indent=2))
    write_csv(out / "timeseries.csv", [row for r in results for row in r.rows])
    write_csv(out / "peer_accuracy.csv", [row for r in results for row in r.peer_rows])
    summary = summarize(config, results, seconds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    title = (f"{config.name}: {config.swarm.peers} peers, {config.data.partition}"
             f"{f' alpha={config.data.alpha}' if config.data.partition == 'dirichlet' else ''}, {config.backend}")  # fmt: skip
    plot(results, "time_s", out / "accuracy_vs_time.png", title)
    plot(results, "bytes_sent", out / "accuracy_vs_bytes.png", title)
    lines = [f"# {config.name}", "", f"Backend `{config.backend}`, {config.swarm.peers} peers, topology "
             f"`{config.swarm.topology}` (degree {config.swarm.degree}), partition `{config.data.partition}`, "
             f"{config.swarm.local_steps} local steps per round, codec `{config.swarm.codec}`, seeds {config.seeds}.", "",
             "| method | final mean acc | MB sent | time (s) |", "|---|---|---|---|"]  # fmt: skip
    for method, entry in summary["methods"].items():
        run = entry["runs"][0]
        lines.append(f"| {method} | {entry['final_mean_acc']:.4f} | {entry['bytes_sent'] / 1e6:.1f} | {run['time_s']:.1f} |")
    lines += ["", "![accuracy vs time](accuracy_vs_time.png)", "", "![accuracy vs bytes](accuracy_vs_bytes.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    return summary
