"""Keras 3 model files (``.keras``, and ``.h5`` saved by Keras 3) rebuilt as tf_keras models.

Peers train tf_keras models and browsers load TF.js layers models; both read the Keras 2
layer JSON that tf_keras writes. A Keras 3 file is therefore loaded with Keras 3 itself
(``keras.saving.load_model``, safe mode: no Python code from the file runs), its config is
translated to tf_keras's (the differences are listed at ``_object``), the tf_keras model is
built from it, and every layer gets the Keras 3 layer's weights. ``rebuild`` then checks that
both models predict the same on random inputs, so a translation slip cannot go unnoticed.

An option that exists only in Keras 3 is dropped when it holds its neutral value
(``lora_rank=None``, ``use_cudnn="auto"``, ``optional=False``...) and refused otherwise,
naming the layer: dropping it would change the model.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NEUTRAL = (None, False, "auto", {}, [])  # values of Keras-3-only options that change nothing
MODEL_CLASSES = ("Sequential", "Functional", "Model")
LAYER_KEYS = ("layers", "layer", "backward_layer", "cell", "cells")  # where layer configs nest
BASE_LAYER_KEYS = {"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
                   "batch_size", "weights", "activity_regularizer", "autocast", "implementation"}  # fmt: skip


class ConversionError(ValueError):
    """A Keras 3 model that has no faithful tf_keras equivalent; the message names the layer."""


# --- what a file holds, before loading it --------------------------------------------------


def file_config(path: Path) -> tuple[str, dict[str, Any]]:
    """(Keras version that wrote ``path``, its model config) read without building the model.

    ``.keras`` zips carry ``metadata.json`` and ``config.json``; ``.h5`` files the attributes
    ``keras_version`` and ``model_config``. Raises ConversionError for anything else.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("metadata.json"))
                return str(meta.get("keras_version", "3")), json.loads(z.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", b"")
            config = f.attrs.get("model_config")
            if config is None:
                raise ConversionError(f"{path} holds weights only (no model_config); it must hold a whole model "
                                      "(model.save), not only weights")  # fmt: skip
            as_text = (lambda v: v.decode() if isinstance(v, bytes) else str(v))
            return as_text(version), json.loads(as_text(config))
    except (KeyError, OSError, ValueError) as exc:
        if isinstance(exc, ConversionError):
            raise
        raise ConversionError(f"{path} is not a loadable Keras model ({type(exc).__name__}: {str(exc)[:200]})") from None


def layer_configs(config: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(class name, layer name, layer config) of every layer, nested models and wrappers included."""
    if isinstance(config, list):
        for item in config:
            yield from layer_configs(item)
        return
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    if "class_name" in config and isinstance(inner, dict):
        yield str(config["class_name"]), str(inner.get("name", config.get("name", "?"))), inner
        config = inner
    for key in LAYER_KEYS:
        if key in config:
            yield from layer_configs(config[key])


def is_keras3(version: str) -> bool:
    return version.split(".", 1)[0] == "3"


# --- Keras 3 config -> tf_keras config ------------------------------------------------------


def _tf_keras() -> Any:
    import tf_keras

    return tf_keras


def _target_class(module: str | None, class_name: str) -> Any:
    """The tf_keras class a Keras 3 serialized object stands for (None: not a layer-ish object)."""
    tf_keras = _tf_keras()
    if class_name in MODEL_CLASSES:
        return {"Sequential": tf_keras.Sequential}.get(class_name, tf_keras.Model)
    for prefix, namespace in (("keras.layers", tf_keras.layers), ("keras.initializers", tf_keras.initializers),
                              ("keras.regularizers", tf_keras.regularizers), ("keras.constraints", tf_keras.constraints)):  # fmt: skip
        if module is not None and module.startswith(prefix):
            return getattr(namespace, class_name, None)
    return None


def _accepted(cls: Any) -> set[str] | None:
    """Constructor arguments of ``cls`` and its bases (None: it takes anything)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    return names | BASE_LAYER_KEYS


def translate(value: Any, where: str = "model") -> Any:
    """A Keras 3 config (or part of one) as tf_keras reads it."""
    if isinstance(value, (list, tuple)):
        return [translate(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if "class_name" in value and "config" in value and ("module" in value or "registered_name" in value):
        return _object(value, where)
    return {k: translate(v, where) for k, v in value.items()}


def _object(obj: dict[str, Any], where: str) -> Any:
    """One serialized Keras 3 object. The differences from tf_keras's JSON:

    * ``module`` / ``registered_name`` / ``build_config`` / ``compile_config`` keys (dropped);
    * dtype policies as objects (``DTypePolicy(float32)`` -> ``"float32"``);
    * ``InputLayer(batch_shape=...)`` -> ``batch_input_shape`` (``optional`` dropped);
    * functional ``inbound_nodes`` as call arguments holding ``__keras_tensor__`` records,
      where tf_keras lists ``[layer, node index, tensor index, kwargs]``;
    * options Keras 3 added (see the module docstring).
    """
    class_name, config = str(obj["class_name"]), obj["config"]
    name = config.get("name", obj.get("name", class_name)) if isinstance(config, dict) else class_name
    here = f"layer {name!r} ({class_name})" if "layers" in str(obj.get("module", "")) else where
    if class_name in ("DTypePolicy", "FloatDTypePolicy"):
        policy = config.get("name", "float32")
        if policy != "float32":
            raise ConversionError(f"{where}: dtype policy {policy!r}; peers train float32 weights (build the model "
                                  "without a mixed-precision policy)")  # fmt: skip
        return policy
    if class_name in ("__lambda__", "__function__") or class_name == "Lambda":
        raise ConversionError(f"{here}: a Lambda layer carries Python code, which peers do not run")
    module = obj.get("module")
    if obj.get("registered_name") not in (None, class_name) or (module and not str(module).startswith("keras")):
        raise ConversionError(f"{here}: {obj.get('registered_name') or class_name} is a custom class; peers can "
                              "only rebuild Keras built-in layers")  # fmt: skip
    cls = _target_class(module, class_name)
    if cls is None and module and str(module).startswith("keras.layers"):
        raise ConversionError(f"{here}: tf_keras, which Python peers train with, has no {class_name} layer")
    config = {k: translate(v, here) for k, v in config.items()} if isinstance(config, dict) else config
    if class_name == "InputLayer":
        config = _input_layer(config, here)
    elif class_name in MODEL_CLASSES and isinstance(config, dict) and "input_layers" in config:
        config = _functional(config)
    elif cls is not None and class_name not in MODEL_CLASSES and isinstance(config, dict):
        config = _known_options(cls, config, here)
    out: dict[str, Any] = {"class_name": class_name, "config": config}
    if "inbound_nodes" in obj:  # a layer inside a functional model's config
        out["name"] = obj.get("name", name)
        out["inbound_nodes"] = [_node(node, here) for node in obj["inbound_nodes"]]
    return out


def _input_layer(config: dict[str, Any], where: str) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if k not in ("batch_shape", "optional")}
    if config.get("optional"):
        raise ConversionError(f"{where}: optional inputs have no tf_keras equivalent")
    if "batch_shape" in config:
        out["batch_input_shape"] = config["batch_shape"]
    return out


def _known_options(cls: Any, config: dict[str, Any], where: str) -> dict[str, Any]:
    accepted = _accepted(cls)
    if accepted is None:
        return config
    out = {}
    for key, value in config.items():
        if key in accepted:
            out[key] = value
        elif value not in NEUTRAL:
            raise ConversionError(f"{where}: option {key}={value!r} exists only in Keras 3 (tf_keras {cls.__name__} "
                                  "has no such argument); build the layer without it")  # fmt: skip
    return out


def _node(node: Any, where: str) -> list[list[Any]]:
    """A Keras 3 call record ``{"args": [...], "kwargs": {...}}`` as tf_keras inbound node data."""
    if isinstance(node, list):  # already tf_keras-style
        return node
    tensors: list[list[Any]] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            tensors.append(list(value["config"]["keras_history"]))
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)
        else:
            raise ConversionError(f"{where}: is called with a non-tensor argument {value!r}, which tf_keras cannot replay")

    collect(node.get("args", []))
    kwargs = node.get("kwargs") or {}
    if "__keras_tensor__" in json.dumps(kwargs):
        raise ConversionError(f"{where}: is called with tensors as keyword arguments, which tf_keras cannot replay")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # Keras 3 records mask=None
    return [[*t, kwargs if i == 0 else {}] for i, t in enumerate(tensors)]


def _functional(config: dict[str, Any]) -> dict[str, Any]:
    """Node indices of nested models start at 1 in tf_keras: a tf_keras model built on its own
    ``Input`` owns node 0 (its inputs-to-outputs node), which Keras 3 models do not count."""
    nested = {layer["name"] for layer in config["layers"] if layer["class_name"] in MODEL_CLASSES}

    def shift(ref: list[Any]) -> list[Any]:
        return [ref[0], ref[1] + 1, *ref[2:]] if ref[0] in nested else ref

    out = dict(config)
    out["layers"] = [{**layer, "inbound_nodes": [[shift(ref) for ref in node] for node in layer["inbound_nodes"]]}
                     for layer in config["layers"]]  # fmt: skip
    for key in ("input_layers", "output_layers"):
        out[key] = [shift(ref) for ref in _model_io(config[key])]
    _check_node_refs(out)
    return out


def _check_node_refs(config: dict[str, Any]) -> None:
    """Every node reference must exist: tf_keras's ``reconstruct_from_config`` waits forever
    for a node that never comes (it loops until every layer's nodes are made)."""
    nodes = {layer["name"]: len(layer["inbound_nodes"]) + (layer["class_name"] in (*MODEL_CLASSES, "InputLayer"))
             for layer in config["layers"]}  # fmt: skip
    refs = [ref for layer in config["layers"] for node in layer["inbound_nodes"] for ref in node]
    refs += [*config["input_layers"], *config["output_layers"]]
    for ref in refs:
        if ref[0] not in nodes or not 0 <= ref[1] < nodes[ref[0]]:
            raise ConversionError(f"the functional model refers to node {ref[1]} of layer {ref[0]!r}, which does not exist")


def _model_io(value: Any) -> Any:
    """``input_layers``/``output_layers``: Keras 3 writes one tensor flat, ``[name, 0, 0]``."""
    if isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str):
        return [value]
    return value


def tf_keras_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Keras 3 model config (``{"class_name": "Sequential"|"Functional", "config": ...}``) for tf_keras."""
    if config.get("class_name") not in MODEL_CLASSES:
        raise ConversionError(f"the file holds a {config.get('class_name')!r}, not a Sequential or functional model")
    out = translate(config)
    return {"class_name": out["class_name"], "config": out["config"]}


# --- the rebuild ----------------------------------------------------------------------------


def load_keras3(path: Path) -> Any:
    """The Keras 3 model in ``path`` (``.keras`` or ``.h5``), loaded in safe mode, uncompiled."""
    import keras

    return keras.saving.load_model(path, compile=False, safe_mode=True)


def rebuild(model: Any) -> Any:
    """A tf_keras model with ``model``'s architecture and weights (a Keras 3 model)."""
    tf_keras = _tf_keras()
    config = tf_keras_config({"class_name": type(model).__name__ if type(model).__name__ in MODEL_CLASSES else "Functional",
                              "config": model.get_config(), "module": "keras", "registered_name": None})  # fmt: skip
    try:
        rebuilt = tf_keras.models.model_from_json(json.dumps(config))
    except (ValueError, TypeError, KeyError) as exc:
        raise ConversionError(f"the Keras 3 model does not rebuild in tf_keras: {str(exc).splitlines()[0][:300]}") from None
    _copy_weights(model, rebuilt)
    _check_same_predictions(model, rebuilt)
    return rebuilt


def _copy_weights(source: Any, target: Any) -> None:
    by_name = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name not in by_name:
            raise ConversionError(f"layer {layer.name!r} of the Keras 3 model has no counterpart after the rebuild")
        twin = by_name[layer.name]
        shapes = [w.shape for w in weights]
        if [tuple(w.shape) for w in twin.weights] != shapes:
            raise ConversionError(f"layer {layer.name!r}: Keras 3 weights {shapes} do not fit tf_keras's "
                                  f"{[tuple(w.shape) for w in twin.weights]}")  # fmt: skip
        twin.set_weights(weights)
    if len(source.weights) != len(target.weights):
        raise ConversionError(f"the Keras 3 model has {len(source.weights)} weight tensors, the rebuild {len(target.weights)}")


def _check_same_predictions(source: Any, target: Any) -> None:
    if len(source.inputs) != 1:
        return  # publishing refuses these anyway (peers train single-input models)
    shape = [int(d) if d is not None else 1 for d in source.inputs[0].shape[1:]]
    x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    want = np.asarray(source(x, training=False))
    got = np.asarray(target(x, training=False))
    if want.shape != got.shape or not np.allclose(want, got, rtol=1e-5, atol=1e-6):
        raise ConversionError("the tf_keras rebuild of the Keras 3 model predicts differently; "
                              "save the model with tf_keras (TF_USE_LEGACY_KERAS=1) instead")  # fmt: skip
