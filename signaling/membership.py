"""WebSocket membership and relay: challenge, join, welcome, relay of WebRTC set-up, leave.

Handlers are plain functions over typed app state; every message from a client is parsed by
``protocols.signaling`` and a bad one gets an ``error`` reply while the server keeps serving.
A key is one peer (``_register``); relayed messages go only to members of the sender's swarm;
reports update the swarm's contribution board (``board.py``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
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
    Report,
    Welcome,
    dump,
    parse_client_message,
)

from .config import ServerConfig
from .ice import welcome_ice_servers
from .registry import Member, TokenBucket
from .state import CONFIG, LIMITS, REGISTRY, STORE, STUN_PORT, json_error

log = logging.getLogger("signaling")

SAME_KEY_PROBE_S = 2.0  # a joined socket that does not answer a ping within this long is replaced
PONG = web.ResponseKey("pong", asyncio.Future)  # a socket's own state: the future a liveness probe waits on


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
        return json_error(429, ErrorCode.RATE_LIMITED, f"too many connections from {address}: {refused}")
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



async def close_sockets(app: web.Application) -> None:
    """On shutdown: close every member's socket (their handlers then leave their swarms)."""
    for room in list(app[REGISTRY].rooms.values()):
        for member in list(room.members.values()):
            await member.ws.close(message=b"server shutdown")
