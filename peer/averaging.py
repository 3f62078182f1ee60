"""Averaging rules: pure numpy functions shared by the live mesh and the simulator.

Pairwise gossip keeps ``sum_i n_i * w_i`` invariant: both peers take the weighted mean of
their weights and half of the combined gossip weight ``n``. Repeated random pairings over a
connected graph therefore converge to the exact global weighted mean (push-pull gossip).

The arithmetic is exact to the bit and the same in JavaScript (``browser_peer/src/averaging.js``),
so two peers of either language that merge the same inputs hold the same float32 weights
(docs/PROTOCOL.md, "Averaging arithmetic"; vectors in ``protocols/vectors/averaging.json``):
every value is computed in float64, one IEEE operation at a time in the order written (no fused
multiply-add, no reassociation), and rounded to float32 once at the end; sums of squares are
accumulated sequentially in layout order (numpy's pairwise ``sum`` would round differently).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Weights = list[np.ndarray]


def weighted_average(models: Sequence[tuple[Sequence[np.ndarray], float]]) -> Weights:
    """Sample-weighted mean of several models (FedAvg's aggregation), float32 tensors of the first model's shapes.

    ``float32(x_1·c_1 + x_2·c_2 + ...)`` with ``c_k = n_k / Σn`` in float64, summed in model order
    from the first term (so two models give exactly ``pair_average``). Raises ValueError when the
    weights do not sum to a positive number.
    """
    total = float(sum(n for _, n in models))
    if not total > 0:
        raise ValueError("weights of the models to average must sum to a positive number")
    out: Weights = []
    for i in range(len(models[0][0])):
        acc = np.asarray(models[0][0][i], dtype=np.float64) * (models[0][1] / total)
        for m, n in models[1:]:
            acc = acc + np.asarray(m[i], dtype=np.float64) * (n / total)
        out.append(acc.astype(np.float32))
    return out


def pair_average(
    mine: Sequence[np.ndarray], my_weight: float, theirs: Sequence[np.ndarray], their_weight: float
) -> tuple[Weights, float]:
    """Push-pull step: (weighted mean of both models, new gossip weight for each side).

    Per value ``float32(m·a + t·b)`` with ``a = n_m / (n_m + n_t)``, ``b = n_t / (n_m + n_t)`` in
    float64; the new gossip weight is ``(n_m + n_t) / 2``. Raises ValueError for different tensor
    layouts or weights that do not sum to a positive number.
    """
    if len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs, strict=True)):
        raise ValueError("models to average have different tensor layouts")
    merged = weighted_average([(mine, my_weight), (theirs, their_weight)])
    return merged, (my_weight + their_weight) / 2.0


MAX_WEIGHT_RATIO = 4.0


def bounded_weight(their_weight: float, my_weight: float, ratio: float = MAX_WEIGHT_RATIO) -> float:
    """The partner's claimed gossip weight, counted as at most ``ratio`` x our own.

    A frame's ``sample_weight`` is the sender's claim; unbounded, one claim of 1e9 buys the
    whole average and inflates the receiver's weight for good. Honest weights start at shard
    sizes and only move towards their mean, so within ``ratio`` they are averaged exactly
    (``sum n_i w_i`` is conserved); beyond it the claim is cut, as ClippedGossip (He,
    Karimireddy and Jaggi, 2022) fixes mixing weights at the receiver instead of trusting
    the sender. Raises ValueError for a non-finite or negative claim.
    """
    if not (np.isfinite(their_weight) and their_weight >= 0):
        raise ValueError(f"gossip weight {their_weight!r} is not a finite non-negative number")
    if my_weight <= 0:
        return their_weight
    return min(their_weight, ratio * my_weight)


def bounded_pair_average(
    mine: Sequence[np.ndarray], my_weight: float, theirs: Sequence[np.ndarray], their_weight: float
) -> tuple[Weights, float]:
    """``pair_average`` with the partner's weight bounded by ``bounded_weight`` (live peers' plain rule)."""
    return pair_average(mine, my_weight, theirs, bounded_weight(their_weight, my_weight))


def consensus_distance(models: Sequence[Sequence[np.ndarray]]) -> float:
    """Mean L2 distance of the models' flattened weights to their plain average."""
    flat = np.stack([np.concatenate([np.ravel(t) for t in m]) for m in models]).astype(np.float64)
    return float(np.mean(np.linalg.norm(flat - flat.mean(axis=0), axis=1)))


def squared_norm(tensors: Sequence[np.ndarray]) -> float:
    """``Σ x²`` over every value of ``tensors`` in layout order, accumulated one value at a time in float64.

    Sequential (``np.add.accumulate``), not numpy's pairwise ``sum``: JavaScript adds in the same
    order and gets the same bits.
    """
    acc = 0.0
    for t in tensors:
        flat = np.ravel(np.asarray(t, dtype=np.float64))
        if flat.size:
            acc = float(np.add.accumulate(np.concatenate(([acc], flat * flat)))[-1])
    return acc


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


class ClippedPairAverage:
    """Self-centered clipping (ClippedGossip, He, Karimireddy and Jaggi, 2022) for one peer.

    Each side moves towards the other by the weighted-average step, but the difference it moves
    along is clipped to ``tau``: ``mine + w * clip(theirs - mine, tau)``, with the partner's
    share ``w`` capped at 1/2 so a claimed sample weight cannot buy influence. ``tau`` adapts:
    ``multiplier`` x the median of this peer's recent unclipped exchange distances (outliers
    never enter the history, so a Byzantine minority cannot raise it), and before any history ``initial`` x the norm
    of our own model; never below ``floor``. Honest neighbors, whose distances are typical,
    are averaged exactly as ``pair_average`` would; a poisoned model moves us by at most ``tau/2``.

    Arithmetic (float64, rounded to float32 once; as ``averaging.js``): ``d = t - m`` per value,
    ``distance = sqrt(squared_norm(d))``, ``scale = min(1, tau / distance)`` (1 when the distance
    is 0), ``share = min(1/2, n_t / (n_m + n_t))`` (1/2 when both weights are 0),
    ``w' = float32(m + (share·scale)·d)``, new gossip weight ``(n_m + min(n_t, n_m)) / 2``.
    """

    def __init__(self, multiplier: float = 2.0, history: int = 32, floor: float = 1e-3, initial: float = 0.05) -> None:
        self.multiplier, self.floor, self.initial = multiplier, floor, initial
        self.distances: list[float] = []
        self.history = history
        self.clipped = 0  # exchanges whose difference was cut
        self.last_ratio = 1.0  # distance / tau of the last exchange (reputation signal)

    def tau(self, mine: Sequence[np.ndarray]) -> float:
        if not self.distances:  # no history yet: a small fraction of our own model's norm, never "trust all"
            return max(self.floor, self.initial * math.sqrt(squared_norm(mine)))
        return max(self.floor, self.multiplier * _median(self.distances))

    def __call__(self, mine: Sequence[np.ndarray], my_weight: float, theirs: Sequence[np.ndarray],
                 their_weight: float) -> tuple[Weights, float]:  # fmt: skip
        if len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs, strict=True)):
            raise ValueError("models to average have different tensor layouts")
        tau = self.tau(mine)
        delta = [np.asarray(t, np.float64) - np.asarray(m, np.float64) for m, t in zip(mine, theirs, strict=True)]
        distance = math.sqrt(squared_norm(delta))
        scale = min(1.0, tau / distance) if distance > 0 else 1.0
        self.last_ratio = distance / tau
        if distance > tau:
            self.clipped += 1  # an outlier does not enter the history, so it cannot raise tau
        else:
            self.distances = (self.distances + [distance])[-self.history :]
        share = min(0.5, their_weight / (my_weight + their_weight)) if my_weight + their_weight > 0 else 0.5
        step = share * scale
        merged = [(np.asarray(m, np.float64) + step * d).astype(np.float32) for m, d in zip(mine, delta, strict=True)]
        return merged, (my_weight + min(their_weight, my_weight)) / 2.0
