"""`swarm export` writes a model.h5 that `fit` continues from, in tf_keras and in Keras 3.

The exported model is compiled with the swarm's training configuration (here SGD at 0.05,
the manifest's loss and accuracy), not a default; a source that carries none (a checkpoint
written before peers compiled their models) gets the manifest defaults and export.json says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from publish_helpers import run_cli

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _fit_without_compile(h5: Path, optimizer: str, learning_rate: float) -> None:
    import keras
    import tf_keras

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4), dtype=np.float32), rng.integers(0, 3, 64)
    for load in (tf_keras.models.load_model, keras.saving.load_model):
        model = load(h5)
        assert type(model.optimizer).__name__.lower() == optimizer, load
        assert abs(float(np.asarray(model.optimizer.learning_rate)) - learning_rate) < 1e-7
        history = model.fit(x, y, epochs=3, verbose=0).history
        assert np.isfinite(history["loss"]).all() and set(history) == {"loss", "accuracy"}, history


async def test_export_of_a_join_link_carries_the_swarm_training_configuration(server: str, tmp_path: Path) -> None:
    code, out, err = await run_cli("publish", server, "--identity", str(tmp_path / "pub.key"), "--hidden", "8",
                                   "--input-size", "4", "--classes", "3", "--dataset", "none",
                                   "--optimizer", "sgd", "--learning-rate", "0.05")  # fmt: skip
    assert code == 0, err
    join_url = out.strip().splitlines()[-1].split(": ", 1)[1].strip()
    code, stdout, err = await run_cli("export", join_url, "--out", str(tmp_path / "e"))
    assert code == 0, err
    training = json.loads(stdout)["training"]
    assert training == {"from": "manifest", "optimizer": "sgd", "learning_rate": 0.05,
                        "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}  # fmt: skip
    _fit_without_compile(tmp_path / "e" / "model.h5", "sgd", 0.05)


async def test_a_checkpoint_without_training_configuration_gets_the_defaults_and_says_so(tmp_path: Path) -> None:
    import tf_keras

    (tmp_path / "old").mkdir()
    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "old" / "model.h5", save_format="h5")  # uncompiled, as peers saved before
    code, stdout, err = await run_cli("export", str(tmp_path / "old"), "--out", str(tmp_path / "e"))
    assert code == 0, err
    assert json.loads(stdout)["training"]["from"].startswith("default")
    _fit_without_compile(tmp_path / "e" / "model.h5", "adam", 0.001)
