"""Checkpoints: the model as .h5 and TF.js layers format plus a small state file.

Every file is written to a temporary name and renamed, and ``state.json`` (step, gossip
weight, model id) is renamed last, so a peer killed at any moment restarts from the last
complete checkpoint. A running peer holds ``.lock`` in its directory (``fcntl.flock``), so two
processes never write one checkpoint (two terminals with the default identity would share it).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_FILE = ".lock"


class CheckpointInUse(RuntimeError):
    """Another process holds this checkpoint directory."""


class CheckpointLock:
    """An exclusive ``flock`` on ``directory/.lock`` for as long as a peer uses the directory.

    The kernel releases it when the process ends, however it ends (a SIGKILLed peer's restart
    is never locked out); the file keeps the holder's pid for the error message.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 32).decode(errors="replace").strip() or "unknown"
            self.release()
            raise CheckpointInUse(
                f"checkpoint directory {directory} is in use by another peer process (pid {holder}); two peers "
                "must not share one. Stop the other peer, or give this one its own --identity KEY_FILE (the "
                "default checkpoint directory is per identity) or --checkpoint-dir DIR"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


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
