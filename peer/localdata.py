"""A contributor's own data (``swarm join --data FILE``), checked as published shards are.

The file is read by ``peer/datafile.py`` (the publisher's reader: the same CSV and ``.npz``
rules) and then fitted to the swarm: examples of the model's input shape, features scaled
exactly as the swarm's shards are, labels turned into this swarm's class indices (by name
when the manifest names its classes) or, for regression swarms, float32 targets. Everything
wrong is a ``ValueError`` that names the cell and the fix, before any TensorFlow code runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from protocols.dataset import features_float32
from protocols.manifest import Manifest

from .datafile import DataFile, pixel_values, read_data_file, swarm_classes

log = logging.getLogger("peer.data")

Split = tuple[np.ndarray, np.ndarray]


def model_input_shape(manifest: Manifest) -> list[int] | None:
    """The input shape of one example as the topology's first layer states it (None if it does not)."""
    topology = manifest.model.topology
    inner = topology.get("model_config", topology)
    layers = inner.get("config", {}).get("layers", []) if isinstance(inner, dict) else []
    cfg = layers[0].get("config", {}) if layers and isinstance(layers[0], dict) else {}
    shape = cfg.get("batch_input_shape") or cfg.get("batchInputShape")
    return [int(d) for d in shape[1:]] if isinstance(shape, list) and len(shape) > 1 and None not in shape[1:] else None


def swarm_num_classes(manifest: Manifest) -> int | None:
    """Classes of a classification swarm (binary: 2, whatever the output width); None for regression."""
    if manifest.training.is_regression:
        return None
    if manifest.dataset is not None and manifest.dataset.num_classes is not None:
        return manifest.dataset.num_classes
    if manifest.training.loss == "binary_crossentropy":
        return 2
    return int(manifest.model.weights[-1].shape[-1])


def load_local_data(path: Path, manifest: Manifest, pixels: bool | None = None) -> Split:
    """The training examples of a contributor's file (see ``load_local_split``)."""
    return load_local_split(path, manifest, pixels)[0]


def load_local_split(path: Path, manifest: Manifest, pixels: bool | None = None) -> tuple[Split, Split | None]:
    """(train, test or None) of a contributor's ``.npz`` (x, y or x_train, y_train[, x_test, y_test])
    or ``.csv`` (the label column by name, or the first or last column when only one of them holds
    this swarm's labels).

    ``pixels``: the swarm's features are uint8 pixel values (its shards are uint8), so whole
    numbers 0..255 here are scaled by 1/255 as they are; None (no published dataset): decided
    from this file. uint8 arrays are always scaled, exactly as ``protocols.dataset`` scales shards.
    """
    classes = swarm_num_classes(manifest)
    names = manifest.dataset.class_names if manifest.dataset is not None else None
    data = read_data_file(path, None, _label_chooser(classes, names))
    for notice in data.notices:
        log.warning("%s", notice)
    want = manifest.dataset.input_shape if manifest.dataset is not None else model_input_shape(manifest)
    parts = [data] + ([data.test] if data.test is not None else [])
    if pixels is None:
        pixels = all(pixel_values(p.x) for p in parts)
    out = [(_features(path, p.x, want, pixels), _targets(p, manifest, classes, names)) for p in parts]
    return out[0], (out[1] if len(out) > 1 else None)


def _features(path: Path, x: np.ndarray, want: list[int] | None, pixels: bool) -> np.ndarray:
    if x.dtype.kind not in "biuf" or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{path}: x must be a non-empty numeric array of examples (n, ...), got {x.dtype} of shape {x.shape}")
    if want is not None and list(x.shape[1:]) != want:
        if math.prod(x.shape[1:]) != math.prod(want):
            raise ValueError(f"{path}: examples of shape {list(x.shape[1:])} do not fit the model's input {want}")
        x = x.reshape((len(x), *want))  # the same values, e.g. 28x28 images for a 784-input model
    if pixels and x.dtype != np.uint8 and pixel_values(x):
        x = x.astype(np.uint8)  # scaled below exactly as the swarm's uint8 shards
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: refused below
        features = features_float32(x)
    bad = ~np.isfinite(features)
    if bad.any():
        rows = np.unique(np.nonzero(bad.reshape(len(features), -1))[0])
        raise ValueError(f"{path}: {int(bad.sum())} features are NaN or infinite (or beyond float32's range), "
                         f"in {len(rows)} examples (first: row {int(rows[0])}); drop or impute them before training")  # fmt: skip
    return features


def _targets(data: DataFile, manifest: Manifest, classes: int | None, names: list[str] | None) -> np.ndarray:
    if classes is None or _multi_label(manifest, data.y):
        return regression_targets(data, manifest)
    return swarm_classes(data, classes, names)


def _multi_label(manifest: Manifest, y: np.ndarray) -> bool:
    return manifest.training.loss == "binary_crossentropy" and y.ndim == 2 and y.shape[1] > 1


def regression_targets(data: DataFile, manifest: Manifest | None = None) -> np.ndarray:
    """Float32 targets (N, k): numbers only, finite, as many per example as the model outputs."""
    y = data.y
    if y.dtype.kind not in "biuf":
        raise data.refuse(0, f"{str(y[0])!r} is not a number; this swarm trains on numeric targets (regression)")
    y = y.reshape(len(y), -1).astype(np.float64)
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~np.isfinite(y.astype(np.float32)).all(axis=1))
    if len(bad):
        raise data.refuse(int(bad[0]), "the target is NaN or infinite (or beyond float32's range); drop or impute it")
    if manifest is not None:
        width = int(manifest.model.weights[-1].shape[-1])
        if y.shape[1] != width:
            raise ValueError(f"{data.path}: {data.label_desc} has {y.shape[1]} targets per example, the model outputs {width}")
    return y.astype(np.float32)


def _label_chooser(classes: int | None, names: list[str] | None) -> Callable[[object, list[int]], int | None]:
    """For a CSV with no column named label: the first or last column, if only it holds this
    swarm's labels (varied ones preferred: a constant corner pixel 0 is no label column)."""

    def fits(column: object) -> bool:
        values = column.to_numpy()  # type: ignore[attr-defined]
        if names is not None:
            text = [str(int(v)) if isinstance(v, (int, float, np.number)) and float(v).is_integer() else str(v).strip()
                    for v in values]  # fmt: skip
            return set(text) <= set(names)
        if classes is None or values.dtype.kind not in "iuf":
            return False
        return bool(np.all(values == np.round(values)) and values.min() >= 0 and values.max() < classes)

    def choose(frame: object, candidates: list[int]) -> int | None:
        if classes is None:  # regression: the targets are the last column unless a header says otherwise
            return candidates[-1]
        ok = [c for c in dict.fromkeys(candidates) if fits(frame.iloc[:, c])]  # type: ignore[attr-defined]
        varied = [c for c in ok if frame.iloc[:, c].nunique() > 1]  # type: ignore[attr-defined]
        pick = varied or ok
        return pick[0] if len(pick) == 1 else None

    return choose

