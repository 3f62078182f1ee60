"""Label-skew remedies (peer/skew.py): pure partner choice, exact averaging with learning rate 0, and an accuracy gain."""

from __future__ import annotations

import random

import numpy as np
import pytest

from peer.skew import choose_partners, exponential_partner, fanout_partners
from research import sim
from research.config import ExperimentConfig


def _config(**sections: dict) -> ExperimentConfig:
    base: dict = {"name": "skew", "data": {"eval_examples": 500}, "swarm": {"peers": 8, "local_steps": 20, "degree": 3},
                  "network": {"step_time_ms": 20.0}, "budget": {"rounds": 20, "eval_every": 20}}  # fmt: skip
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return ExperimentConfig.model_validate(base)


def test_the_exponential_graph_cycles_through_powers_of_two() -> None:
    ids = [f"{i:02d}" for i in range(8)]
    assert [exponential_partner("03", ids, r) for r in range(4)] == ["04", "05", "07", "04"]
    rng = random.Random(0)
    picked = fanout_partners(ids, 3, rng)
    assert len(set(picked)) == 3 and set(picked) <= set(ids)
    assert choose_partners("03", ["01", "05"], ids, 0, rng, "exponential") in (["01"], ["05"])  # partner offline: fallback
    with pytest.raises(ValueError):
        fanout_partners(ids, 0, rng)


@pytest.mark.parametrize("remedy", [{"mixing": "exponential"}, {"fanout": 3}])
def test_remedies_conserve_and_converge_to_the_exact_mean_with_learning_rate_zero(remedy: dict) -> None:
    cfg = _config(model={"learning_rate": 0.0, "init_per_peer": True}, data={"partition": "dirichlet", "alpha": 5.0},
                  swarm=remedy, budget={"rounds": 40, "eval_every": 40})  # fmt: skip
    result = sim.run(cfg, "gossip", 0)
    n = result.sample_counts
    assert n is not None and n.max() / n.min() < 4 and result.stats["exchanges"]["timeout"] == 0
    target = [np.tensordot(n / n.sum(), w.astype(np.float64), axes=1) for w in result.initial_weights]  # type: ignore[union-attr]
    assert result.rows[-1]["consensus_distance"] < 1e-3 * result.rows[0]["consensus_distance"]
    for final, want in zip(result.final_weights, target, strict=True):  # type: ignore[arg-type]
        np.testing.assert_allclose(final, np.broadcast_to(want, final.shape), atol=2e-4)


def test_denser_mixing_beats_plain_gossip_under_dirichlet_label_skew() -> None:
    """Over three seeds: one seed alone can go either way since peers serve proposals while their
    own exchange is in flight."""
    skewed = {"partition": "dirichlet", "alpha": 0.1}

    def mean_of(swarm: dict) -> dict[str, float]:
        rows = [sim.run(_config(data=skewed, swarm=swarm), "gossip", seed).rows[-1] for seed in (0, 1, 2)]
        return {k: float(np.mean([r[k] for r in rows])) for k in ("mean_acc", "min_acc")}

    plain, dense = mean_of({}), mean_of({"fanout": 3})
    assert dense["mean_acc"] > plain["mean_acc"] + 0.02 and dense["min_acc"] > plain["min_acc"], (plain, dense)
