"""The experiment's data: the same MNIST split and partition for every method and backend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apps.datasets import load_mnist, partition, train_test_split

from .config import ExperimentConfig


@dataclass(frozen=True)
class ExperimentData:
    x_train: np.ndarray  # float32 [N, 784] in [0, 1]
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray
    y_test: np.ndarray
    shards: list[np.ndarray]  # indices into the train arrays, one per peer


def prepare(config: ExperimentConfig, seed: int) -> ExperimentData:
    x, y = load_mnist()
    (xtr, ytr), (xte, yte) = train_test_split(x, y, config.data.test_fraction, seed)
    shards = partition(ytr, config.swarm.peers, config.data.partition, seed, config.data.alpha, config.data.classes_per_shard)
    n = min(config.data.eval_examples, len(yte))
    return ExperimentData(xtr.astype(np.float32) / 255, ytr.astype(np.int64), xte[:n].astype(np.float32) / 255,
                          yte[:n].astype(np.int64), shards)  # fmt: skip


def label_skew(y: np.ndarray, shards: list[np.ndarray], classes: int = 10) -> np.ndarray:
    """Per shard, the fraction of its examples in each class: [shards, classes]."""
    out = np.zeros((len(shards), classes))
    for i, idx in enumerate(shards):
        if len(idx):
            out[i] = np.bincount(y[idx], minlength=classes) / len(idx)
    return out
