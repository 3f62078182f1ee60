"""Shared by the publish/export tests: model and dataset files, running the CLI, store snapshots."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (relative path -> sha256): equal snapshots mean nothing was stored."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}  # fmt: skip


async def run_cli(*argv: str) -> tuple[int, str, str]:
    """``swarm ARGV`` in-process (in a worker thread, so this loop keeps serving); (code, stdout, stderr)."""
    import contextlib
    import io

    from apps.cli import main

    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(list(argv))

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


def mnist_subset_npz(path: Path, per_class: int = 150, image_shape: tuple[int, ...] = (784,)) -> Path:
    """Real MNIST digits, ``per_class`` of each, as uint8 x of ``image_shape`` and uint8 y."""
    from apps.datasets import load_mnist

    x, y = load_mnist()
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    np.savez(path, x=x[idx].reshape((len(idx), *image_shape)), y=y[idx])
    return path


def blobs_csv(path: Path, n: int = 600, features: int = 8, classes: int = 3, seed: int = 0, spread: float = 2.0) -> Path:
    """Gaussian blobs, one per class, written as CSV with a header and a ``label`` column in the middle."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, spread, (classes, features))
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(0, 1.0, (n, features))
    cols = [f"f{i}" for i in range(features)]
    header = cols[:3] + ["label"] + cols[3:]
    with path.open("w") as f:
        f.write(",".join(header) + "\n")
        for row, label in zip(x, y, strict=True):
            cells = [f"{v:.5f}" for v in row]
            f.write(",".join(cells[:3] + [str(label)] + cells[3:]) + "\n")
    return path


def keras_mlp(input_shape: tuple[int, ...], classes: int, hidden: int = 32, seed: int = 0) -> Any:
    import tensorflow as tf
    import tf_keras

    tf.random.set_seed(seed)
    return tf_keras.Sequential([
        tf_keras.layers.Input(shape=input_shape), tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(hidden, activation="relu"), tf_keras.layers.Dense(classes, activation="softmax"),
    ])  # fmt: skip


def keras_functional(features: int, classes: int, seed: int = 0) -> Any:
    import tensorflow as tf
    import tf_keras

    tf.random.set_seed(seed)
    inp = tf_keras.Input(shape=(features,))
    h = tf_keras.layers.Dense(16, activation="tanh")(inp)
    out = tf_keras.layers.Dense(classes, activation="softmax")(tf_keras.layers.Concatenate()([h, inp]))
    return tf_keras.Model(inp, out)


def save_tfjs(model: Any, directory: Path) -> Path:
    import tensorflowjs as tfjs

    tfjs.converters.save_keras_model(model, directory)
    return directory


async def open_publish_page(browser: Any, server: str) -> tuple[Any, list[str]]:
    """``/peer/publish.html`` of ``server`` in a new page, ready; and the list its page errors land in."""
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server}/peer/publish.html")
    await page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    return page, errors
