"""Many copies of one dense model trained at once: the live trainer's step, vectorized across peers.

``peer.trainer.Trainer`` trains one tf_keras model; this module trains any subset of the
simulated peers' copies of a Dense stack in one batched computation (weights with a leading
peer axis, one ``einsum`` per layer), with exactly the live step: the mean sparse categorical
cross-entropy of a batch, the manifest's ``l2`` on kernels, Keras ``clipnorm`` per tensor,
linear warm-up, and tf_keras's Adam or SGD update (same formulas, same epsilon placement).
Peers never mix: the loss is a sum of per-peer losses, so each peer's gradient is its own,
and the optimizer state (Adam moments and step counter) is kept per peer and never averaged.
Batches come from ``BatchStream``, which draws exactly the live trainer's batches.

``tests/test_research_engine.py`` checks a simulated peer against a live ``Trainer`` given the
same weights and batches. Other models (convolutions...) take ``KerasPeers`` in
``research/models.py``: one live ``Trainer`` per peer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from peer.trainer import warmup_lr
from protocols.manifest import TrainingConfig

ACTIVATIONS = {"relu": tf.nn.relu, "softmax": tf.nn.softmax, "sigmoid": tf.sigmoid, "tanh": tf.tanh, "linear": tf.identity,
               "elu": tf.nn.elu, "selu": tf.nn.selu, "softplus": tf.nn.softplus, "gelu": lambda x: tf.nn.gelu(x, approximate=False),
               "swish": tf.nn.silu}  # fmt: skip
EPSILON = 1e-7  # tf_keras Adam's and the cross-entropy's clipping epsilon
BETA_1, BETA_2 = 0.9, 0.999


@dataclass(frozen=True)
class DenseLayer:
    units: int
    activation: str


def dense_layers(topology: dict) -> list[DenseLayer] | None:
    """The Dense stack of a TF.js/Keras Sequential topology, or None if the model is anything else."""
    config = topology.get("model_config", topology)
    if config.get("class_name") != "Sequential":
        return None
    layers = []
    for layer in config["config"]["layers"]:
        kind, cfg = layer["class_name"], layer["config"]
        if kind == "InputLayer":
            continue
        if kind != "Dense" or cfg.get("activation", "linear") not in ACTIVATIONS or not cfg.get("use_bias", True):
            return None
        layers.append(DenseLayer(cfg["units"], cfg.get("activation", "linear")))
    return layers or None


class BatchStream:
    """One peer's batches, drawn exactly as ``peer.trainer.Trainer._next_batch`` draws them."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(n)
        self.cursor = 0

    def next(self) -> np.ndarray:
        if self.cursor + self.batch_size > len(self.order):
            self.order, self.cursor = self.rng.permutation(self.n), 0
        idx = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx


class StackedDense:
    """Optimizer state and batch streams of ``peers`` copies of a Dense stack; trains any subset at once."""

    def __init__(self, layers: Sequence[DenseLayer], shapes: Sequence[tuple[int, ...]], training: TrainingConfig,
                 shards: Sequence[tuple[np.ndarray, np.ndarray]], seed: int) -> None:  # fmt: skip
        if training.optimizer not in ("adam", "sgd"):
            raise ValueError(f"the vectorized trainer runs adam and sgd; optimizer {training.optimizer!r} takes the per-peer path")
        self.layers, self.training = list(layers), training
        self.shapes = [tuple(s) for s in shapes]
        self.peers = len(shards)
        self.adam = training.optimizer == "adam"
        self.m = [np.zeros((self.peers, *s), np.float32) for s in self.shapes] if self.adam else []
        self.v = [np.zeros((self.peers, *s), np.float32) for s in self.shapes] if self.adam else []
        self.steps = np.zeros(self.peers, np.int64)  # local steps taken (the optimizer's iterations)
        # every shard in one tensor; a peer's batch indices are offset into its own rows
        self.offsets = np.cumsum([0] + [len(y) for _, y in shards])[:-1]
        width = int(np.prod(shapes[0][:-1])) if shapes else 0
        self.x = tf.constant(np.concatenate([x.reshape(len(x), -1) for x, _ in shards]).astype(np.float32) if shards
                             else np.zeros((0, width), np.float32))  # fmt: skip
        self.y = tf.constant(np.concatenate([y for _, y in shards]).astype(np.int64) if shards else np.zeros(0, np.int64))
        self.streams = [BatchStream(len(y), training.batch_size, seed) for _, y in shards]
        self._run = tf.function(self._run_impl, reduce_retracing=True)
        self._predict = tf.function(self._forward, reduce_retracing=True)

    # ---- the batched step -----------------------------------------------------------------
    def _forward(self, w: Sequence[tf.Tensor], x: tf.Tensor, logits: bool = False) -> tf.Tensor:
        """x: [P, B, D] -> probabilities [P, B, C] (or the last layer's pre-activation with ``logits``)."""
        h = x
        for i, layer in enumerate(self.layers):
            h = tf.einsum("pbd,pdh->pbh", h, w[2 * i]) + w[2 * i + 1][:, None, :]
            if not (logits and i == len(self.layers) - 1):
                h = ACTIVATIONS[layer.activation](h)
        return h

    def _loss(self, w: Sequence[tf.Tensor], x: tf.Tensor, y: tf.Tensor, real: tf.Tensor) -> tf.Tensor:
        """Per-peer mean cross-entropy over the ``real`` examples of each batch (a shard smaller than the batch
        gives the live trainer a shorter batch), as tf_keras computes it: from the logits behind a softmax
        (tf_keras caches them on the softmax output), else from probabilities clipped to [eps, 1-eps]."""
        if self.layers[-1].activation == "softmax":
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(y, self._forward(w, x, logits=True))
        else:
            probs = tf.clip_by_value(self._forward(w, x), EPSILON, 1 - EPSILON)
            ce = -tf.math.log(tf.gather(probs, y, axis=2, batch_dims=2))
        return tf.reduce_sum(ce * real, axis=1) / tf.maximum(tf.reduce_sum(real, axis=1), 1.0)

    def _run_impl(self, w: list[tf.Tensor], m: list[tf.Tensor], v: list[tf.Tensor], t: tf.Tensor, idx: tf.Tensor,
                  real: tf.Tensor, active: tf.Tensor, lr: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor], list[tf.Tensor]]:  # fmt: skip
        """``idx`` [S, P, B] example rows, ``active`` [S, P] 1/0, ``lr`` [S, P]; ``t`` [P] steps taken before."""
        cfg = self.training
        for s in tf.range(tf.shape(idx)[0]):
            x, y = tf.gather(self.x, idx[s]), tf.gather(self.y, idx[s])
            with tf.GradientTape() as tape:
                tape.watch(w)
                per_peer = self._loss(w, x, y, real[s])
                if cfg.l2 > 0:  # kernels only (rank >= 2 per peer), as the manifest's `l2` says
                    per_peer += cfg.l2 * tf.add_n([tf.reduce_sum(tf.square(k), axis=list(range(1, len(k.shape))))
                                                   for k in w if len(k.shape) >= 3])  # fmt: skip
                total = tf.reduce_sum(per_peer)
            grads = tape.gradient(total, w)
            on_p = active[s]
            step = tf.cast(t, tf.float32) + tf.cast(s, tf.float32) + 1.0  # tf_keras: iterations + 1
            new_w, new_m, new_v = [], [], []
            for i, (var, g) in enumerate(zip(w, grads, strict=True)):
                shape = [-1] + [1] * (len(var.shape) - 1)
                if cfg.clipnorm is not None:  # tf.clip_by_norm per peer's tensor
                    norm = tf.sqrt(tf.reduce_sum(tf.square(g), axis=list(range(1, len(var.shape))), keepdims=True))
                    g = g * cfg.clipnorm / tf.maximum(norm, cfg.clipnorm)
                on = tf.reshape(on_p, shape)
                rate = tf.reshape(lr[s], shape)
                if self.adam:
                    mi = m[i] + (g - m[i]) * (1 - BETA_1)
                    vi = v[i] + (tf.square(g) - v[i]) * (1 - BETA_2)
                    k = tf.reshape(step, shape)
                    alpha = rate * tf.sqrt(1 - tf.pow(BETA_2, k)) / (1 - tf.pow(BETA_1, k))
                    update = (mi * alpha) / (tf.sqrt(vi) + EPSILON)
                    new_m.append(tf.where(on > 0, mi, m[i]))
                    new_v.append(tf.where(on > 0, vi, v[i]))
                else:
                    update = g * rate
                new_w.append(tf.where(on > 0, var - update, var))
            w, m, v = new_w, (new_m if self.adam else m), (new_v if self.adam else v)
        return w, m, v

    def train(self, peers: Sequence[int], weights: Sequence[Sequence[np.ndarray]], steps: Sequence[int]) -> list[list[np.ndarray]]:
        """Train ``peers[k]`` from ``weights[k]`` for ``steps[k]`` local steps each, all at once; return the new weights."""
        peers, steps_a = np.asarray(peers, np.int64), np.asarray(steps, np.int64)
        if len(peers) == 0:
            return []
        span = int(steps_a.max())
        cfg = self.training
        idx = np.zeros((span, len(peers), cfg.batch_size), np.int64)
        real = np.zeros((span, len(peers), cfg.batch_size), np.float32)
        active = np.zeros((span, len(peers)), np.float32)
        lr = np.zeros((span, len(peers)), np.float32)
        for k, (p, n) in enumerate(zip(peers.tolist(), steps_a.tolist(), strict=True)):
            for s in range(n):
                rows = self.streams[p].next() + self.offsets[p]
                idx[s, k, : len(rows)], idx[s, k, len(rows) :] = rows, rows[0] if len(rows) else 0
                real[s, k, : len(rows)] = 1.0
                active[s, k] = 1.0
                lr[s, k] = warmup_lr(cfg.learning_rate, cfg.warmup_steps, int(self.steps[p]) + s)
        for s in range(span):  # a peer with fewer steps idles on the last rows; its batch index is never read
            idx[s, active[s] == 0] = idx[0, active[s] == 0]
        w = [tf.constant(np.stack([np.asarray(ws[i], np.float32) for ws in weights])) for i in range(len(self.shapes))]
        m = [tf.constant(a[peers]) for a in self.m]
        v = [tf.constant(a[peers]) for a in self.v]
        # steps per peer along the chunk: a peer that idles keeps its count (active is a prefix)
        t = tf.constant(self.steps[peers].astype(np.float32))
        new_w, new_m, new_v = self._run(w, m, v, t, tf.constant(idx), tf.constant(real), tf.constant(active), tf.constant(lr))
        for a, new in zip(self.m, new_m, strict=True):
            a[peers] = new.numpy()
        for a, new in zip(self.v, new_v, strict=True):
            a[peers] = new.numpy()
        self.steps[peers] += steps_a
        out = [x.numpy() for x in new_w]
        return [[x[k] for x in out] for k in range(len(peers))]

    def predict(self, weights: Sequence[Sequence[np.ndarray]], x: np.ndarray) -> np.ndarray:
        """Class probabilities of every given model on the same examples: [models, examples, classes]."""
        w = [tf.constant(np.stack([np.asarray(ws[i], np.float32) for ws in weights])) for i in range(len(self.shapes))]
        xs = tf.broadcast_to(tf.constant(x.reshape(len(x), -1).astype(np.float32))[None], [len(weights), len(x), int(np.prod(x.shape[1:]))])
        return self._predict(w, xs).numpy()
