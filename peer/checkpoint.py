"""Checkpoints: the model as .h5 and TF.js layers format plus a small state file, as one unit.

A checkpoint is a directory ``ckpt-<n>/`` holding ``model.h5``, ``tfjs/`` and ``state.json``
(step, gossip weight, model id). It is written complete under a temporary name, renamed, and
then made current by replacing the symlink ``current`` (``rename(2)`` is atomic), so a peer
killed at any moment restarts from one whole checkpoint: never new weights with an old step.
``model.h5``, ``tfjs`` and ``state.json`` at the top are symlinks through ``current`` for
tools that open those paths; readers in this project resolve ``current`` once
(``resolve``) and read everything from there. The previous checkpoint is kept until the
next one is current. A directory of the older layout (plain files at the top) still loads.
A running peer holds ``.lock`` in its directory (``fcntl.flock``), so two
processes never write one checkpoint (two terminals with the default identity would share it).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
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


POINTER = "current"
KEEP = 2  # checkpoints kept: the current one and the one before (a reader may still be in it)
_FILES = ("model.h5", "tfjs", "state.json")


def resolve(directory: Path) -> Path:
    """The directory holding the current checkpoint's files: ``current``'s target, or ``directory``
    itself for the older layout (or when there is no checkpoint yet)."""
    pointer = directory / POINTER
    return pointer.resolve() if pointer.is_symlink() and pointer.resolve().is_dir() else directory


def _fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` and the directories themselves, so a rename never
    publishes names whose data a power loss would lose."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(Path(root) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(directory: Path, model: Any, state: CheckpointState) -> Path:
    """Write ``model`` (tf_keras) and ``state`` as a new checkpoint and make it current; return its directory."""
    import tensorflowjs as tfjs

    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".tmp-"))
    try:
        model.save(tmp / "model.h5", save_format="h5")
        tfjs.converters.save_keras_model(model, tmp / "tfjs")
        (tmp / "state.json").write_text(json.dumps(state.__dict__))
        _fsync_tree(tmp)
        final = directory / f"ckpt-{time.time_ns()}"
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    link = directory / f".{POINTER}-{time.time_ns()}"
    os.symlink(final.name, link)
    os.replace(link, directory / POINTER)  # the one atomic switch
    _fsync_dir(directory)
    _link_top_level(directory)
    _prune(directory)
    return final


def _link_top_level(directory: Path) -> None:
    """``model.h5``, ``tfjs``, ``state.json`` at the top: symlinks through ``current`` (once)."""
    for name in _FILES:
        path = directory / name
        if path.is_symlink():
            continue
        if path.is_dir():
            shutil.rmtree(path)  # the older layout's copy; ``current`` already holds a whole checkpoint
        elif path.exists():
            path.unlink()
        link = directory / f".{name}-{time.time_ns()}"
        os.symlink(f"{POINTER}/{name}", link)
        os.replace(link, path)


def _prune(directory: Path) -> None:
    """Remove checkpoints older than the last ``KEEP``, and temporary names a killed writer left."""
    current = resolve(directory).name
    done = sorted((p for p in directory.glob("ckpt-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    for old in done[:-KEEP]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    for pattern in (".tmp-*", f".{POINTER}-*", *(f".{name}-*" for name in _FILES)):
        for path in directory.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def load_state(directory: Path, model_id: str) -> CheckpointState | None:
    """The saved state if it belongs to ``model_id`` (a new model never resumes an old one)."""
    where = resolve(directory)
    path = where / "state.json"
    if not path.is_file() or not (where / "model.h5").is_file():
        return None
    state = CheckpointState(**json.loads(path.read_text()))
    return state if state.model_id == model_id else None


def load_weights(directory: Path) -> list[Any]:
    import tf_keras

    return list(tf_keras.models.load_model(resolve(directory) / "model.h5", compile=False).get_weights())


def age_s(directory: Path) -> float:
    """Seconds since the current checkpoint was written."""
    return time.time() - (resolve(directory) / "state.json").stat().st_mtime
