"""Can a browser peer load and train this model? Checked at publish time, layer by layer.

The browser peer is TensorFlow.js 4.22 (``browser_peer/``). It trains dense models on the
wasm backend and, when the topology has a layer whose gradient wasm lacks, on webgl
(``preferredBackend`` in ``browser_peer/src/trainer.js``, mirrored by ``preferred_backend``).
``TRAINABLE`` lists the layer classes a browser loads, predicts exactly as tf_keras does, and
trains on the backend it picks; ``tests/test_tfjs_compat.py`` builds a model around each of
them and proves all three in Chromium, and proves each entry of ``UNSUPPORTED`` fails there.
Anything not listed is refused (a class TF.js does not register fails with "Unknown layer").

A refused model can still be published for Python peers only (``--python-peers-only``;
``model.python_only`` in the manifest): the join page then says so instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

# Layers whose gradient the wasm backend lacks (Conv2DBackpropFilter, DepthwiseConv2dNative-
# BackpropFilter, UnsortedSegmentSum), or whose forward pass is wrong there (MaxPool3D): webgl.
WEBGL_LAYERS = re.compile(r'"class_name":\s*"(Conv|DepthwiseConv|SeparableConv|Embedding|MaxPooling3D)')

TRAINABLE = frozenset({
    "InputLayer", "Dense", "Activation", "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise",
    "SpatialDropout1D", "BatchNormalization", "LayerNormalization", "ReLU", "LeakyReLU", "ELU", "PReLU",
    "Softmax", "Flatten", "Reshape", "RepeatVector", "Permute", "Rescaling", "Masking",
    "Add", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "Embedding", "LSTM", "GRU", "SimpleRNN", "RNN", "LSTMCell", "GRUCell", "SimpleRNNCell", "Bidirectional",
    "TimeDistributed",
    "Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "UpSampling2D", "ZeroPadding2D", "Cropping2D",
})  # fmt: skip
MODELS = ("Sequential", "Functional", "Model")

# Classes people use that the browser cannot take, with what to do instead.
UNSUPPORTED = {
    "Lambda": "a Lambda layer is Python code: TF.js cannot load it and Python peers do not run code from a "
              "manifest; use built-in layers (Rescaling for x * k + b, Activation for element-wise functions, "
              "Reshape/Permute for shapes); --python-peers-only does not change this",
    "Subtract": "TF.js has no Subtract layer; use Add()([a, Rescaling(-1.0)(b)])",
    "ThresholdedReLU": "TF.js cannot differentiate through ThresholdedReLU; use ReLU or LeakyReLU",
    "Resizing": "TF.js's Resizing layer fails on batches; resize the data before publishing it",
    "CenterCrop": "TF.js cannot differentiate through CenterCrop; crop the data before publishing it",
    "GroupNormalization": "TF.js has no GroupNormalization layer; use LayerNormalization or BatchNormalization",
    "UnitNormalization": "TF.js has no UnitNormalization layer; use LayerNormalization",
    "MultiHeadAttention": "TF.js 4.22 does not register MultiHeadAttention",
    "Normalization": "TF.js has no Normalization (preprocessing) layer; normalize the data before publishing it",
}
ACTIVATIONS = frozenset({"elu", "gelu", "gelu_new", "hard_sigmoid", "linear", "log_softmax", "mish", "relu", "relu6",
                         "selu", "sigmoid", "softmax", "softplus", "softsign", "swish", "silu", "tanh"})  # fmt: skip


@dataclass(frozen=True)
class Problem:
    layer: str
    class_name: str
    why: str

    def __str__(self) -> str:
        return f"layer {self.layer!r} ({self.class_name}): {self.why}"


def preferred_backend(topology: dict[str, Any]) -> str:
    """The TF.js backend a browser trains this topology on (as ``preferredBackend`` in trainer.js)."""
    import json

    return "webgl" if WEBGL_LAYERS.search(json.dumps(topology)) else "wasm"


def _layers(model: Any) -> Iterator[tuple[str, Any]]:
    """(name, layer) of every layer, with nested models and the layers inside wrappers and RNNs
    (named ``outer/inner``)."""
    for layer in model.layers:
        if type(layer).__name__ in MODELS:
            yield from _layers(layer)
            continue
        yield layer.name, layer
        inner = {"Bidirectional": "forward_layer", "TimeDistributed": "layer", "RNN": "cell"}.get(type(layer).__name__)
        if inner is not None:
            yield f"{layer.name}/{getattr(layer, inner).name}", getattr(layer, inner)


def browser_problems(model: Any) -> list[Problem]:
    """Why a browser peer could not load or train ``model`` (a tf_keras model); empty: it can."""
    problems = []
    for name, layer in _layers(model):
        cls = type(layer).__name__
        if cls not in TRAINABLE:
            why = UNSUPPORTED.get(cls, f"TensorFlow.js 4.22 cannot load or train {cls} layers")
            problems.append(Problem(name, cls, why))
            continue
        problems += [Problem(name, cls, why) for why in _config_problems(layer, cls)]
    return problems


def _config_problems(layer: Any, cls: str) -> Iterator[str]:
    config = layer.get_config()
    for key in ("activation", "recurrent_activation"):
        name = config.get(key)
        if isinstance(name, str) and name not in ACTIVATIONS:
            yield f"activation {name!r} is not in TF.js; use one of {', '.join(sorted(ACTIVATIONS))}"
    if cls in ("GRU", "GRUCell") and config.get("reset_after"):
        yield "TF.js builds GRU only with reset_after=False (the tf_keras default is True); use GRU(..., reset_after=False)"
    if cls == "ReLU" and (config.get("negative_slope") or config.get("threshold")):
        yield "TF.js's ReLU has max_value only (it would ignore negative_slope/threshold); use LeakyReLU"
    if config.get("activity_regularizer") is not None:
        yield "TF.js cannot call a layer with an activity regularizer; remove it (peers train with the manifest's loss and --l2)"
    if config.get("groups", 1) != 1:
        yield "TF.js convolutions have no groups; use groups=1"
    if cls == "BatchNormalization" and config.get("renorm"):
        yield "TF.js's BatchNormalization has no renorm; use renorm=False"
    for var in layer.weights:
        constraint = getattr(var, "constraint", None)
        if constraint is not None and not np.allclose(constraint(var).numpy(), var.numpy(), rtol=1e-6, atol=1e-7):
            yield (f"weight {var.name.split(':')[0]} violates its {type(constraint).__name__} constraint: TF.js applies "
                   "constraints whenever weights are set (tf_keras only after a step), so browsers would start from "
                   "other weights; publish weights that satisfy it")  # fmt: skip


def _rank(layer: Any) -> int | None:
    try:
        shape = layer.input_shape
    except (AttributeError, RuntimeError):
        return None
    return len(shape) if isinstance(shape, tuple) else None


def refusal(problems: list[Problem]) -> str:
    """The publish refusal: every problem, then the two ways out."""
    lines = "; ".join(str(p) for p in problems)
    return (f"browser peers (TensorFlow.js 4.22) cannot train this model: {lines}. Change the model, or publish "
            "it for Python peers only with --python-peers-only (the join page then tells browsers so)")  # fmt: skip


# --- the topology as TF.js reads it --------------------------------------------------------


def flat_flattens(model: Any) -> dict[str, int]:
    """Flatten layers whose input is already flat (rank 2), with their width: a no-op in tf_keras,
    refused by TF.js ("expected min_ndim=3"), and common (``Flatten(input_shape=(784,))``)."""
    return {name: int(layer.input_shape[-1]) for name, layer in _layers(model)
            if type(layer).__name__ == "Flatten" and _rank(layer) == 2}  # fmt: skip


def for_tfjs(topology: Any, flat: dict[str, int] | None = None) -> Any:
    """Rewrites of the converter's topology that TF.js needs and tf_keras reads the same way:

    * ``L1``/``L2`` regularizers become ``L1L2`` (TF.js registers only that class);
    * ``SeparableConv2D`` loses the ``kernel_*`` options it inherits from Conv but never uses
      (TF.js refuses them: "Fields kernelInitializer ... are invalid for SeparableConv2D");
    * a Flatten of a flat input (``flat``: name -> width) becomes ``Reshape((width,))``, the
      same no-op that TF.js accepts.
    """
    flat = flat or {}
    if isinstance(topology, list):
        return [for_tfjs(v, flat) for v in topology]
    if not isinstance(topology, dict):
        return topology
    out = {k: for_tfjs(v, flat) for k, v in topology.items()}
    config = out.get("config")
    if out.get("class_name") == "Flatten" and isinstance(config, dict) and config.get("name") in flat:
        keep = {k: v for k, v in config.items() if k in ("name", "trainable", "dtype")}
        out = {**out, "class_name": "Reshape", "config": {**keep, "target_shape": [flat[config["name"]]]}}
    if out.get("class_name") in ("L1", "L2") and isinstance(out.get("config"), dict):
        out = {"class_name": "L1L2", "config": {"l1": out["config"].get("l1", 0.0), "l2": out["config"].get("l2", 0.0)}}
    if out.get("class_name") == "SeparableConv2D" and isinstance(out.get("config"), dict):
        out["config"] = {k: v for k, v in out["config"].items()
                         if k not in ("kernel_initializer", "kernel_regularizer", "kernel_constraint")}  # fmt: skip
    return out
