"""``swarm experiment CONFIG.toml``: run every method and seed on one backend, write the outputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.progress import Progress

from .config import ExperimentConfig
from .outputs import write_all
from .sim import RunResult


def run_experiment(config: ExperimentConfig, out: Path, show_progress: bool = True) -> dict[str, Any]:
    started = time.monotonic()
    results: list[RunResult] = []
    if config.backend in ("sim", "ray"):
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # same config + seed -> identical CSVs
        from . import sim

        factory = None
        if config.backend == "ray":
            from .ray_backend import RayBlocks

            factory = RayBlocks.factory(config)
        with Progress(disable=not show_progress) as bar:
            for seed in config.seeds:
                for method in config.methods:
                    task = bar.add_task(f"{method} seed {seed}", total=config.budget.rounds)
                    results.append(sim.run(config, method, seed, blocks_factory=factory,
                                           progress=lambda n, t=task: bar.advance(t, n)))  # fmt: skip
    else:
        from .webrtc import run_webrtc

        results = run_webrtc(config, out, show_progress)
    return write_all(out, config, results, time.monotonic() - started)
