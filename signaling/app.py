"""The aiohttp application: WebSocket signaling, publish/content routes, health.

Handlers are plain functions over typed app state; every message from a client is parsed by
``protocols.signaling`` and a bad one gets an ``error`` reply while the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path

from aiohttp import BodyPartReader, WSMsgType, web
from pydantic import BaseModel

from protocols.crypto import join_message, peer_id_of, verify
from protocols.errors import ProtocolError, SignatureError
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
    Welcome,
    dump,
    parse_client_message,
)

from .config import ServerConfig
from .registry import Member, Registry, TokenBucket
from .store import ContentStore, PublishError

log = logging.getLogger("signaling")

CONFIG = web.AppKey("config", ServerConfig)
STORE = web.AppKey("store", ContentStore)
REGISTRY = web.AppKey("registry", Registry)


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


async def _register(request: web.Request, ws: web.WebSocketResponse, join: Join, shards: int) -> Member:
    registry, store = request.app[REGISTRY], request.app[STORE]
    info = PeerInfo(peer_id=peer_id_of(bytes.fromhex(join.public_key)), public_key=join.public_key, client=join.client)
    old = registry.room(join.swarm_id).members.pop(info.peer_id, None)
    if old is not None:  # the same key reconnected: the proven newcomer replaces the stale socket
        await old.ws.close(message=b"replaced by a new connection")
    # looked up after the await: if the last other member left meanwhile, the room was deleted
    # and the newcomer must not be put into that orphan
    room = registry.room(join.swarm_id)
    member = Member(info=info, ws=ws, shard=room.next_shard(shards))
    others = list(room.members.values())
    room.members[info.peer_id] = member
    manifest = store.manifest(join.swarm_id)
    ice = manifest[1].ice_servers if manifest else []
    await _send(ws, Welcome(peer_id=info.peer_id, swarm_id=join.swarm_id,
                            peers=[m.info for m in others], shard=member.shard, ice_servers=ice))  # fmt: skip
    for other in others:
        await _send(other.ws, PeerJoined(peer=info))
    log.info("peer %s joined swarm %s (shard %d, %d peers)", info.peer_id[:8], join.swarm_id[:8], member.shard, len(room.members))
    return member


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
    while True:
        try:
            async with asyncio.timeout(cfg.idle_timeout_s):
                msg = await ws.receive()
        except TimeoutError:
            await ws.close(message=b"idle timeout")
            return
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return
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
        elif isinstance(parsed, Join):
            await _send(ws, _error(ErrorCode.ALREADY_JOINED, "this connection has already joined"))
        else:
            error = await _relay(request, swarm_id, member.info.peer_id, parsed)
            if error is not None:
                await _send(ws, error)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    cfg = request.app[CONFIG]
    ws = web.WebSocketResponse(heartbeat=cfg.heartbeat_s, max_msg_size=cfg.max_frame_bytes)
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
    return web.json_response({"status": "ok", "swarms": len(request.app[STORE].swarms()),
                              "peers": registry.peer_count(), "protocol": 1})  # fmt: skip


def join_url(request: web.Request, swarm_id: str) -> str:
    base = request.app[CONFIG].public_url or f"{request.scheme}://{request.host}"
    return f"{base.rstrip('/')}/s/{swarm_id}"


async def publish(request: web.Request) -> web.Response:
    """Multipart: field ``manifest`` (signed envelope JSON), then ``blob`` parts named by digest."""
    cfg = request.app[CONFIG]
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
    rooms = request.app[REGISTRY].rooms
    items = [
        {"swarm_id": sid, "name": m.name, "model_id": s.model_id,
         "peers": len(rooms[sid].members) if sid in rooms else 0, "join_url": join_url(request, sid)}
        for sid, (s, m) in request.app[STORE].swarms().items()
    ]  # fmt: skip
    return web.json_response({"swarms": items})


async def get_swarm(request: web.Request) -> web.Response:
    published = request.app[STORE].manifest(request.match_info["swarm_id"])
    if published is None:
        return _json_error(404, "unknown_swarm", "no such swarm on this server")
    return web.json_response({"manifest": published[0].manifest, "signature": published[0].signature})


async def get_content(request: web.Request) -> web.StreamResponse:
    path = request.app[STORE].blob_path(request.match_info["digest"])
    if path is None:
        return _json_error(404, "not_found", "no blob with that sha256 digest")
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable",
                                           "Content-Type": "application/octet-stream"})  # fmt: skip


async def join_page(request: web.Request) -> web.StreamResponse:
    if request.app[STORE].manifest(request.match_info["swarm_id"]) is None:
        return _json_error(404, "unknown_swarm", "no such swarm on this server")
    browser_dir = request.app[CONFIG].browser_dir
    index = browser_dir / "index.html" if browser_dir else None
    if index is not None and index.is_file():
        return web.FileResponse(index)
    return web.Response(text="The browser peer is not installed on this server.", content_type="text/plain")


def make_app(config: ServerConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_upload_bytes)
    app[CONFIG] = config
    app[STORE] = ContentStore(config.data_dir)
    app[REGISTRY] = Registry()
    app.router.add_get("/health", health)
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/api/publish", publish)
    app.router.add_get("/api/swarms", list_swarms)
    app.router.add_get("/api/swarms/{swarm_id}", get_swarm)
    app.router.add_get("/content/{digest}", get_content)
    app.router.add_get("/s/{swarm_id}", join_page)
    if config.browser_dir is not None and config.browser_dir.is_dir():
        # show_index off and aiohttp's static route refuses paths leaving the directory
        app.router.add_static("/peer/", config.browser_dir, follow_symlinks=False)
    app.on_shutdown.append(_close_sockets)
    return app


async def _close_sockets(app: web.Application) -> None:
    for room in list(app[REGISTRY].rooms.values()):
        for member in list(room.members.values()):
            await member.ws.close(message=b"server shutdown")


def default_browser_dir() -> Path | None:
    here = Path(os.environ.get("SWARM_BROWSER_DIR", Path(__file__).resolve().parent.parent / "browser_peer"))
    return here if here.is_dir() else None
