"""Byzantine peers on the simulator: 8 peers, 2 signed attackers, with and without clipping.

The same ``ClippedPairAverage`` the live peers use when a swarm sets ``gossip.robust = "clip"``.
"""

from __future__ import annotations

import numpy as np
import pytest

from peer.averaging import ClippedPairAverage, pair_average
from research.config import ExperimentConfig

BASE = {"seeds": [0], "data": {"eval_examples": 1000}, "swarm": {"peers": 8, "degree": 3, "local_steps": 10},
        "budget": {"rounds": 40, "eval_every": 40}}  # fmt: skip


def _honest_accuracy(kind: str, robust: str) -> float:
    from research import sim

    raw = {**BASE, "swarm": {**BASE["swarm"], "robust": robust}, "attack": {"kind": kind, "peers": 2}}
    config = ExperimentConfig.model_validate(raw)
    return float(sim.run(config, "gossip", 0).rows[-1]["honest_mean_acc"])


@pytest.fixture(scope="module")
def attack_free() -> float:
    return _honest_accuracy("none", "none")


@pytest.mark.parametrize("kind", ["gaussian", "sign_flip", "scale"])
def test_clipping_keeps_honest_peers_within_two_points_of_the_attack_free_run(kind: str, attack_free: float) -> None:
    assert _honest_accuracy(kind, "clip") >= attack_free - 0.02


def test_without_clipping_noise_attackers_wreck_the_honest_peers(attack_free: float) -> None:
    assert _honest_accuracy("gaussian", "none") < attack_free - 0.10


def test_clipping_averages_honest_neighbors_like_plain_gossip_and_bounds_outliers() -> None:
    rng = np.random.default_rng(0)
    mine = [rng.normal(size=(20, 5)).astype(np.float32)]
    near = [mine[0] + 0.01 * rng.normal(size=(20, 5)).astype(np.float32)]
    clipped = ClippedPairAverage()
    for _ in range(5):  # build a history of typical distances
        merged, _ = clipped(mine, 10.0, near, 10.0)
    np.testing.assert_allclose(merged[0], pair_average(mine, 10.0, near, 10.0)[0][0], atol=1e-6)
    poison = [mine[0] + 1000.0]
    moved, weight = clipped(mine, 10.0, poison, 1e9)  # a huge claimed weight buys nothing either
    step = float(np.linalg.norm(moved[0] - mine[0]))
    assert step <= 0.5 * clipped.tau(mine) + 1e-5 and clipped.clipped == 1
    assert weight == 10.0
