"""Cross-language vectors of the averaging rules (``peer/averaging.py`` = ``browser_peer/src/averaging.js``).

    python -m peer.averaging_vectors

rewrites ``protocols/vectors/averaging.json``: inputs and the exact float32 results of the
plain pair average (``pair_average``), its bounded form (``bounded_pair_average``) and
self-centered clipping (``ClippedPairAverage``, as sequences of exchanges on one instance, so
the adaptive radius and its history are pinned too). Both languages must reproduce every bit
(docs/PROTOCOL.md, "Averaging arithmetic"). ``tests/test_averaging_vectors.py`` fails when the
committed file differs from this module's output. The generator lives beside the rules it
pins, not in ``protocols/`` (which peers depend on, never the reverse).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from protocols.make_vectors import VECTORS_DIR, render

from .averaging import ClippedPairAverage, bounded_pair_average, pair_average

PATH = VECTORS_DIR / "averaging.json"
SHAPES = [(3, 2), (4,)]


def _tensors(a: list[np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for t in a:
        t = np.asarray(t, np.float32)
        if not np.all(np.isfinite(t)):
            raise ValueError("vectors stay finite: JSON has no NaN or Infinity")
        out.append({"shape": list(t.shape), "values": [float(v) for v in t.ravel()]})
    return out


def _model(rng: np.random.Generator, scale: float = 1.0, shapes: list[tuple[int, ...]] = SHAPES) -> list[np.ndarray]:
    return [(rng.standard_normal(s) * scale).astype(np.float32) for s in shapes]


def _hard_pair() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Values where a different order of operations or an early rounding changes bits."""
    mine = np.array([-0.0, -0.0, 0.0, 1.0, 3e38, -3e38, 1e-45, 16777216.0, 0.1, 1 / 3], np.float32)
    theirs = np.array([-0.0, 0.0, -0.0, 1.0000001, 3.4e38, 3e38, -1e-45, 16777217.0, 0.2, 2 / 3], np.float32)
    return [mine], [theirs]


def _pair_cases() -> list[dict[str, Any]]:
    rng = np.random.default_rng(12)
    big = [(160,)]  # long enough that numpy's pairwise sum would round differently from a sequential one
    cases: list[tuple[str, list[np.ndarray], float, list[np.ndarray], float]] = [
        ("equal_weights", _model(rng), 1.0, _model(rng), 1.0),
        ("weights_3_to_1", _model(rng), 3.0, _model(rng), 1.0),
        ("shard_sizes", _model(rng, 10.0), 6000.0, _model(rng, 10.0), 5923.0),
        ("fractional_weights", _model(rng), 0.1, _model(rng), 0.7),
        ("one_weight_zero", _model(rng), 0.0, _model(rng), 5.0),
        ("large_model", _model(rng, 1.0, big), 7.0, _model(rng, 1.0, big), 3.0),
        ("signed_zeros_and_extremes", *_hard_pair()[:1], 2.0, *_hard_pair()[1:], 1.0),
        ("scalar_and_empty", [np.float32(1.5).reshape(()), np.zeros((0,), np.float32)], 1.0,
         [np.float32(-2.25).reshape(()), np.zeros((0,), np.float32)], 3.0),
    ]  # fmt: skip
    out = []
    for name, mine, n_m, theirs, n_t in cases:
        merged, weight = pair_average(mine, n_m, theirs, n_t)
        bounded, bounded_weight = bounded_pair_average(mine, n_m, theirs, n_t * 10)
        out.append({
            "name": name, "mine": _tensors(mine), "my_weight": n_m, "theirs": _tensors(theirs), "their_weight": n_t,
            "merged": _tensors(merged), "weight": weight,
            # the same partner claiming 10x its weight: counted as at most 4x ours
            "bounded": {"their_weight": n_t * 10, "merged": _tensors(bounded), "weight": bounded_weight},
        })  # fmt: skip
    return out


def _pair_errors() -> list[dict[str, Any]]:
    rng = np.random.default_rng(13)
    return [
        {"name": "weights_sum_to_zero", "mine": _tensors(_model(rng)), "my_weight": 0.0,
         "theirs": _tensors(_model(rng)), "their_weight": 0.0},
        {"name": "different_layouts", "mine": _tensors(_model(rng)), "my_weight": 1.0,
         "theirs": _tensors(_model(rng)[:1]), "their_weight": 1.0},
        {"name": "different_tensor_size", "mine": _tensors(_model(rng)), "my_weight": 1.0,
         "theirs": _tensors(_model(rng, 1.0, [(3, 2), (5,)])), "their_weight": 1.0},
    ]  # fmt: skip


def _clipped_sequence(name: str, config: dict[str, Any], steps: list[tuple[list[np.ndarray], float, list[np.ndarray], float]]) -> dict[str, Any]:
    rule = ClippedPairAverage(**config)
    out = []
    for mine, n_m, theirs, n_t in steps:
        tau = rule.tau(mine)
        merged, weight = rule(mine, n_m, theirs, n_t)
        out.append({
            "mine": _tensors(mine), "my_weight": n_m, "theirs": _tensors(theirs), "their_weight": n_t,
            "tau": tau, "merged": _tensors(merged), "weight": weight, "last_ratio": rule.last_ratio,
            "clipped": rule.clipped, "distances": list(rule.distances),
        })  # fmt: skip
    return {"name": name, "config": config, "steps": out}


def _clipped_cases() -> list[dict[str, Any]]:
    rng = np.random.default_rng(14)
    base = _model(rng)

    def near(scale: float) -> list[np.ndarray]:
        return [(b + rng.standard_normal(b.shape) * scale).astype(np.float32) for b in base]

    honest = [(near(0.01), float(rng.integers(50, 200)), near(0.01), float(rng.integers(50, 200))) for _ in range(7)]
    poisoned = [b * np.float32(1e6) for b in base]
    attack = [
        (near(0.01), 100.0, near(0.01), 100.0),
        (near(0.01), 100.0, near(0.01), 120.0),
        (near(0.01), 100.0, poisoned, 1e9),  # clipped: moves us by at most tau / 2
        (near(0.01), 100.0, near(0.01), 80.0),
        (near(0.01), 100.0, [b.copy() for b in base], 100.0),
    ]
    same = [b.copy() for b in base]
    edge = [
        (same, 10.0, [b.copy() for b in same], 10.0),  # distance 0: nothing moves, scale 1
        (near(0.001), 0.0, near(0.001), 0.0),  # both weights 0: share 1/2
        (near(0.5), 1.0, near(0.5), 3.0),  # first history entry, then a large step
    ]
    big_rng = np.random.default_rng(15)
    big_base = big_rng.standard_normal(160).astype(np.float32)
    big = [  # unclipped (the first history entry), unclipped (an even median), clipped
        ([big_base], 5.0, [(big_base + big_rng.standard_normal(160) * 0.03).astype(np.float32)], 5.0),
        ([big_base], 5.0, [(big_base + big_rng.standard_normal(160) * 0.04).astype(np.float32)], 7.0),
        ([big_base], 5.0, [(big_base + big_rng.standard_normal(160) * 3.0).astype(np.float32)], 5.0),
    ]
    return [
        _clipped_sequence("honest_neighbors_history_3", {"multiplier": 2.0, "history": 3, "floor": 1e-3, "initial": 0.05}, honest),
        _clipped_sequence("one_poisoned_model", {"multiplier": 2.0, "history": 32, "floor": 1e-3, "initial": 0.05}, attack),
        _clipped_sequence("zero_distance_zero_weights", {"multiplier": 1.5, "history": 4, "floor": 1e-4, "initial": 0.5}, edge),
        _clipped_sequence("large_model", {"multiplier": 2.0, "history": 32, "floor": 1e-3, "initial": 0.05}, big),
    ]  # fmt: skip


def averaging_vectors() -> dict[str, Any]:
    return {
        "description": "averaging rules: every merged value is float32 of a float64 expression evaluated one IEEE "
        "operation at a time (docs/PROTOCOL.md, Averaging arithmetic); weights, tau, distances and ratios are float64",
        "pair": _pair_cases(),
        "pair_errors": _pair_errors(),
        "clipped": _clipped_cases(),
    }


def main() -> None:
    PATH.write_text(render(averaging_vectors()), encoding="utf-8", newline="\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
