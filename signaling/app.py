"""The aiohttp application: WebSocket signaling, publish/content routes, health.

Handlers are plain functions over typed app state; every message from a client is parsed by
``protocols.signaling`` and a bad one gets an ``error`` reply while the server keeps serving.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import math
import os
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, WSMsgType, web
from pydantic import BaseModel

from protocols import PROTOCOL_VERSION
from protocols.crypto import join_message, peer_id_of, sha256, verify
from protocols.dataset import decode_shard
from protocols.errors import ProtocolError, SignatureError
from protocols.manifest import MAX_MANIFEST_BYTES, Manifest, parse_envelope
from protocols.signaling import (
    Answer,
    Candidate,
    Challenge,
    Error,
    ErrorCode,
    Join,
    Leave,
    Offer,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Report,
    Welcome,
    dump,
    parse_client_message,
)

from .config import ServerConfig
from .ice import welcome_ice_servers
from .stun import StunServer, start_stun
from .pages import swarm_index
from .limits import AddressLimits
from .registry import Member, Registry, TokenBucket
from .store import ContentStore, PublishError

log = logging.getLogger("signaling")

SAME_KEY_PROBE_S = 2.0  # a joined socket that does not answer a ping within this long is replaced
PONG = web.ResponseKey("pong", asyncio.Future)  # a socket's own state: the future a liveness probe waits on
CONFIG = web.AppKey("config", ServerConfig)
STORE = web.AppKey("store", ContentStore)
REGISTRY = web.AppKey("registry", Registry)
LIMITS = web.AppKey("limits", AddressLimits)
STUN = web.AppKey("stun", StunServer)
STUN_PORT = web.AppKey("stun_port", int)


async def _send(ws: web.WebSocketResponse, message: BaseModel) -> None:
    if not ws.closed:
        try:
            await ws.send_str(dump(message))
        except (ConnectionError, RuntimeError):
            pass  # the peer went away; its own handler cleans up


def _error(code: str, message: str) -> Error:
    return Error(code=code, message=message)


async def _await_join(ws: web.WebSocketResponse, cfg: ServerConfig) -> Join | None:
    """Receive messages until a valid Join arrives or the join timeout passes."""
    async with asyncio.timeout(cfg.join_timeout_s):
        async for msg in ws:
            if await _control(ws, msg):
                continue
            if msg.type != WSMsgType.TEXT:
                await _send(ws, _error(ErrorCode.MALFORMED, "send JSON text messages"))
                continue
            try:
                parsed = parse_client_message(msg.data) if len(msg.data) <= cfg.max_message_bytes else None
            except ProtocolError as exc:
                await _send(ws, _error(ErrorCode.MALFORMED, str(exc)))
                continue
            if parsed is None:
                await _send(ws, _error(ErrorCode.TOO_LARGE, f"messages are limited to {cfg.max_message_bytes} bytes"))
            elif isinstance(parsed, Join):
                return parsed
            elif isinstance(parsed, Ping):
                await _send(ws, Pong())
            else:
                await _send(ws, _error(ErrorCode.NOT_JOINED, f"join a swarm before sending {parsed.type}"))
    return None


def _check_join(request: web.Request, join: Join, nonce: bytes) -> tuple[Error | None, int]:
    """Validate a join; return (error or None, number of dataset shards)."""
    try:
        verify(bytes.fromhex(join.public_key), bytes.fromhex(join.signature), join_message(nonce, join.swarm_id))
    except SignatureError:
        return _error(ErrorCode.BAD_PROOF, "the join signature does not verify against the challenge nonce"), 0
    published = request.app[STORE].manifest(join.swarm_id)
    if published is None:
        return _error(ErrorCode.UNKNOWN_SWARM, f"no swarm {join.swarm_id} is published on this server"), 0
    room = request.app[REGISTRY].rooms.get(join.swarm_id)
    cfg = request.app[CONFIG]
    # a key that is already a member replaces its old socket (see _register): it takes no new place
    rejoining = room is not None and peer_id_of(bytes.fromhex(join.public_key)) in room.members
    if room is not None and not rejoining and len(room.members) >= cfg.max_peers_per_swarm:
        return _error(ErrorCode.SWARM_FULL, f"swarm has its limit of {cfg.max_peers_per_swarm} peers"), 0
    dataset = published[1].dataset
    return None, len(dataset.train_shards) if dataset else 1


async def _control(ws: web.WebSocketResponse, msg: Any) -> bool:
    """Answer a WebSocket ping, note a pong (liveness probes wait for it); False for anything else.

    The server's sockets run with ``autoping=False`` so that pongs reach us: aiohttp would
    swallow them, and a probe must see the answer of the socket it pinged.
    """
    if msg.type == WSMsgType.PING:
        try:
            await ws.pong(msg.data)
        except (ConnectionError, RuntimeError):
            pass  # the peer went away; its handler cleans up
        return True
    if msg.type == WSMsgType.PONG:
        pong = ws.get(PONG)
        if pong is not None and not pong.done():
            pong.set_result(None)
        return True
    return False


async def _answers(ws: web.WebSocketResponse, timeout: float) -> bool:
    """Whether a joined socket answers a WebSocket ping within ``timeout`` (a live peer's does at once)."""
    if ws.closed:
        return False
    pong: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ws[PONG] = pong
    try:
        async with asyncio.timeout(timeout):
            await ws.ping(b"same-key probe")
            await pong
        return True
    except (TimeoutError, ConnectionError, RuntimeError):
        return False
    finally:
        ws.pop(PONG, None)


async def _register(request: web.Request, ws: web.WebSocketResponse, join: Join, shards: int) -> Member | None:
    """Add the proven newcomer to its swarm; None (and an ``already_joined`` error) if its key is taken.

    A key is one peer. A second connection with a key that is already joined replaces the old
    socket only if that socket is dead: closed, or silent to a ping for ``SAME_KEY_PROBE_S``
    (a peer reconnecting over its own stale socket gets in). A live one keeps its place and the
    newcomer is refused: two processes sharing one identity would otherwise replace each other
    on every reconnect, forever.
    """
    registry, store = request.app[REGISTRY], request.app[STORE]
    info = PeerInfo(peer_id=peer_id_of(bytes.fromhex(join.public_key)), public_key=join.public_key, client=join.client)
    old = registry.room(join.swarm_id).members.get(info.peer_id)
    if old is not None:
        alive = await _answers(old.ws, SAME_KEY_PROBE_S)
        current = registry.rooms.get(join.swarm_id)
        holder = current.members.get(info.peer_id) if current else None
        if alive or (holder is not None and holder is not old):  # live, or another newcomer took the place meanwhile
            log.info("refused a second connection for peer %s in swarm %s: its key is joined and answering",
                     info.peer_id[:8], join.swarm_id[:8])  # fmt: skip
            await _send(ws, _error(ErrorCode.ALREADY_JOINED,
                                   f"peer {info.peer_id} is already joined to this swarm from a live connection; one key is "
                                   "one peer: run a second peer with its own identity (swarm join --identity FILE; a "
                                   "browser tab makes its own key), or stop the other one"))  # fmt: skip
            return None
        if holder is old:  # dead: the proven newcomer replaces the stale socket
            registry.remove(join.swarm_id, info.peer_id, old.ws)
            await old.ws.close(message=b"replaced by a new connection")
    # looked up after the awaits: if the last other member left meanwhile, the room was deleted
    # and the newcomer must not be put into that orphan
    room = registry.room(join.swarm_id)
    member = Member(info=info, ws=ws, shard=room.next_shard(shards))
    others = list(room.members.values())
    room.members[info.peer_id] = member
    registry.board(join.swarm_id).joined(info)  # from now on it may vouch and be vouched for
    manifest = store.manifest(join.swarm_id)
    ice = _ice_servers(request, manifest[1].ice_servers if manifest else [], info.peer_id)
    await _send(ws, Welcome(peer_id=info.peer_id, swarm_id=join.swarm_id,
                            peers=[m.info for m in others], shard=member.shard, ice_servers=ice))  # fmt: skip
    for other in others:
        await _send(other.ws, PeerJoined(peer=info))
    log.info("peer %s joined swarm %s (shard %d, %d peers)", info.peer_id[:8], join.swarm_id[:8], member.shard, len(room.members))
    return member


def _ice_servers(request: web.Request, listed: list[Any], peer_id: str) -> list[Any]:
    """The manifest's ICE servers (or our STUN server) plus TURN credentials issued to ``peer_id``."""
    cfg = request.app[CONFIG]
    stun_port = request.app.get(STUN_PORT)
    host = cfg.stun_host or (urlsplit(cfg.public_url).hostname if cfg.public_url else None) or request.url.host
    return welcome_ice_servers(listed, stun_host=host, stun_port=stun_port, turn_urls=cfg.turn_urls,
                               turn_secret=cfg.turn_secret, peer_id=peer_id, turn_ttl_s=cfg.turn_ttl_s)  # fmt: skip


async def _relay(request: web.Request, swarm_id: str, sender: str, msg: Offer | Answer | Candidate) -> Error | None:
    room = request.app[REGISTRY].rooms.get(swarm_id)
    target = room.members.get(msg.to) if room else None
    if target is None:
        return _error(ErrorCode.UNKNOWN_PEER, f"peer {msg.to} is not in this swarm")
    await _send(target.ws, msg.model_copy(update={"from_": sender}))
    return None


async def _serve_member(request: web.Request, ws: web.WebSocketResponse, member: Member, swarm_id: str) -> None:
    cfg = request.app[CONFIG]
    bucket = TokenBucket(cfg.messages_per_second, cfg.burst)
    loop = asyncio.get_running_loop()
    idle_at = loop.time() + cfg.idle_timeout_s
    while True:
        try:
            async with asyncio.timeout_at(idle_at):
                msg = await ws.receive()
        except TimeoutError:
            await ws.close(message=b"idle timeout")
            return
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return
        if await _control(ws, msg):
            continue  # WebSocket pings and pongs are no application activity
        idle_at = loop.time() + cfg.idle_timeout_s
        if not bucket.take():
            await _send(ws, _error(ErrorCode.RATE_LIMITED, "slow down: message rate limit exceeded"))
            continue
        if msg.type != WSMsgType.TEXT:
            await _send(ws, _error(ErrorCode.MALFORMED, "send JSON text messages"))
            continue
        if len(msg.data) > cfg.max_message_bytes:
            await _send(ws, _error(ErrorCode.TOO_LARGE, f"messages are limited to {cfg.max_message_bytes} bytes"))
            continue
        try:
            parsed = parse_client_message(msg.data)
        except ProtocolError as exc:
            await _send(ws, _error(ErrorCode.MALFORMED, str(exc)))
            continue
        if isinstance(parsed, Leave):
            return
        if isinstance(parsed, Ping):
            await _send(ws, Pong())
        elif isinstance(parsed, Report):
            if not request.app[REGISTRY].board(swarm_id).update(member.info, parsed):
                await _send(ws, _error(ErrorCode.RATE_LIMITED, "reports are limited to one per 2 s (burst 4); this one "
                                                               "was dropped: send its receipts again"))  # fmt: skip
        elif isinstance(parsed, Join):
            await _send(ws, _error(ErrorCode.ALREADY_JOINED, "this connection has already joined"))
        else:
            error = await _relay(request, swarm_id, member.info.peer_id, parsed)
            if error is not None:
                await _send(ws, error)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    address = request.remote or "unknown"
    refused = request.app[LIMITS].connect(address)
    if refused is not None:
        return _json_error(429, ErrorCode.RATE_LIMITED, f"too many connections from {address}: {refused}")
    try:
        return await _ws_session(request)
    finally:
        request.app[LIMITS].disconnect(address)


async def _ws_session(request: web.Request) -> web.WebSocketResponse:
    cfg = request.app[CONFIG]
    ws = web.WebSocketResponse(heartbeat=cfg.heartbeat_s, max_msg_size=cfg.max_frame_bytes, autoping=False)
    await ws.prepare(request)
    nonce = secrets.token_bytes(32)
    await _send(ws, Challenge(nonce=nonce.hex()))
    try:
        join = await _await_join(ws, cfg)
    except TimeoutError:
        join = None
    if join is None:
        await _send(ws, _error(ErrorCode.NOT_JOINED, "no valid join before the timeout"))
        await ws.close()
        return ws
    error, shards = _check_join(request, join, nonce)
    if error is not None:
        await _send(ws, error)
        await ws.close()
        return ws
    member = await _register(request, ws, join, shards)
    if member is None:
        await ws.close()
        return ws
    try:
        await _serve_member(request, ws, member, join.swarm_id)
    finally:
        await _leave(request, join.swarm_id, member, ws)
    return ws


async def _leave(request: web.Request, swarm_id: str, member: Member, ws: web.WebSocketResponse) -> None:
    registry = request.app[REGISTRY]
    if registry.remove(swarm_id, member.info.peer_id, ws):
        room = registry.rooms.get(swarm_id)
        for other in list(room.members.values()) if room else []:
            await _send(other.ws, PeerLeft(peer_id=member.info.peer_id))
        log.info("peer %s left swarm %s", member.info.peer_id[:8], swarm_id[:8])
    if not ws.closed:
        await ws.close()


async def health(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    stun = request.app.get(STUN)
    return web.json_response({"status": "ok", "swarms": len(request.app[STORE].swarms()),
                              "peers": registry.peer_count(), "protocol": PROTOCOL_VERSION,
                              "refused": dict(request.app[LIMITS].refused),
                              "stun": dict(stun.counts) if stun is not None else None})  # fmt: skip


def join_url(request: web.Request, swarm_id: str) -> str:
    base = request.app[CONFIG].public_url or f"{request.scheme}://{request.host}"
    return f"{base.rstrip('/')}/s/{swarm_id}"


async def publish(request: web.Request) -> web.Response:
    """Multipart: field ``manifest`` (signed envelope JSON), then ``blob`` parts named by digest."""
    cfg = request.app[CONFIG]
    refused = request.app[LIMITS].upload(request.remote or "unknown")
    if refused is not None:
        return _json_error(429, ErrorCode.RATE_LIMITED, f"too many uploads: {refused}; try again later")
    if not request.content_type.startswith("multipart/"):
        return _json_error(400, "bad_request", "POST multipart/form-data with a `manifest` field and `blob` parts")
    reader = await request.multipart()
    envelope: bytes | None = None
    blobs: dict[str, bytes] = {}
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            return _json_error(400, "bad_request", "nested multipart bodies are not accepted")
        data = await _read_bounded(part, cfg.max_upload_bytes - total)
        total += len(data) if data is not None else cfg.max_upload_bytes + 1
        if data is None or total > cfg.max_upload_bytes:
            return _json_error(413, "too_large", f"upload exceeds {cfg.max_upload_bytes} bytes; nothing stored")
        if part.name == "manifest":
            envelope = bytes(data)
        elif part.name == "blob":
            blobs[part.filename or ""] = bytes(data)
        else:
            return _json_error(400, "bad_request", f"unexpected form field {part.name!r}")
    if envelope is None:
        return _json_error(400, "bad_request", "the `manifest` field is missing")
    misfit = _dataset_misfit(envelope, blobs)
    if misfit is not None:
        return _json_error(400, "rejected", f"{misfit}; nothing stored")
    try:
        signed, manifest = request.app[STORE].publish(envelope, blobs, cfg.max_swarms)
    except PublishError as exc:
        return _json_error(400, "rejected", f"{exc}; nothing stored")
    log.info("published swarm %s (%s), model %s", manifest.swarm_id[:8], manifest.name, signed.model_id[:12])
    return web.json_response({"swarm_id": manifest.swarm_id, "model_id": signed.model_id,
                              "join_url": join_url(request, manifest.swarm_id)}, status=201)  # fmt: skip


async def _read_bounded(part: BodyPartReader, budget: int) -> bytes | None:
    """Read one part, or None as soon as it exceeds ``budget`` bytes (never buffers more)."""
    buf = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        buf += chunk
        if len(buf) > budget:
            return None
    return bytes(buf)


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def list_swarms(request: web.Request) -> web.Response:
    """Published swarms; ``?details=1`` adds the index page's columns (model, dataset, best_accuracy)."""
    keys = ("swarm_id", "name", "model_id", "peers", "join_url")
    rows = _swarm_rows(request)
    if request.query.get("details") != "1":
        rows = [{k: r[k] for k in keys} for r in rows]
    return web.json_response({"swarms": rows})


def _swarm_rows(request: web.Request) -> list[dict[str, Any]]:
    """One row per published swarm (the index page and /api/swarms).

    ``swarm_accuracy`` comes from the contribution board: None until two vouched peers claim one.
    """
    rooms = request.app[REGISTRY].rooms
    rows = []
    for sid, (signed, m) in request.app[STORE].swarms().items():
        ds = m.dataset
        rows.append({
            "swarm_id": sid, "name": m.name, "model_id": signed.model_id,
            "peers": len(rooms[sid].members) if sid in rooms else 0, "join_url": join_url(request, sid),
            "model": model_summary(m),
            "dataset": None if ds is None else {"name": ds.name, "partition": ds.partition, "shards": len(ds.train_shards),
                                                "train_samples": sum(r.num_samples for r in ds.train_shards)},
            "swarm_accuracy": board.swarm_accuracy() if (board := request.app[REGISTRY].boards.get(sid)) else None,
            "board_url": f"{join_url(request, sid)}/board",
        })  # fmt: skip
    return rows


def _topology_layers(topology: dict[str, Any]) -> list[dict[str, Any]]:
    inner = topology.get("model_config", topology)
    layers = inner.get("config", {}).get("layers", []) if isinstance(inner, dict) else []
    return [layer for layer in layers if isinstance(layer, dict)]


def model_summary(manifest: Manifest) -> dict[str, Any]:
    """Layers (without the input layer), parameter count and a one-line description of the model."""
    layers = [l for l in _topology_layers(manifest.model.topology) if l.get("class_name") != "InputLayer"]
    params = sum(math.prod(w.shape) for w in manifest.model.weights)
    parts = []
    for layer in layers:
        cfg = layer.get("config", {})
        units = cfg.get("units", cfg.get("filters"))
        act = cfg.get("activation")
        parts.append(f"{layer.get('class_name')}({units}{', ' + act if act else ''})" if units else str(layer.get("class_name")))
    return {"layers": len(layers), "params": params, "summary": " > ".join(parts)[:300] or None}


def _input_shape(topology: dict[str, Any]) -> list[int] | None:
    layers = _topology_layers(topology)
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


async def index_page(request: web.Request) -> web.Response:
    return web.Response(text=swarm_index(_swarm_rows(request)), content_type="text/html")


async def get_swarm(request: web.Request) -> web.Response:
    published = request.app[STORE].manifest(request.match_info["swarm_id"])
    if published is None:
        return _json_error(404, "unknown_swarm", "no such swarm on this server")
    return web.json_response({"manifest": published[0].manifest, "signature": published[0].signature})


async def get_board(request: web.Request) -> web.Response:
    swarm_id = request.match_info["swarm_id"]
    if request.app[STORE].manifest(swarm_id) is None:
        return _json_error(404, "unknown_swarm", "no such swarm on this server")
    registry = request.app[REGISTRY]
    board = registry.boards.get(swarm_id)
    body = board.summary(registry.online(swarm_id)) if board else {"swarm_accuracy": None, "refused_receipts": {}, "peers": []}
    return web.json_response({"swarm_id": swarm_id, **body})


async def get_receipts(request: web.Request) -> web.Response:
    """The evidence behind one peer's credit: each vouching key's latest signed receipt."""
    swarm_id, peer_id = request.match_info["swarm_id"], request.match_info["peer_id"]
    if request.app[STORE].manifest(swarm_id) is None:
        return _json_error(404, "unknown_swarm", "no such swarm on this server")
    board = request.app[REGISTRY].boards.get(swarm_id)
    receipts = board.receipts(peer_id) if board else None
    if receipts is None:
        return _json_error(404, "unknown_peer", f"peer {peer_id} is not on this swarm's board")
    return web.json_response({"swarm_id": swarm_id, "peer_id": peer_id, "receipts": receipts})


async def get_content(request: web.Request) -> web.StreamResponse:
    path = request.app[STORE].blob_path(request.match_info["digest"])
    if path is None:
        return _json_error(404, "not_found", "no blob with that sha256 digest")
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable",
                                           "Content-Type": "application/octet-stream"})  # fmt: skip


def _swarm_page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page of browser_peer/ served under a published swarm's link (the page reads the id)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.app[STORE].manifest(request.match_info["swarm_id"]) is None:
            return _json_error(404, "unknown_swarm", "no such swarm on this server")
        browser_dir = request.app[CONFIG].browser_dir
        page = browser_dir / name if browser_dir else None
        if page is not None and page.is_file():
            return web.FileResponse(page)
        return web.Response(text="The browser peer is not installed on this server.", content_type="text/plain")

    return handler


join_page = _swarm_page("index.html")
board_page = _swarm_page("board.html")


async def _cross_origin_isolation(request: web.Request, response: web.StreamResponse) -> None:
    """Pages of the browser peer are cross-origin isolated: SharedArrayBuffer, hence TF.js's
    multi-threaded wasm backend, is only available then (measured in benchmarks/browser.py).
    Everything those pages load is same-origin, so require-corp costs nothing."""
    if request.path.startswith(("/s/", "/peer/")):
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault("Cross-Origin-Embedder-Policy", "require-corp")


def make_app(config: ServerConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_upload_bytes)
    app[CONFIG] = config
    app.on_response_prepare.append(_cross_origin_isolation)
    app[LIMITS] = AddressLimits(
        max_connections=config.max_connections_per_address, connects_per_second=config.connects_per_second_per_address,
        connect_burst=config.connect_burst_per_address, uploads_per_minute=config.uploads_per_minute_per_address,
        exempt_loopback=config.exempt_loopback,
    )  # fmt: skip
    app[STORE] = ContentStore(config.data_dir)
    app[REGISTRY] = Registry()
    app.router.add_get("/health", health)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/", index_page)
    app.router.add_get("/swarms", index_page)
    app.router.add_get("/api/publish", publish_limits)
    app.router.add_post("/api/publish", publish)
    app.router.add_get("/api/datasets", list_datasets)
    app.router.add_get("/api/swarms", list_swarms)
    app.router.add_get("/api/swarms/{swarm_id}", get_swarm)
    app.router.add_get("/api/swarms/{swarm_id}/board", get_board)
    app.router.add_get("/api/swarms/{swarm_id}/board/{peer_id}/receipts", get_receipts)
    app.router.add_get("/content/{digest}", get_content)
    app.router.add_get("/s/{swarm_id}", join_page)
    app.router.add_get("/s/{swarm_id}/board", board_page)
    if config.browser_dir is not None and config.browser_dir.is_dir():
        # show_index off and aiohttp's static route refuses paths leaving the directory
        app.router.add_static("/peer/", config.browser_dir, follow_symlinks=False)
    app.on_shutdown.append(_close_sockets)
    if config.stun_port is not None:
        app.cleanup_ctx.append(_stun_server)
    return app


async def _stun_server(app: web.Application) -> AsyncIterator[None]:
    """The STUN server lives exactly as long as the application."""
    cfg = app[CONFIG]
    assert cfg.stun_port is not None
    transport, protocol = await start_stun(cfg.stun_bind, cfg.stun_port)
    app[STUN], app[STUN_PORT] = protocol, int(transport.get_extra_info("sockname")[1])
    try:
        yield
    finally:
        transport.close()


async def _close_sockets(app: web.Application) -> None:
    for room in list(app[REGISTRY].rooms.values()):
        for member in list(room.members.values()):
            await member.ws.close(message=b"server shutdown")


def default_browser_dir() -> Path | None:
    here = Path(os.environ.get("SWARM_BROWSER_DIR", Path(__file__).resolve().parent.parent / "browser_peer"))
    return here if here.is_dir() else None


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context from PEM files; a missing or mismatched pair raises ValueError."""
    for path in (cert, key):
        if not Path(path).is_file():
            raise ValueError(f"TLS file {path} does not exist")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise ValueError(f"TLS certificate {cert} and key {key} do not load as a pair: {exc.reason or exc}") from None
    return ctx


def self_signed_certificate(directory: Path, names: list[str], days: int = 825) -> tuple[Path, Path]:
    """``directory/cert.pem`` and ``key.pem`` for a LAN server, made once and reused.

    The certificate is its own CA (basicConstraints CA:true), so clients can pin it as their
    trust root (``SSL_CERT_FILE``, or ``ssl.create_default_context(cafile=...)``). Subject
    alternative names: ``names`` plus localhost and 127.0.0.1.
    """
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys([*names, "localhost", "127.0.0.1"]):
        if not name or name in ("0.0.0.0", "::"):
            continue
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names and names[0] not in ("0.0.0.0", "::") else "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
