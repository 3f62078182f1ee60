"""``POST /api/prepare``: turn a publisher's model and data files into an unsigned draft.

The browser publish page cannot convert a Keras file or shard a CSV the way ``swarm publish``
does, so the server runs that same code for it, in a child process: ``ServerConfig.prepare_command``
(``swarm serve`` sets ``python -m apps.prepare``; the signaling package itself never imports
TensorFlow). The child gets the uploaded files in a private temporary directory and answers
with a JSON draft (see ``apps/prepare.py``) that the page signs with its own key and publishes
through ``POST /api/publish``. The server keeps nothing: the directory is removed when the
child exits, and the draft is not stored.

Bounds: the upload is limited by ``max_upload_bytes`` and the per-address upload rate, one
preparation runs at a time (another gets 503), the child is killed after
``prepare_timeout_s``, and uploaded file names are reduced to a safe base name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from protocols.signaling import ErrorCode

from .publishing import read_bounded
from .state import CONFIG, LIMITS, json_error

log = logging.getLogger("signaling")

PREPARING = web.AppKey("preparing", asyncio.Lock)
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".npz")
MAX_MODEL_FILES = 64  # model.json and its weight shards
OPTION_KEYS = {"hidden", "label_column", "test_fraction", "shards", "partition", "alpha", "classes_per_shard",
               "loss", "python_only", "seed"}  # fmt: skip
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(filename: str | None) -> str | None:
    """The base name of an uploaded file with anything but ``[A-Za-z0-9._-]`` replaced, or None
    when nothing usable is left (``..``, empty)."""
    base = unquote(filename or "").replace("\\", "/").rsplit("/", 1)[-1]  # clients percent-encode some names
    name = _SAFE_NAME.sub("_", base)[:128]
    return name if name.strip(".") else None


async def prepare(request: web.Request) -> web.Response:
    """Multipart: ``options`` (JSON), ``model`` parts (one .keras/.h5, or model.json and its weight
    files), at most one ``data`` part (.csv/.tsv/.txt/.npz). Answers the child's draft (200) or
    its refusal (400)."""
    cfg = request.app[CONFIG]
    if cfg.prepare_command is None:
        return json_error(501, "not_supported", "this server does not convert model or data files; run it with "
                          "`swarm serve`, or publish with `swarm publish` from your machine")  # fmt: skip
    refused = request.app[LIMITS].upload(request.remote or "unknown")
    if refused is not None:
        return json_error(429, ErrorCode.RATE_LIMITED, f"too many uploads: {refused}; try again later")
    lock = request.app[PREPARING]
    if lock.locked():
        return json_error(503, "busy", "another publication is being prepared on this server; try again in a minute")
    if not request.content_type.startswith("multipart/"):
        return json_error(400, "bad_request", "POST multipart/form-data with `options`, `model` and `data` parts")
    async with lock:
        with tempfile.TemporaryDirectory(prefix="prepare-") as tmp:
            work = Path(tmp)
            received = await _receive(request, work, cfg.max_upload_bytes)
            if isinstance(received, web.Response):
                return received
            received["max_bytes"] = cfg.max_upload_bytes
            (work / "request.json").write_text(json.dumps(received))
            return await _run_child(cfg.prepare_command, work, cfg.prepare_timeout_s)


async def _receive(request: web.Request, work: Path, budget: int) -> dict[str, Any] | web.Response:
    """Write the parts under ``work``; return the child's request, or the refusal."""
    reader = await request.multipart()
    options: dict[str, Any] = {}
    model_files: list[str] = []
    data_file: str | None = None
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            return json_error(400, "bad_request", "nested multipart bodies are not accepted")
        data = await read_bounded(part, budget - total)
        if data is None:
            return json_error(413, "too_large", f"upload exceeds {budget} bytes")
        total += len(data)
        if part.name == "options":
            try:
                options = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError):
                return json_error(400, "bad_request", "the `options` part is not JSON")
            if not isinstance(options, dict) or not set(options) <= OPTION_KEYS:
                return json_error(400, "bad_request", f"`options` must be an object with keys among {sorted(OPTION_KEYS)}")
            continue
        name = safe_name(part.filename)
        if part.name not in ("model", "data") or name is None:
            return json_error(400, "bad_request", f"unexpected part {part.name!r} (file name {part.filename!r})")
        if part.name == "data":
            if data_file is not None or not name.lower().endswith(DATA_SUFFIXES):
                return json_error(400, "bad_request", f"give one dataset file ending in {', '.join(DATA_SUFFIXES)}; got {name!r}")
            data_file = name
            (work / "data").mkdir()
            (work / "data" / name).write_bytes(data)
        else:
            if len(model_files) >= MAX_MODEL_FILES or name in model_files:
                return json_error(400, "bad_request", f"model files: at most {MAX_MODEL_FILES}, each name once ({name!r})")
            model_files.append(name)
            (work / "model").mkdir(exist_ok=True)
            (work / "model" / name).write_bytes(data)
    request_body = dict(options)
    if data_file is not None:
        request_body["data"] = str(work / "data" / data_file)
    if model_files:
        model = _model_path(work / "model", model_files)
        if isinstance(model, web.Response):
            return model
        request_body["model"] = model
    return request_body


def _model_path(directory: Path, names: list[str]) -> str | web.Response:
    """One Keras file, or the directory of a TF.js ``model.json`` with its weight files."""
    if "model.json" in names:
        return str(directory)
    if len(names) == 1 and names[0].lower().endswith(MODEL_SUFFIXES):
        return str(directory / names[0])
    return json_error(400, "bad_request", f"model files {names}: give one .keras or .h5 file, or a TF.js model.json "
                      "with its weight files (.bin)")  # fmt: skip


async def _run_child(command: list[str], work: Path, timeout_s: float) -> web.Response:
    out = work / "out.json"
    proc = await asyncio.create_subprocess_exec(
        *command, str(work / "request.json"), str(out), cwd=work, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        _kill(proc)
        await proc.wait()
        return json_error(504, "timeout", f"preparing the publication took longer than {timeout_s:g} s; "
                          "publish this model with `swarm publish` from your machine")  # fmt: skip
    if proc.returncode != 0 or not out.is_file():
        log.warning("prepare child exited %s: %s", proc.returncode, stderr.decode(errors="replace")[-2000:])
        return json_error(500, "internal", "the server could not prepare this publication (its log has the details); "
                          "try `swarm publish` from your machine")  # fmt: skip
    reply = json.loads(out.read_bytes())
    if "error" in reply:
        return json_error(400, "rejected", reply["error"])
    return web.json_response(reply)


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

