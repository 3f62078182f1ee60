"""Research harness: consensus math, FedAvg = pooled for one peer, determinism, skewed partitions, outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from apps.datasets import partition
from research import topology
from research.config import ExperimentConfig, load
from research.data import label_skew
from research.experiment import run_experiment


def _config(**sections: dict) -> ExperimentConfig:
    base: dict = {"name": "t", "seeds": [0], "data": {"eval_examples": 200},
                  "swarm": {"peers": 8, "local_steps": 2, "degree": 3}, "budget": {"rounds": 6, "eval_every": 2}}  # fmt: skip
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return ExperimentConfig.model_validate(base)


def _weighted_mean(stacked: list[np.ndarray], counts: np.ndarray) -> list[np.ndarray]:
    w = counts / counts.sum()
    return [np.tensordot(w, s.astype(np.float64), axes=1) for s in stacked]


@pytest.mark.parametrize("kind", ["ring", "random_regular", "small_world", "full"])
def test_gossip_with_zero_learning_rate_converges_to_the_exact_initial_mean(kind: str) -> None:
    from research import sim

    # compute well above the exchange time, so most requests find a free partner (the live protocol declines
    # requests to a peer that is itself exchanging); shard sizes within bounded_weight's ratio, so averaging is exact
    cfg = _config(model={"learning_rate": 0.0, "init_per_peer": True}, data={"partition": "dirichlet", "alpha": 5.0},
                  swarm={"topology": kind, "peers": 8, "local_steps": 20, "degree": 3}, network={"step_time_ms": 50.0},
                  budget={"rounds": 100, "eval_every": 100})  # fmt: skip
    result = sim.run(cfg, "gossip", 0)
    assert result.rows[0]["consensus_distance"] > 1.0
    assert result.rows[-1]["consensus_distance"] < 1e-3 * result.rows[0]["consensus_distance"]
    target = _weighted_mean(result.initial_weights, result.sample_counts)  # type: ignore[arg-type]
    for final, want in zip(result.final_weights, target, strict=True):  # type: ignore[arg-type]
        np.testing.assert_allclose(final, np.broadcast_to(want, final.shape), atol=2e-4)


def test_fedavg_with_zero_learning_rate_reaches_the_mean_in_one_round() -> None:
    from research import sim

    cfg = _config(model={"learning_rate": 0.0, "init_per_peer": True}, data={"partition": "dirichlet", "alpha": 0.5},
                  budget={"rounds": 1, "eval_every": 1})  # fmt: skip
    result = sim.run(cfg, "central", 0)
    assert result.rows[-1]["round"] == 1 and result.rows[-1]["consensus_distance"] < 1e-6
    assert result.stats["exchanges"]["merged"] == 8  # one round: every client merged once
    target = _weighted_mean(result.initial_weights, result.sample_counts)  # type: ignore[arg-type]
    for final, want in zip(result.final_weights, target, strict=True):  # type: ignore[arg-type]
        np.testing.assert_allclose(final, np.broadcast_to(want, final.shape), atol=1e-6)


def test_fedavg_with_one_peer_equals_pooled_training_step_for_step() -> None:
    from research import sim

    cfg = _config(swarm={"peers": 1, "local_steps": 5}, budget={"rounds": 6, "eval_every": 1})
    central, pooled = sim.run(cfg, "central", 3), sim.run(cfg, "pooled", 3)
    assert central.rows[-1]["mean_acc"] == pooled.rows[-1]["mean_acc"] > central.rows[0]["mean_acc"]
    for a, b in zip(central.final_weights, pooled.final_weights, strict=True):  # type: ignore[arg-type]
        np.testing.assert_array_equal(a, b)


def test_same_config_and_seed_give_identical_csvs(tmp_path: Path) -> None:
    cfg = _config(methods=["gossip", "central"], data={"partition": "dirichlet", "alpha": 0.3})
    run_experiment(cfg, tmp_path / "a", show_progress=False)
    run_experiment(cfg, tmp_path / "b", show_progress=False)
    for name in ("timeseries.csv", "peer_accuracy.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = _config(methods=["gossip", "central"], data={"partition": "dirichlet", "alpha": 0.3}, seeds=[1])
    run_experiment(other, tmp_path / "c", show_progress=False)
    assert (tmp_path / "c" / "timeseries.csv").read_bytes() != (tmp_path / "a" / "timeseries.csv").read_bytes()


def test_dirichlet_and_by_class_partitions_have_the_requested_skew() -> None:
    y = np.repeat(np.arange(10), 500)
    peak = lambda shards: label_skew(y, shards).max(axis=1).mean()  # noqa: E731
    skewed, mild = partition(y, 16, "dirichlet", 0, alpha=0.1), partition(y, 16, "dirichlet", 0, alpha=100.0)
    iid = partition(y, 16, "iid", 0)
    assert peak(skewed) > 0.6 > 0.2 > peak(mild) and peak(iid) < 0.2
    by_class = partition(y, 20, "by_class", 0, classes_per_shard=2)
    assert all(len(np.unique(y[s])) == 2 for s in by_class)
    for shards in (skewed, mild, iid, by_class):
        joined = np.concatenate(shards)
        assert len(joined) == len(np.unique(joined)) == len(y)  # every example exactly once


def test_topologies_are_connected_and_matchings_are_disjoint() -> None:
    rng = np.random.default_rng(0)
    for kind in ("ring", "random_regular", "small_world", "full"):
        graph = topology.build(kind, 33, 4, rng)
        assert topology.is_connected(graph)
        pairs = topology.random_matching(graph, np.ones(33, bool), rng)
        used = [p for pair in pairs for p in pair]
        assert len(used) == len(set(used)) and all(b in graph[a] for a, b in pairs)


def test_experiment_writes_every_output_and_overrides_apply(tmp_path: Path) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text('name = "x"\nmethods = ["gossip", "local"]\n[swarm]\npeers = 4\n[budget]\nrounds = 4\n')
    cfg = load(config_file, ["swarm.peers=6", "budget.eval_every=2", "data.eval_examples=100"])
    assert cfg.swarm.peers == 6
    summary = run_experiment(cfg, tmp_path / "out", show_progress=False)
    for name in ("timeseries.csv", "peer_accuracy.csv", "summary.json", "config.json", "report.md",
                 "accuracy_vs_time.png", "accuracy_vs_bytes.png"):  # fmt: skip
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    rows = list(csv.DictReader((tmp_path / "out" / "timeseries.csv").open()))
    assert {r["method"] for r in rows} == {"gossip", "local"} and set(summary["methods"]) == {"gossip", "local"}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["config"]["swarm"]["peers"] == 6
    with pytest.raises(ValueError, match="key=value"):
        load(None, ["swarm.peers"])


def test_a_small_webrtc_experiment_runs_end_to_end(tmp_path: Path) -> None:
    cfg = _config(backend="webrtc", methods=["gossip", "central"], swarm={"peers": 3, "local_steps": 20, "degree": 2},
                  budget={"rounds": 6, "eval_every": 2})  # fmt: skip
    summary = run_experiment(cfg, tmp_path, show_progress=False)
    for name in ("timeseries.csv", "summary.json", "accuracy_vs_time.png", "accuracy_vs_bytes.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    for method in ("gossip", "central"):
        run = summary["methods"][method]["runs"][0]
        assert run["bytes_sent"] > 0 and run["final_mean_acc"] > 0.5, (method, run)


def test_churn_takes_peers_offline_and_frozen(tmp_path: Path) -> None:
    from research import sim

    trace = tmp_path / "trace.csv"
    trace.write_text("round,peer,online\n1,0,0\n1,1,0\n")  # peers 0 and 1 leave at round 1 and stay away
    cfg = _config(churn={"trace": str(trace)}, budget={"rounds": 4, "eval_every": 1})
    result = sim.run(cfg, "gossip", 0)
    assert {r["online"] for r in result.rows} == {6}  # round 1 starts at time 0: away from the start
    for before, after in zip(result.initial_weights, result.final_weights, strict=True):  # type: ignore[arg-type]
        np.testing.assert_array_equal(before[:2], after[:2])  # offline: no training, no exchanges
        assert not np.array_equal(before[2:], after[2:])
    drawn = sim.run(_config(churn={"offline_fraction": 0.25, "period_rounds": 2}, budget={"rounds": 4, "eval_every": 1}),
                    "central", 0)  # fmt: skip
    assert {r["online"] for r in drawn.rows} == {6}
