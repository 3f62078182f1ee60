"""Publishing: the signed manifest and its blobs in one bounded multipart upload, and what may be uploaded.

The store (``store.py``) checks signatures, digests and ownership of the swarm id; this module
bounds the upload and checks that the dataset fits the model (``_dataset_misfit``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from aiohttp import BodyPartReader, web

from protocols.crypto import sha256
from protocols.dataset import decode_shard
from protocols.errors import ProtocolError
from protocols.manifest import MAX_MANIFEST_BYTES, parse_envelope
from protocols.signaling import ErrorCode

from .catalog import topology_layers, join_url
from .state import CONFIG, LIMITS, STORE, json_error
from .store import PublishError

log = logging.getLogger("signaling")


async def publish(request: web.Request) -> web.Response:
    """Multipart: field ``manifest`` (signed envelope JSON), then ``blob`` parts named by digest."""
    cfg = request.app[CONFIG]
    refused = request.app[LIMITS].upload(request.remote or "unknown")
    if refused is not None:
        return json_error(429, ErrorCode.RATE_LIMITED, f"too many uploads: {refused}; try again later")
    if not request.content_type.startswith("multipart/"):
        return json_error(400, "bad_request", "POST multipart/form-data with a `manifest` field and `blob` parts")
    reader = await request.multipart()
    envelope: bytes | None = None
    blobs: dict[str, bytes] = {}
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            return json_error(400, "bad_request", "nested multipart bodies are not accepted")
        data = await read_bounded(part, cfg.max_upload_bytes - total)
        total += len(data) if data is not None else cfg.max_upload_bytes + 1
        if data is None or total > cfg.max_upload_bytes:
            return json_error(413, "too_large", f"upload exceeds {cfg.max_upload_bytes} bytes; nothing stored")
        if part.name == "manifest":
            envelope = bytes(data)
        elif part.name == "blob":
            blobs[part.filename or ""] = bytes(data)
        else:
            return json_error(400, "bad_request", f"unexpected form field {part.name!r}")
    if envelope is None:
        return json_error(400, "bad_request", "the `manifest` field is missing")
    misfit = _dataset_misfit(envelope, blobs)
    if misfit is not None:
        return json_error(400, "rejected", f"{misfit}; nothing stored")
    try:
        signed, manifest = request.app[STORE].publish(envelope, blobs, cfg.max_swarms)
    except PublishError as exc:
        return json_error(400, "rejected", f"{exc}; nothing stored")
    log.info("published swarm %s (%s), model %s", manifest.swarm_id[:8], manifest.name, signed.model_id[:12])
    return web.json_response({"swarm_id": manifest.swarm_id, "model_id": signed.model_id,
                              "join_url": join_url(request, manifest.swarm_id)}, status=201)  # fmt: skip


async def read_bounded(part: BodyPartReader, budget: int) -> bytes | None:
    """Read one part, or None as soon as it exceeds ``budget`` bytes (never buffers more)."""
    buf = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        buf += chunk
        if len(buf) > budget:
            return None
    return bytes(buf)


def _input_shape(topology: dict[str, Any]) -> list[int] | None:
    layers = topology_layers(topology)
    cfg = layers[0].get("config", {}) if layers else {}
    shape = cfg.get("batch_input_shape") or cfg.get("batchInputShape")
    return list(shape[1:]) if isinstance(shape, list) and len(shape) > 1 else None


def _dataset_misfit(envelope: bytes, blobs: dict[str, bytes]) -> str | None:
    """Why the uploaded dataset does not fit the model, or None.

    The store checks signatures and digests; this checks meaning: every uploaded shard holds
    examples of the manifest's ``input_shape`` with labels below ``num_classes``, and that shape
    is the model's input when the topology states it. Manifests that do not parse are left to
    the store (which names the fault).
    """
    try:
        manifest = parse_envelope(envelope).verify()
    except ProtocolError:
        return None
    ds = manifest.dataset
    if ds is None:
        return None
    model_in = _input_shape(manifest.model.topology)
    if model_in is not None and model_in != ds.input_shape and math.prod(model_in) != math.prod(ds.input_shape):
        return f"dataset input shape {ds.input_shape} does not fit the model's input {model_in}"
    for ref in [*ds.train_shards, ds.test]:
        data = blobs.get(ref.digest)
        if data is None or len(data) != ref.size or sha256(data).hex() != ref.digest:
            continue  # absent (already stored) or corrupt: the store refuses the latter by name
        try:
            x, y = decode_shard(data)
        except ProtocolError as exc:
            return f"dataset shard {ref.digest[:12]}… is not a shard: {exc}"
        if list(x.shape[1:]) != ds.input_shape or len(y) != ref.num_samples:
            return f"dataset shard {ref.digest[:12]}… holds {len(y)} examples of shape {list(x.shape[1:])}, manifest says {ref.num_samples} of {ds.input_shape}"
        if (y.dtype.kind == "f") != (ds.num_classes is None):  # float targets exactly when the task is regression
            return (f"dataset shard {ref.digest[:12]}… holds {'float targets' if y.dtype.kind == 'f' else 'class labels'}, "
                    f"but the manifest's dataset {'is regression' if ds.num_classes is None else 'has classes'}")
        if len(y) and ds.num_classes is not None and int(y.max()) >= ds.num_classes:
            return f"dataset shard {ref.digest[:12]}… has label {int(y.max())}, the model has {ds.num_classes} classes"
    return None


async def publish_limits(request: web.Request) -> web.Response:
    """What a publisher may upload (clients check before sending)."""
    cfg = request.app[CONFIG]
    return web.json_response({"max_upload_bytes": cfg.max_upload_bytes, "max_manifest_bytes": MAX_MANIFEST_BYTES,
                              "max_swarms": cfg.max_swarms, "swarms": len(request.app[STORE].swarms())})  # fmt: skip


async def list_datasets(request: web.Request) -> web.Response:
    """Datasets already hosted here (from published manifests), for the no-code publisher to reuse.

    A new manifest may reference these shard blobs without uploading them again; the store
    accepts referenced blobs it already holds. One entry per distinct test shard.
    """
    seen: dict[str, dict[str, Any]] = {}
    for _, m in request.app[STORE].swarms().values():
        ds = m.dataset
        if ds is not None and ds.test.digest not in seen:
            seen[ds.test.digest] = {"spec": ds.model_dump(mode="json"), "from_swarm": m.swarm_id, "swarm_name": m.name}
    return web.json_response({"datasets": sorted(seen.values(), key=lambda d: d["spec"]["name"])})

