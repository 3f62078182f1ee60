"""Any published model: a CNN saved as .h5 is simulated with 8 peers (one live Trainer each) and learns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from research import sim
from research.config import ExperimentConfig


def _cnn(path: Path) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=(28, 28, 1)),
        tf_keras.layers.Conv2D(8, 3, activation="relu"),
        tf_keras.layers.MaxPooling2D(2),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.save(path)


@pytest.mark.timeout(600)
def test_a_cnn_from_an_h5_file_learns_with_8_simulated_peers(tmp_path: Path) -> None:
    _cnn(tmp_path / "cnn.h5")
    cfg = ExperimentConfig.model_validate({
        "name": "cnn", "model": {"source": str(tmp_path / "cnn.h5")}, "data": {"eval_examples": 300},
        "swarm": {"peers": 8, "local_steps": 10, "degree": 3}, "network": {"step_time_ms": 20.0},
        "budget": {"rounds": 6, "eval_every": 3},
    })  # fmt: skip
    result = sim.run(cfg, "gossip", 0)
    assert result.rows[0]["mean_acc"] < 0.3  # chance is 0.1
    assert result.rows[-1]["mean_acc"] > 0.6 and result.stats["exchanges"]["merged"] > 0
