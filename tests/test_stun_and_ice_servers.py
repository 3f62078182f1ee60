"""The server's own STUN and the ICE servers each peer gets in its welcome (signaling.stun, signaling.ice).

A real aiohttp server with its STUN socket on 127.0.0.1; Binding requests built with aioice's
codec (as aiortc's ICE sends them) get the request's source address back; anything else is
dropped and counted. The welcome gives this STUN server when the manifest lists none, and TURN
credentials in the TURN REST scheme that coturn's ``use-auth-secret`` recomputes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from aioice import stun
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import start_server
from protocols.crypto import join_message, peer_id_of, public_key_bytes, sign
from protocols.manifest import envelope_json, static_turn_password
from protocols.signaling import IceServer, Join, dump, parse_server_message
from signaling.ice import coturn_config, turn_rest_credentials

from tiny_swarm import publish_form, tiny_publication

SECRET = "unit-test-secret-0123456789abcdef"


async def _udp_request(port: int, data: bytes) -> tuple[bytes, tuple[str, int]] | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        await loop.sock_sendto(sock, data, ("127.0.0.1", port))
        reply = await asyncio.wait_for(loop.sock_recv(sock, 2048), 1.0)
        return reply, sock.getsockname()
    except TimeoutError:
        return None
    finally:
        sock.close()


async def _welcome(base: str, swarm_id: str) -> dict:
    key = Ed25519PrivateKey.generate()
    async with aiohttp.ClientSession() as http, http.ws_connect(base.replace("http", "ws", 1) + "/ws") as ws:
        challenge = parse_server_message((await ws.receive()).data)
        signature = sign(key, join_message(bytes.fromhex(challenge.nonce), swarm_id)).hex()
        await ws.send_str(dump(Join(swarm_id=swarm_id, public_key=public_key_bytes(key).hex(), signature=signature)))
        welcome = parse_server_message((await ws.receive()).data)
        return {"welcome": welcome, "peer_id": peer_id_of(public_key_bytes(key))}


@pytest.fixture
async def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner, base = await start_server(tmp_path / "data", stun_port=0, stun_bind="127.0.0.1",
                                      turn_urls=["turn:turn.example.org:3478"], turn_secret=SECRET)  # fmt: skip
    from signaling.app import STUN, STUN_PORT

    app = runner.app
    pub = tiny_publication(Ed25519PrivateKey.generate())
    async with aiohttp.ClientSession() as http, http.post(f"{base}/api/publish",
                                                          data=publish_form(envelope_json(pub.signed), pub.parts())) as resp:  # fmt: skip
        assert resp.status == 201, await resp.text()
    try:
        yield base, app[STUN_PORT], app[STUN], pub.swarm_id
    finally:
        await runner.cleanup()


async def test_binding_requests_get_the_source_address_and_junk_is_counted(served) -> None:  # type: ignore[no-untyped-def]
    _, port, server, _ = served
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    got = await _udp_request(port, bytes(request))
    assert got is not None
    reply, (ip, src_port) = got
    response = stun.parse_message(reply)
    assert response.message_class == stun.Class.RESPONSE and response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == (ip, src_port)
    assert len(reply) <= len(bytes(request)) + 32  # no amplification

    indication = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.INDICATION)
    allocate = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
    for junk in (os.urandom(64), b"", bytes(indication), bytes(allocate), bytes(request) + os.urandom(2000)):
        assert await _udp_request(port, junk) is None
    assert server.counts["answered"] == 1
    assert server.counts["malformed"] == 3 and server.counts["not_binding"] == 2, server.counts


async def test_the_welcome_carries_our_stun_and_per_peer_turn_credentials_coturn_accepts(served) -> None:  # type: ignore[no-untyped-def]
    base, port, _, swarm_id = served
    first = await _welcome(base, swarm_id)
    servers = first["welcome"].ice_servers
    assert servers[0].urls == [f"stun:127.0.0.1:{port}"] and servers[0].credential is None
    turn = servers[1]
    assert turn.urls == ["turn:turn.example.org:3478"]
    expiry, peer = turn.username.split(":")
    assert peer == first["peer_id"] and 0 < int(expiry) - time.time() <= 24 * 3600 + 5
    # coturn's use-auth-secret check: base64(HMAC-SHA1(secret, username))
    want = base64.b64encode(hmac.new(SECRET.encode(), turn.username.encode(), hashlib.sha1).digest()).decode()
    assert turn.credential == want
    assert (await _welcome(base, swarm_id))["welcome"].ice_servers[1].username != turn.username  # each peer its own


def test_turn_rest_credentials_and_the_coturn_config_agree(tmp_path: Path) -> None:
    user, password = turn_rest_credentials(SECRET, "ab" * 16, ttl_s=60, now=1000)
    assert user == f"1060:{'ab' * 16}"
    assert password == base64.b64encode(hmac.new(SECRET.encode(), user.encode(), hashlib.sha1).digest()).decode()
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    conf = coturn_config(secret_file=secret_file, realm="r")
    assert "use-auth-secret" in conf and f"static-auth-secret={SECRET}\n" in conf and "no-loopback-peers" in conf
    secret_file.write_text("short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        coturn_config(secret_file=secret_file, realm="r")


def test_a_static_turn_password_is_refused_with_what_to_do_instead() -> None:
    assert static_turn_password([IceServer(urls=["stun:stun.example.org:3478"])]) is None
    refused = static_turn_password([IceServer(urls=["turn:t.example.org:3478"], username="u", credential="p")])
    assert refused is not None and "--turn-secret-file" in refused and "use-auth-secret" in refused
