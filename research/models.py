"""Which trainer a simulated block of peers uses, and how models are evaluated.

* Dense stacks (every no-code MLP, and any Sequential .h5/TF.js model of Dense layers) with Adam
  or SGD take ``research.stacked.StackedDense``: one batched computation for all ready peers.
* Anything else (convolutions, other layers, RMSprop) takes ``KerasPeers``: one live
  ``peer.trainer.Trainer`` per peer, the very object a live peer trains, one peer after another.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from peer.trainer import Trainer

from .published import SwarmModel
from .stacked import StackedDense, dense_layers

Weights = list[np.ndarray]
EVAL_CHUNK = 64  # models evaluated at once


def vectorized(model: SwarmModel) -> bool:
    return dense_layers(model.manifest.model.topology) is not None and model.manifest.training.optimizer in ("adam", "sgd")


class StackedBlock:
    """A block of peers on the vectorized path; ``peers`` are global ids."""

    def __init__(self, model: SwarmModel, ids: Sequence[int], seed: int) -> None:
        self.local = {g: k for k, g in enumerate(ids)}
        layers = dense_layers(model.manifest.model.topology)
        assert layers is not None
        self.stack = StackedDense(layers, model.shapes, model.manifest.training, [model.shards[g] for g in ids], seed)

    def train(self, peers: Sequence[int], weights: Sequence[Weights], steps: Sequence[int]) -> list[Weights]:
        return self.stack.train([self.local[p] for p in peers], weights, steps)


class KerasPeers:
    """A block of peers on the per-peer path: one live ``Trainer`` each."""

    def __init__(self, model: SwarmModel, ids: Sequence[int], seed: int) -> None:
        self.trainers = {g: Trainer(model.manifest, model.initial_blob, model.shards[g], model.test, seed=seed) for g in ids}

    def train(self, peers: Sequence[int], weights: Sequence[Weights], steps: Sequence[int]) -> list[Weights]:
        out = []
        for p, w, n in zip(peers, weights, steps, strict=True):
            t = self.trainers[p]
            t.set_weights(w)
            t.train_steps(n)
            out.append(t.get_weights())
        return out


def make_block(model: SwarmModel, seed: int) -> type:
    return StackedBlock if vectorized(model) else KerasPeers  # type: ignore[return-value]


class Evaluator:
    """Test accuracy of many models on the same examples (the live trainer's ``evaluate``)."""

    def __init__(self, model: SwarmModel) -> None:
        self.x, self.y = model.test
        layers = dense_layers(model.manifest.model.topology)
        if layers is not None:
            self.stack = StackedDense(layers, model.shapes, model.manifest.training, [], 0)
            self.keras = None
        else:
            self.stack = None
            self.keras = Trainer(model.manifest, model.initial_blob, model.test, model.test)

    def __call__(self, models: Sequence[Weights]) -> np.ndarray:
        if self.stack is not None:
            preds = [np.argmax(self.stack.predict(models[i : i + EVAL_CHUNK], self.x), axis=-1)
                     for i in range(0, len(models), EVAL_CHUNK)]  # fmt: skip
            return (np.concatenate(preds) == self.y[None]).mean(axis=1)
        assert self.keras is not None
        out = []
        for w in models:
            self.keras.set_weights(w)
            probs = self.keras.model(tf.constant(self.x), training=False).numpy()
            out.append(float(np.mean(np.argmax(probs, axis=1) == self.y)))
        return np.asarray(out)
