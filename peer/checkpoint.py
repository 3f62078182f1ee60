"""Checkpoints: the model as .h5 and TF.js layers format plus a small state file.

Every file is written to a temporary name and renamed, and ``state.json`` (step, gossip
weight, model id) is renamed last, so a peer killed at any moment restarts from the last
complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CheckpointState:
    model_id: str
    step: int
    gossip_weight: float


def save(directory: Path, model: Any, state: CheckpointState) -> None:
    import tensorflowjs as tfjs

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".tmp-") as tmp:
        tmp_path = Path(tmp)
        model.save(tmp_path / "model.h5", save_format="h5")
        tfjs.converters.save_keras_model(model, tmp_path / "tfjs")
        os.replace(tmp_path / "model.h5", directory / "model.h5")
        if (directory / "tfjs").exists():
            shutil.rmtree(directory / "tfjs")
        os.replace(tmp_path / "tfjs", directory / "tfjs")
        (tmp_path / "state.json").write_text(json.dumps(state.__dict__))
        os.replace(tmp_path / "state.json", directory / "state.json")


def load_state(directory: Path, model_id: str) -> CheckpointState | None:
    """The saved state if it belongs to ``model_id`` (a new model never resumes an old one)."""
    path = directory / "state.json"
    if not path.is_file() or not (directory / "model.h5").is_file():
        return None
    state = CheckpointState(**json.loads(path.read_text()))
    return state if state.model_id == model_id else None


def load_weights(directory: Path) -> list[Any]:
    import tf_keras

    return list(tf_keras.models.load_model(directory / "model.h5", compile=False).get_weights())


def age_s(directory: Path) -> float:
    """Seconds since the last complete checkpoint was written (its state file is renamed last)."""
    import time

    return time.time() - (directory / "state.json").stat().st_mtime
