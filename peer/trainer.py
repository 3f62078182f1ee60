"""The local model: loaded from the manifest's TF.js layers topology, trained with tf.function.

TensorFlow is imported here only, so the rest of the peer (and the signaling server) never
pay its import cost. Weights are exchanged in the order of the manifest's ``weights`` list:
every weight of the model, trainable or not. Non-trainable state (BatchNormalization's
moving mean and variance) is averaged by gossip like any weight (what FedAvg does; docs/
PROTOCOL.md "Non-trainable weights"); the optimizer updates only the trainable ones, and a
layer updates its own statistics when called with ``training=True``.
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU peers; avoids a failing cuInit probe

import numpy as np
import tensorflow as tf
import tf_keras
from tensorflowjs.converters.keras_tfjs_loader import deserialize_keras_model
from tf_keras.src.saving.serialization_lib import SafeModeScope

from protocols.manifest import Manifest, TrainingConfig

from .averaging import Weights
from .gossip import Update


def split_weights_blob(manifest: Manifest, blob: bytes) -> Weights:
    """Cut a float32 little-endian blob into the manifest's tensors."""
    out, offset = [], 0
    for spec in manifest.model.weights:
        n = int(np.prod(spec.shape, dtype=np.int64))
        out.append(np.frombuffer(blob, dtype="<f4", count=n, offset=offset).reshape(spec.shape).copy())
        offset += 4 * n
    if offset != len(blob):
        raise ValueError(f"weights blob is {len(blob)} bytes, manifest needs {offset}")
    return out


def build_model(manifest: Manifest, initial: bytes) -> tf_keras.Model:
    """The manifest's model in Keras safe mode: a topology carrying Python code (a Lambda
    layer's marshalled bytecode) is refused, never run; a manifest is anyone's JSON."""
    config = {
        "modelTopology": manifest.model.topology,
        "weightsManifest": [{"paths": ["weights.bin"], "weights": [w.model_dump() for w in manifest.model.weights]}],
    }
    with SafeModeScope(True):
        return deserialize_keras_model(config, weight_data=[initial])


def optimizer_for(cfg: TrainingConfig) -> tf_keras.optimizers.Optimizer:
    """The manifest's optimizer; ``clipnorm`` clips each gradient tensor to that L2 norm (Keras semantics)."""
    kinds = {"sgd": tf_keras.optimizers.SGD, "rmsprop": tf_keras.optimizers.RMSprop, "adam": tf_keras.optimizers.Adam}
    return kinds[cfg.optimizer](learning_rate=cfg.learning_rate, clipnorm=cfg.clipnorm)


ACCURACY_FOR_LOSS = {"sparse_categorical_crossentropy": "SparseCategoricalAccuracy",
                     "categorical_crossentropy": "CategoricalAccuracy", "binary_crossentropy": "BinaryAccuracy"}


def keras_metrics(cfg: TrainingConfig) -> list[tf_keras.metrics.Metric | str]:
    """The manifest's metrics for ``compile``. "accuracy" becomes the accuracy class of the loss,
    under the name "accuracy": a reloaded model would otherwise guess it again, from a saved
    config that no longer says which labels the loss takes. Other names Keras resolves itself."""
    accuracy = ACCURACY_FOR_LOSS.get(str(cfg.loss))
    return [getattr(tf_keras.metrics, accuracy)(name=name) if name == "accuracy" and accuracy else name
            for name in cfg.metrics]  # fmt: skip


LOSSES = {"sparse_categorical_crossentropy": tf_keras.losses.SparseCategoricalCrossentropy,
          "categorical_crossentropy": tf_keras.losses.CategoricalCrossentropy,
          "binary_crossentropy": tf_keras.losses.BinaryCrossentropy,
          "mean_squared_error": tf_keras.losses.MeanSquaredError,
          "mean_absolute_error": tf_keras.losses.MeanAbsoluteError}  # fmt: skip


def loss_for(cfg: TrainingConfig) -> tf_keras.losses.Loss:
    """The manifest's loss on the model's outputs (probabilities for cross-entropies, as Keras)."""
    return LOSSES[cfg.loss]()


def targets_for(cfg: TrainingConfig, y: np.ndarray, width: int) -> np.ndarray:
    """What the loss takes, from a shard's targets (int class labels (n,), or float32 (n, k)):
    sparse CE the labels; categorical CE one-hot rows; binary CE 0/1 as float32 (n, width);
    regression float32 (n, k)."""
    if cfg.loss == "sparse_categorical_crossentropy" or y.dtype.kind == "f":
        return y if y.dtype.kind != "f" else y.astype(np.float32).reshape(len(y), -1)
    if cfg.loss == "categorical_crossentropy":
        return np.eye(width, dtype=np.float32)[y]
    return y.astype(np.float32).reshape(len(y), -1)  # binary: class 0/1 labels


def score(cfg: TrainingConfig, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The task's metrics on ``outputs`` against loss-ready targets ``y``: ``accuracy`` (the kind
    the loss implies: class index, one-hot argmax, or sigmoid > 0.5 per output) for
    classification; ``mae``, ``mse`` and ``r2`` (1 - SSE/SST over every output) for regression."""
    if cfg.loss == "sparse_categorical_crossentropy":
        return {"accuracy": float(np.mean(np.argmax(outputs, axis=1) == y))}
    if cfg.loss == "categorical_crossentropy":
        return {"accuracy": float(np.mean(np.argmax(outputs, axis=1) == np.argmax(y, axis=1)))}
    if cfg.loss == "binary_crossentropy":
        return {"accuracy": float(np.mean((outputs > 0.5) == (y > 0.5)))}
    err = outputs.astype(np.float64) - y
    sst = float(np.sum((y - y.mean(axis=0)) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / sst if sst > 0 else 0.0
    return {"mae": float(np.mean(np.abs(err))), "mse": float(np.mean(err**2)), "r2": r2}


def headline(cfg: TrainingConfig, metrics: dict[str, float]) -> float:
    """The one number in [0, 1] a peer reports as ``test_acc`` (metrics rows, board, demo):
    accuracy, or for regression R² clipped to [0, 1] (MAE has no upper bound; the full set is
    ``Trainer.last_metrics``)."""
    return metrics["accuracy"] if "accuracy" in metrics else min(1.0, max(0.0, metrics["r2"]))


def compile_for(model: tf_keras.Model, cfg: TrainingConfig, optimizer: tf_keras.optimizers.Optimizer | None = None) -> None:
    """Compile ``model`` with the manifest's optimizer, loss and metrics, so a saved .h5 carries
    them (``training_config``) and ``load_model`` gives a model ``fit`` continues from, in
    tf_keras and in Keras 3. The loss is its name: Keras 3 cannot read tf_keras loss objects."""
    model.compile(optimizer=optimizer or optimizer_for(cfg), loss=cfg.loss, metrics=keras_metrics(cfg))


def warmup_lr(learning_rate: float, warmup_steps: int, step: int) -> float:
    """Linear warm-up: local step ``step`` (0-based) uses ``lr * min(1, (step + 1) / warmup_steps)``."""
    return learning_rate if warmup_steps <= 0 else learning_rate * min(1.0, (step + 1) / warmup_steps)


class Trainer:
    """Owns the tf_keras model, its optimizer (state stays local) and the local data."""

    def __init__(
        self,
        manifest: Manifest,
        initial_weights: bytes,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        seed: int = 0,
    ) -> None:
        tf.random.set_seed(seed)
        self.manifest = manifest
        self.model = build_model(manifest, initial_weights)
        self._vars = self._manifest_order()
        self.optimizer = optimizer_for(manifest.training)
        self.loss_fn = loss_for(manifest.training)
        # compiled only so that a checkpoint's model.h5 carries the training configuration and
        # the optimizer state (see compile_for); training itself is _train_step, not fit
        compile_for(self.model, manifest.training, self.optimizer)
        width = int(self.model.output_shape[-1])
        self.x, self.y = train[0], targets_for(manifest.training, train[1], width)
        self.x_test, self.y_test = test[0], targets_for(manifest.training, test[1], width)
        self.last_metrics: dict[str, float] = {}
        self.batch_size = manifest.training.batch_size
        self.rng = np.random.default_rng(seed)
        self.step = 0
        self.gossip_weight = float(len(self.x))
        self.lock = asyncio.Lock()
        self._order = self.rng.permutation(len(self.x))
        self._cursor = 0
        self._l2 = manifest.training.l2
        self._penalized = [v for v in self.model.trainable_variables if len(v.shape) >= 2]
        self._train_step = tf.function(self._train_step_impl, reduce_retracing=True)

    def _manifest_order(self) -> list[tf.Variable]:
        by_name = {v.name.split(":")[0]: v for v in self.model.weights}
        names = [w.name for w in self.manifest.model.weights]
        if all(n in by_name for n in names):
            return [by_name[n] for n in names]
        return list(self.model.weights)  # names are scoped differently; the order is the same

    def _train_step_impl(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, self.model(x, training=True))
            if self._l2 > 0:  # kernels only (rank >= 2), as the manifest's `l2` says
                loss += self._l2 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self._penalized])
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        return loss

    def _next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        if self._cursor + self.batch_size > len(self._order):
            self._order, self._cursor = self.rng.permutation(len(self.x)), 0
        idx = self._order[self._cursor : self._cursor + self.batch_size]
        self._cursor += self.batch_size
        return self.x[idx], self.y[idx]

    def train_steps(self, n: int) -> float:
        """Run ``n`` optimizer steps; return the mean loss. Call with ``lock`` held."""
        total = 0.0
        cfg = self.manifest.training
        for _ in range(n):
            if cfg.warmup_steps and self.step <= cfg.warmup_steps:  # the last assignment sets the full rate
                self.optimizer.learning_rate = warmup_lr(cfg.learning_rate, cfg.warmup_steps, self.step)
            x, y = self._next_batch()
            total += float(self._train_step(tf.constant(x), tf.constant(y)))
            self.step += 1
        return total / max(1, n)

    def evaluate(self, limit: int | None = None) -> tuple[float, float]:
        """(test loss, headline score in [0, 1]); every metric of the task is in ``last_metrics``."""
        x, y = (self.x_test, self.y_test) if limit is None else (self.x_test[:limit], self.y_test[:limit])
        outputs = self.model(x, training=False).numpy()
        loss = float(self.loss_fn(y, outputs))
        self.last_metrics = {"loss": loss, **score(self.manifest.training, outputs, y)}
        return loss, headline(self.manifest.training, self.last_metrics)

    # --- gossip.LocalModel -----------------------------------------------------------
    def get_weights(self) -> Weights:
        return [v.numpy() for v in self._vars]

    def set_weights(self, weights: Weights) -> None:
        for var, w in zip(self._vars, weights, strict=True):
            var.assign(w)

    def current(self) -> Update:
        return Update(self.get_weights(), self.gossip_weight, self.step)

    def assign(self, weights: Weights, weight: float) -> None:
        self.set_weights(weights)
        self.gossip_weight = weight

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(w.shape) for w in self.manifest.model.weights]
