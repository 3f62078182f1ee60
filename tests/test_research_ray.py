"""The ray backend: peer blocks on a local 2-worker Ray cluster give exactly the single-process simulator's results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research import sim
from research.config import ExperimentConfig
from research.experiment import run_experiment

ray = pytest.importorskip("ray")


def _config(backend: str) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "name": "ray", "backend": backend, "methods": ["gossip", "central"], "data": {"eval_examples": 200, "partition": "dirichlet", "alpha": 0.3},
        "swarm": {"peers": 8, "local_steps": 20, "degree": 3, "codec": "int8"}, "network": {"step_time_ms": 20.0},
        "budget": {"rounds": 4, "eval_every": 2}, "sim": {"blocks": 2, "ray_workers": 2},
    })  # fmt: skip


@pytest.fixture
def local_ray():  # type: ignore[no-untyped-def]
    from research import ray_backend

    ray_backend.start(None, 2)
    yield
    ray_backend.stop()


@pytest.mark.timeout(600)
def test_ray_blocks_equal_the_single_process_simulator(tmp_path: Path, local_ray: None) -> None:
    from research.ray_backend import RayBlocks

    cfg = _config("ray")
    factory = RayBlocks.factory(cfg)
    for method in ("gossip", "central"):
        on_ray = sim.run(cfg, method, 0, blocks_factory=factory)  # type: ignore[arg-type]
        local = sim.run(_config("sim"), method, 0)  # type: ignore[arg-type]
        assert on_ray.stats["block_calls"] == local.stats["block_calls"] > on_ray.stats["train_batches"]
        assert on_ray.rows == local.rows
        for a, b in zip(on_ray.final_weights, local.final_weights, strict=True):  # type: ignore[arg-type]
            np.testing.assert_array_equal(a, b)
    run_experiment(cfg, tmp_path / "ray", show_progress=False)
    run_experiment(_config("sim"), tmp_path / "sim", show_progress=False)
    assert (tmp_path / "ray" / "timeseries.csv").read_bytes() == (tmp_path / "sim" / "timeseries.csv").read_bytes()
