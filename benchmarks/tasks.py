"""Tasks beyond classification, trained by real Python peers: a binary and a regression swarm.

    .venv/bin/python -m benchmarks.tasks            # about 4 minutes on 2 cores
    .venv/bin/python -m benchmarks.tasks --no-browser   # Python peers only

For each task it writes the data file a publisher would have (a CSV with text labels "no"/"yes",
a CSV of fractional targets), publishes it with ``build_publication`` (loss, metric and output
layer inferred or given as on the command line), runs 2 ``swarm join`` peers over WebRTC on
127.0.0.1 and a browser peer (a headless Chromium tab on the join link, its own shard) for a
fixed number of local steps, then scores each Python peer's final checkpoint and the tab's
weights on the swarm's test shard with the same code: accuracy (binary) or MAE (regression).
Results, with the command, config, commit and machine, go to ``benchmarks/results/tasks.json``;
tests/test_tasks.py runs the same code with fewer steps and asserts the quality the docs state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "tasks.json"


@dataclass(frozen=True)
class Task:
    name: str
    loss: str | None  # None: inferred by publish
    hidden: str
    label_column: str
    learning_rate: float = 0.01
    examples: int = 1200


BINARY = Task("binary", "binary_crossentropy", "16:relu", "label")
REGRESSION = Task("regression", None, "32:relu", "price")


def write_data(task: Task, path: Path, seed: int = 0) -> Path:
    """The publisher's CSV: 8 features; 'yes'/'no' by a linear rule, or a smooth fractional target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(task.examples, 8))
    w = np.array([1.0, -2.0, 0.5, 0.0, 1.5, -0.5, 0.25, 1.0])
    if task.name == "binary":
        labels = np.where(x @ w > 0, "yes", "no")
    else:
        labels = np.char.mod("%.4f", x @ w + 0.5 * np.sin(2 * x[:, 0]) + rng.normal(0, 0.05, len(x)))
    header = ",".join(f"f{i}" for i in range(8)) + f",{task.label_column}\n"
    rows = "".join(",".join(f"{v:.4f}" for v in row) + f",{lab}\n" for row, lab in zip(x, labels, strict=True))
    path.write_text(header + rows)
    return path


def publish(task: Task, data: Path, steps: int, shards: int = 2, degree: int = 1) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from apps.publish import DataOptions, build_publication, parse_hidden
    from protocols.manifest import GossipConfig, TrainingConfig

    knobs: dict[str, Any] = {"learning_rate": task.learning_rate, "local_steps": 25, "eval_every": max(25, steps // 4)}
    if task.loss is not None:
        knobs["loss"] = task.loss
    return build_publication(Ed25519PrivateKey.generate(), hidden=parse_hidden(task.hidden), name=f"task-{task.name}",
                             data=DataOptions(str(data), label_column=task.label_column, shards=shards), seed=1,
                             training=TrainingConfig(**knobs), gossip=GossipConfig(degree=degree))  # fmt: skip


def checkpoint_scores(pub: Any, checkpoint: Path) -> dict[str, float]:
    """The peer's final model (``model.h5``) on the swarm's test shard: the task's metrics."""
    import tf_keras

    from peer.trainer import score, targets_for
    from protocols.dataset import decode_shard

    m = pub.manifest
    x, y = decode_shard(pub.blobs[m.dataset.test.digest])
    model = tf_keras.models.load_model(checkpoint / "model.h5", compile=False)
    return _score(pub, model, x, y)


def _score(pub: Any, model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from peer.trainer import score, targets_for

    m = pub.manifest
    outputs = model(x, training=False).numpy()
    return score(m.training, outputs, targets_for(m.training, y, int(model.output_shape[-1])))


def weights_scores(pub: Any, weights: list[list[float]]) -> dict[str, float]:
    """A browser tab's weights (manifest order) in the manifest's model, scored as a checkpoint is."""
    from peer.trainer import build_model
    from protocols.dataset import decode_shard

    m = pub.manifest
    model = build_model(m, pub.blobs[m.model.initial_weights.digest])
    model.set_weights([np.asarray(w, np.float32).reshape(s.shape) for w, s in zip(weights, m.model.weights, strict=True)])
    x, y = decode_shard(pub.blobs[m.dataset.test.digest])
    return _score(pub, model, x, y)


async def open_tab(stack: AsyncExitStack, join_url: str) -> Any:
    """A headless Chromium tab on the join link (apps/chromium.py, as the browser tests), closed with ``stack``."""
    from apps.chromium import chromium

    browser = await stack.enter_async_context(chromium())
    page = await (await browser.new_context()).new_page()
    await page.goto(join_url)
    await page.wait_for_function("window.swarmPeer && ['training', 'error'].includes(window.swarmPeer.status)", timeout=120_000)
    return page


TAB_STATE = "() => ({step: window.swarmPeer.trainer.step, status: window.swarmPeer.status, error: window.swarmPeer.error || null})"
TAB_WEIGHTS = "() => window.swarmPeer.trainer.getWeights().map((w) => Array.from(w))"
# the tab has no --max-steps: pause it (it still answers exchanges) once it has trained `steps`
PAUSE_AT = """(steps) => { const p = window.swarmPeer; const t = setInterval(() => {
    if (p.trainer.step >= steps) { p.pause(); clearInterval(t); } }, 2); }"""


async def run_task(task: Task, workdir: Path, steps: int, browser: bool = False) -> dict[str, Any]:
    """Publish ``task``, train 2 Python peers (and with ``browser`` a Chromium tab) for ``steps``
    local steps each, and score every peer on the test shard."""
    from apps.procs import spawn_peer, start_server
    from apps.publish import upload

    shutil.rmtree(workdir, ignore_errors=True)  # a stale run's rows and checkpoints would end this one at once
    workdir.mkdir(parents=True)
    pub = publish(task, write_data(task, workdir / f"{task.name}.csv"), steps, shards=3 if browser else 2, degree=2 if browser else 1)
    runner, base = await start_server(workdir / "server")
    started = time.monotonic()
    tab: dict[str, Any] | None = None
    try:
        reply = await upload(base, pub)
        peers = [spawn_peer(reply["join_url"], workdir, f"{task.name}-{i}", "--max-steps", str(steps), "--seed", str(i))
                 for i in range(2)]  # fmt: skip
        try:
            async with AsyncExitStack() as stack:
                while browser and not all(p.latest is not None for p in peers):  # the tab joins once they train:
                    for p in peers:  # TensorFlow's start-up would otherwise leave it training alone
                        assert p.proc.poll() is None, p.log.read_text()[-3000:]
                    await asyncio.sleep(0.5)
                page = await open_tab(stack, reply["join_url"]) if browser else None
                if page is not None:
                    await page.evaluate(PAUSE_AT, steps)
                deadline = time.monotonic() + 120 + steps * 0.5
                while True:
                    state = await page.evaluate(TAB_STATE) if page is not None else None
                    if all((r := p.latest) is not None and r["step"] >= steps for p in peers) and (state is None or state["step"] >= steps):
                        break
                    for p in peers:
                        assert p.proc.poll() is None, p.log.read_text()[-3000:]
                    assert state is None or state["status"] != "error", state
                    assert time.monotonic() < deadline, ([p.rows[-1:] for p in peers], state)
                    await asyncio.sleep(0.5)
                await asyncio.sleep(3.0)  # a last exchange after the last step
                if page is not None:
                    claim = await page.evaluate("() => window.swarmPeer.evaluate(null)")
                    snap = await page.evaluate("() => { const p = window.swarmPeer; return {step: p.trainer.step, "
                                               "exchanges: p.snapshot().exchanges, shard: p.shard, backend: p.backend}; }")  # fmt: skip
                    weights = await page.evaluate(TAB_WEIGHTS)
                    tab = {"name": "browser", **snap, "claimed": claim["metrics"],
                           "weights": await asyncio.to_thread(weights_scores, pub, weights)}  # fmt: skip
        finally:
            for p in peers:
                p.terminate()
            codes = [await p.wait(60) for p in peers]
        assert codes == [0, 0], [p.log.read_text()[-3000:] for p in peers]
    finally:
        await runner.cleanup()
    m = pub.manifest
    result = {
        "task": task.name, "loss": m.training.loss, "metrics": m.training.metrics, "steps_per_peer": steps,
        "wall_s": round(time.monotonic() - started, 1), "notices": pub.notices, "config": asdict(task),
        "test_examples": m.dataset.test.num_samples,
        "peers": [{"name": p.name, "final_row": {k: p.rows[-1].get(k) for k in ("step", "test_loss", "test_acc", "exchanges", "metrics")},
                   "checkpoint": await asyncio.to_thread(checkpoint_scores, pub, workdir / f"{p.name}-checkpoint")}
                  for p in peers],
    }  # fmt: skip
    if tab is not None:
        result["browser"] = tab
    if task.name == "regression":
        y = np.concatenate([_targets(pub, r) for r in m.dataset.train_shards])
        result["baseline_mae_predicting_the_mean"] = float(np.mean(np.abs(y - y.mean())))
    return result


def _targets(pub: Any, ref: Any) -> np.ndarray:
    from protocols.dataset import decode_shard

    return decode_shard(pub.blobs[ref.digest])[1]


def machine() -> dict[str, Any]:
    import os

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(), "commit": commit}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="local steps each peer trains")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gossip-swarm-tasks"), help="scratch directory; its task subdirectories are emptied first")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-browser", action="store_true", help="Python peers only (no Chromium tab)")
    args = parser.parse_args(argv)
    from apps.quiet import import_tensorflow

    import_tensorflow()
    ran = machine()  # the commit that runs, before anyone commits on top
    results = [asyncio.run(run_task(t, args.workdir / t.name, args.steps, browser=not args.no_browser)) for t in (BINARY, REGRESSION)]
    report = {"command": " ".join([".venv/bin/python -m benchmarks.tasks", *(argv if argv is not None else sys.argv[1:])]),
              "machine": ran, "results": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(r["task"], r["loss"], [p["checkpoint"] for p in r["peers"]], "browser:", r.get("browser", {}).get("weights"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
