"""Many copies of one dense model trained at once: weights carry a leading peer axis.

Used by the simulator to run hundreds of peers in one process. Peers never mix: the loss is
a sum of per-peer losses, and Adam (implemented here with per-peer step counters) is
elementwise, so each slice evolves exactly as an independent peer with its own optimizer
state would. A mask freezes offline peers completely (no momentum drift).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

ACTIVATIONS = {"relu": tf.nn.relu, "softmax": tf.nn.softmax, "sigmoid": tf.sigmoid, "tanh": tf.tanh, "linear": tf.identity}


@dataclass(frozen=True)
class DenseLayer:
    units: int
    activation: str


def dense_layers(topology: dict) -> list[DenseLayer]:
    """The Dense stack of a TF.js/Keras Sequential topology; refuses anything else."""
    config = topology.get("model_config", topology)
    layers = []
    for layer in config["config"]["layers"]:
        kind = layer["class_name"]
        if kind == "InputLayer":
            continue
        if kind != "Dense" or layer["config"].get("activation", "linear") not in ACTIVATIONS:
            raise ValueError(f"the simulator runs Dense MLPs only; found {kind} {layer['config'].get('activation')}")
        layers.append(DenseLayer(layer["config"]["units"], layer["config"].get("activation", "linear")))
    return layers


class StackedMLP:
    def __init__(self, layers: Sequence[DenseLayer], initial: Sequence[np.ndarray], peers: int,
                 optimizer: str = "adam", learning_rate: float = 1e-3) -> None:  # fmt: skip
        self.layers, self.peers = list(layers), peers
        self.vars = [tf.Variable(np.repeat(np.asarray(w, np.float32)[None], peers, axis=0)) for w in initial]
        self.m = [tf.Variable(tf.zeros_like(v)) for v in self.vars]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in self.vars]
        self.t = tf.Variable(tf.zeros([peers], tf.float32))
        self.adam, self.lr = optimizer == "adam", learning_rate
        self._step = tf.function(self._step_impl, reduce_retracing=True)
        self._predict = tf.function(self._predict_impl, reduce_retracing=True)

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        """x: [P, B, D] -> probabilities [P, B, C]."""
        h = x
        for i, layer in enumerate(self.layers):
            h = tf.einsum("pbd,pdh->pbh", h, self.vars[2 * i]) + self.vars[2 * i + 1][:, None, :]
            h = ACTIVATIONS[layer.activation](h)
        return h

    def _step_impl(self, x: tf.Tensor, y: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            probs = self._forward(x)
            per_peer = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, probs), axis=1)
            total = tf.reduce_sum(per_peer * mask)
        grads = tape.gradient(total, self.vars)
        t = self.t + mask
        self.t.assign(t)
        for var, g, m, v in zip(self.vars, grads, self.m, self.v, strict=True):
            shape = [-1] + [1] * (len(var.shape) - 1)
            on = tf.reshape(mask, shape)
            if self.adam:
                m_new = 0.9 * m + 0.1 * g
                v_new = 0.999 * v + 0.001 * tf.square(g)
                tt = tf.reshape(tf.maximum(t, 1.0), shape)
                update = self.lr * (m_new / (1 - 0.9**tt)) / (tf.sqrt(v_new / (1 - 0.999**tt)) + 1e-7)
                m.assign(on * m_new + (1 - on) * m)
                v.assign(on * v_new + (1 - on) * v)
            else:
                update = self.lr * g
            var.assign_sub(on * update)
        return per_peer

    def train_step(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._step(tf.constant(x), tf.constant(y), tf.constant(mask, tf.float32)).numpy()

    def _predict_impl(self, x: tf.Tensor) -> tf.Tensor:
        return self._forward(x)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Test accuracy of every peer on the same examples: [P]."""
        xs = tf.broadcast_to(tf.constant(x)[None], [self.peers, *x.shape])
        pred = tf.argmax(self._predict(xs), axis=-1).numpy()
        return (pred == y[None]).mean(axis=1)

    def get(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.vars]

    def set(self, weights: Sequence[np.ndarray]) -> None:
        for var, w in zip(self.vars, weights, strict=True):
            var.assign(w)
