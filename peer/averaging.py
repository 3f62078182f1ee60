"""Averaging rules: pure numpy functions shared by the live mesh and the simulator.

Pairwise gossip keeps ``sum_i n_i * w_i`` invariant: both peers take the weighted mean of
their weights and half of the combined gossip weight ``n``. Repeated random pairings over a
connected graph therefore converge to the exact global weighted mean (push-pull gossip).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Weights = list[np.ndarray]


def weighted_average(models: Sequence[tuple[Sequence[np.ndarray], float]]) -> Weights:
    """Sample-weighted mean of several models (FedAvg's aggregation)."""
    total = float(sum(n for _, n in models))
    if total <= 0:
        raise ValueError("weights of the models to average must sum to a positive number")
    first = models[0][0]
    return [
        sum((np.asarray(m[i], dtype=np.float64) * (n / total) for m, n in models), np.zeros(first[i].shape))
        .astype(np.float32)
        for i in range(len(first))
    ]


def pair_average(
    mine: Sequence[np.ndarray], my_weight: float, theirs: Sequence[np.ndarray], their_weight: float
) -> tuple[Weights, float]:
    """Push-pull step: (weighted mean of both models, new gossip weight for each side)."""
    if len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs, strict=True)):
        raise ValueError("models to average have different tensor layouts")
    merged = weighted_average([(mine, my_weight), (theirs, their_weight)])
    return merged, (my_weight + their_weight) / 2.0


def consensus_distance(models: Sequence[Sequence[np.ndarray]]) -> float:
    """Mean L2 distance of the models' flattened weights to their plain average."""
    flat = np.stack([np.concatenate([np.ravel(t) for t in m]) for m in models]).astype(np.float64)
    return float(np.mean(np.linalg.norm(flat - flat.mean(axis=0), axis=1)))
