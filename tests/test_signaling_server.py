"""The signaling server over real sockets: publish and content routes, and the WebSocket protocol.

A real aiohttp server on 127.0.0.1 (port 0) talks to real aiohttp clients. Every wait on the
network is bounded (``asyncio.wait_for``); "nothing else arrived" is proven by a ping whose
pong must be the next message on that socket, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from protocols.crypto import join_message, peer_id_of, public_key_bytes, sha256, sign
from protocols.manifest import SignedManifest, envelope_json
from protocols.signaling import (
    Answer,
    Candidate,
    Challenge,
    Error,
    Join,
    Leave,
    LinkAuth,
    Offer,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Welcome,
    dump,
    parse_server_message,
)
from signaling.app import make_app
from signaling.config import ServerConfig
from tiny_swarm import Publication, publish_form, tiny_publication

TIMEOUT = 5.0
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
AUTH = LinkAuth(nonce="0f" * 32, signature="5a" * 64)  # the server relays link auth; peers verify it
M = TypeVar("M", bound=BaseModel)


# ---- a server on 127.0.0.1 --------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    base: str
    data_dir: Path

    @property
    def ws_url(self) -> str:
        return self.base.replace("http", "ws", 1) + "/ws"


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start servers with config overrides (``data_dir`` defaults to a fresh directory)."""
    runners: list[web.AppRunner] = []

    async def _start(**overrides: Any) -> Server:
        overrides.setdefault("data_dir", tmp_path / f"server{len(runners)}")
        runner = web.AppRunner(make_app(ServerConfig(**overrides)), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        return Server(f"http://127.0.0.1:{port}", overrides["data_dir"])

    try:
        yield _start
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def server(start: StartServer) -> Server:
    return await start()


@pytest.fixture
async def http(start: StartServer) -> AsyncIterator[aiohttp.ClientSession]:
    """Depends on ``start`` so client sockets close before the servers shut down."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session


# ---- publishing -------------------------------------------------------------------------


async def post_publish(
    http: aiohttp.ClientSession, server: Server, envelope: str | None, blobs: Iterable[tuple[str, bytes]]
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{server.base}/api/publish", data=publish_form(envelope, blobs)) as resp:
        return resp.status, await resp.json()


async def publish(http: aiohttp.ClientSession, server: Server, pub: Publication) -> dict[str, Any]:
    status, body = await post_publish(http, server, envelope_json(pub.signed), pub.parts())
    assert status == 201, body
    return body


def stored_files(data_dir: Path) -> set[str]:
    return {str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file()}


@pytest.fixture
def publisher() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
async def swarm(http: aiohttp.ClientSession, server: Server, publisher: Ed25519PrivateKey) -> Publication:
    pub = tiny_publication(publisher)
    await publish(http, server, pub)
    return pub


# ---- WebSocket clients ------------------------------------------------------------------


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, key: Ed25519PrivateKey) -> None:
        self.ws, self.key = ws, key
        self.peer_id = peer_id_of(public_key_bytes(key))

    async def send(self, message: BaseModel | str | bytes) -> None:
        if isinstance(message, bytes):
            await self.ws.send_bytes(message)
        else:
            await self.ws.send_str(message if isinstance(message, str) else dump(message))

    async def receive(self) -> aiohttp.WSMessage:
        """The next message that is not a WebSocket ping (the server's same-key probe, its heartbeat).

        Clients connect with ``autoping=False`` and never answer, as a stale socket would not: an
        aiohttp client answering a ping it reads after the server closed raises instead of
        returning the close.
        """
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), TIMEOUT)
            if msg.type not in (WSMsgType.PING, WSMsgType.PONG):
                return msg

    async def recv(self) -> Any:
        msg = await self.receive()
        assert msg.type == WSMsgType.TEXT, f"expected a text message, got {msg.type!r} {msg.data!r}"
        return parse_server_message(msg.data)

    async def expect(self, kind: type[M]) -> M:
        message = await self.recv()
        assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
        return message

    async def expect_error(self, code: str) -> Error:
        error = await self.expect(Error)
        assert error.code == code, error
        return error

    async def expect_closed(self) -> aiohttp.WSMessage:
        msg = await self.receive()
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED), f"still open: {msg!r}"
        return msg

    async def quiet(self) -> None:
        """Nothing was queued for this client: the pong to a fresh ping is the next message."""
        await self.send(Ping())
        await self.expect(Pong)

    def join(self, challenge: Challenge, swarm_id: str, *, nonce: bytes | None = None) -> Join:
        proof = sign(self.key, join_message(nonce or bytes.fromhex(challenge.nonce), swarm_id))
        return Join(swarm_id=swarm_id, public_key=public_key_bytes(self.key).hex(), signature=proof.hex())


async def connect(http: aiohttp.ClientSession, server: Server, key: Ed25519PrivateKey | None = None) -> tuple[Client, Challenge]:
    ws = await asyncio.wait_for(http.ws_connect(server.ws_url, autoping=False), TIMEOUT)
    client = Client(ws, key or Ed25519PrivateKey.generate())
    return client, await client.expect(Challenge)


async def join(
    http: aiohttp.ClientSession, server: Server, swarm_id: str, key: Ed25519PrivateKey | None = None
) -> tuple[Client, Welcome]:
    client, challenge = await connect(http, server, key)
    await client.send(client.join(challenge, swarm_id))
    welcome = await client.expect(Welcome)
    assert welcome.peer_id == client.peer_id and welcome.swarm_id == swarm_id
    return client, welcome


async def join_pair(http: aiohttp.ClientSession, server: Server, swarm_id: str) -> tuple[Client, Client]:
    a, _ = await join(http, server, swarm_id)
    b, _ = await join(http, server, swarm_id)
    assert (await a.expect(PeerJoined)).peer.peer_id == b.peer_id
    return a, b


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


# ---- HTTP: health, publish, content -----------------------------------------------------


async def test_health_counts_swarms_and_peers(http: aiohttp.ClientSession, server: Server, publisher: Ed25519PrivateKey) -> None:
    assert await get_json(http, f"{server.base}/health") == (200, {"status": "ok", "swarms": 0, "peers": 0, "protocol": 1, "refused": {}, "stun": None})
    pub = tiny_publication(publisher)
    await publish(http, server, pub)
    client, _ = await join(http, server, pub.swarm_id)
    assert await get_json(http, f"{server.base}/health") == (200, {"status": "ok", "swarms": 1, "peers": 1, "protocol": 1, "refused": {}, "stun": None})


async def test_published_swarm_is_listed_and_its_content_served(
    http: aiohttp.ClientSession, server: Server, publisher: Ed25519PrivateKey
) -> None:
    pub = tiny_publication(publisher)
    reply = await publish(http, server, pub)
    assert reply == {"swarm_id": pub.swarm_id, "model_id": pub.signed.model_id,
                     "join_url": f"{server.base}/s/{pub.swarm_id}"}  # fmt: skip

    status, listing = await get_json(http, f"{server.base}/api/swarms")
    assert status == 200 and listing == {"swarms": [{"swarm_id": pub.swarm_id, "name": "tiny", "model_id": pub.signed.model_id,
                                                     "peers": 0, "join_url": reply["join_url"]}]}  # fmt: skip
    status, envelope = await get_json(http, f"{server.base}/api/swarms/{pub.swarm_id}")
    assert status == 200 and envelope == json.loads(envelope_json(pub.signed))
    assert (await get_json(http, f"{server.base}/api/swarms/{secrets.token_hex(16)}"))[0] == 404

    assert len(pub.blobs) == 5  # weights, three train shards, test shard
    for digest, data in pub.blobs.items():
        async with http.get(f"{server.base}/content/{digest}") as resp:
            assert resp.status == 200 and await resp.read() == data
    async with http.get(f"{server.base}/content/{sha256(b'never uploaded').hex()}") as resp:
        assert resp.status == 404
    async with http.get(f"{server.base}/s/{pub.swarm_id}") as resp:
        assert resp.status == 200
    async with http.get(f"{server.base}/s/{secrets.token_hex(16)}") as resp:
        assert resp.status == 404


async def test_publication_survives_a_restart(http: aiohttp.ClientSession, start: StartServer, publisher: Ed25519PrivateKey, tmp_path: Path) -> None:
    first = await start(data_dir=tmp_path / "shared")
    pub = tiny_publication(publisher)
    await publish(http, first, pub)
    second = await start(data_dir=tmp_path / "shared")
    status, envelope = await get_json(http, f"{second.base}/api/swarms/{pub.swarm_id}")
    assert status == 200 and envelope["signature"] == pub.signed.signature
    client, _ = await join(http, second, pub.swarm_id)
    await client.quiet()


@pytest.mark.parametrize(
    "path",
    ["/content/../etc/passwd", "/content/..%2F..%2F..%2Fetc%2Fpasswd", "/content/..%2Fsecret", "/content/%2e%2e%2fsecret",
     "/content/..%2Fswarms%2F{swarm}.json", "/content/%2E%2E%5Csecret", "/content/{weights}%2F..%2F..%2Fsecret"],
)  # fmt: skip
async def test_content_route_refuses_path_traversal(swarm: Publication, server: Server, path: str) -> None:
    """Sent as raw request lines: aiohttp's client would normalize the dot segments away."""
    (server.data_dir / "secret").write_bytes(b"TOP SECRET")
    path = path.format(swarm=swarm.swarm_id, weights=swarm.manifest.model.initial_weights.digest)
    host, port = server.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), TIMEOUT)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, body = response.partition(b"\r\n")
    assert status_line.split()[1] == b"404", response[:300]
    assert b"TOP SECRET" not in body and b"root:" not in body and swarm.signed.signature.encode() not in body


# ---- publish refusals: each stores nothing ----------------------------------------------

Upload = tuple[str | None, list[tuple[str, bytes]]]  # (envelope JSON or no manifest field, blob parts)
Refusal = Callable[[Publication], Upload]


def _bad_signature(pub: Publication) -> Upload:
    sig = pub.signed.signature
    forged = SignedManifest(manifest=pub.signed.manifest, signature=("0" if sig[0] != "0" else "1") + sig[1:])
    return envelope_json(forged), pub.parts()


def _someone_elses_key(pub: Publication) -> Upload:
    """Signed correctly, but by a key that is not the manifest's publisher_key."""
    other = tiny_publication(Ed25519PrivateKey.generate(), swarm_id=pub.swarm_id)
    return envelope_json(SignedManifest(manifest=pub.signed.manifest, signature=other.signed.signature)), pub.parts()


def _digest_mismatch(pub: Publication) -> Upload:
    (first, data), *rest = pub.parts()
    return envelope_json(pub.signed), [(first, bytes([data[0] ^ 1]) + data[1:]), *rest]  # same size, other bytes


def _missing_blob(pub: Publication) -> Upload:
    return envelope_json(pub.signed), pub.parts()[:-1]


def _unreferenced_blob(pub: Publication) -> Upload:
    extra = b"not in the manifest"
    return envelope_json(pub.signed), [*pub.parts(), (sha256(extra).hex(), extra)]


def _traversal_name(pub: Publication) -> Upload:
    return envelope_json(pub.signed), [*pub.parts(), ("../swarms/evil.json", b"{}")]


def _no_manifest(pub: Publication) -> Upload:
    return None, pub.parts()


def _not_a_manifest(pub: Publication) -> Upload:
    return json.dumps({"manifest": "{}", "signature": pub.signed.signature}), pub.parts()


REFUSALS: dict[str, Refusal] = {
    "bad signature": _bad_signature,
    "signed by another key": _someone_elses_key,
    "blob digest mismatch": _digest_mismatch,
    "missing blob": _missing_blob,
    "unreferenced blob": _unreferenced_blob,
    "blob name leaves the store": _traversal_name,
    "no manifest field": _no_manifest,
    "invalid manifest": _not_a_manifest,
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
async def test_refused_publish_stores_nothing(
    http: aiohttp.ClientSession, server: Server, publisher: Ed25519PrivateKey, case: str
) -> None:
    pub = tiny_publication(publisher)
    envelope, parts = REFUSALS[case](pub)
    status, body = await post_publish(http, server, envelope, parts)
    assert status == 400 and body["error"] in ("rejected", "bad_request"), body
    assert stored_files(server.data_dir) == set()
    assert await get_json(http, f"{server.base}/api/swarms") == (200, {"swarms": []})
    # the same upload done right is accepted: the refusal was about the fault, not the server
    await publish(http, server, pub)


async def test_non_multipart_publish_is_refused(http: aiohttp.ClientSession, server: Server, publisher: Ed25519PrivateKey) -> None:
    pub = tiny_publication(publisher)
    async with http.post(f"{server.base}/api/publish", data=envelope_json(pub.signed),
                         headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    assert stored_files(server.data_dir) == set()


async def test_oversize_upload_is_refused_and_stores_nothing(http: aiohttp.ClientSession, start: StartServer, publisher: Ed25519PrivateKey) -> None:
    pub = tiny_publication(publisher)
    needed = len(envelope_json(pub.signed)) + sum(len(b) for b in pub.blobs.values())
    server = await start(max_upload_bytes=needed - 1)
    status, body = await post_publish(http, server, envelope_json(pub.signed), pub.parts())
    assert status == 413 and body["error"] == "too_large", body
    assert stored_files(server.data_dir) == set()
    roomy = await start(max_upload_bytes=needed)  # exactly enough is accepted
    await publish(http, roomy, pub)


async def test_another_publisher_cannot_take_a_swarm_id(
    http: aiohttp.ClientSession, swarm: Publication, server: Server, publisher: Ed25519PrivateKey
) -> None:
    before = stored_files(server.data_dir)
    usurper = tiny_publication(Ed25519PrivateKey.generate(), swarm_id=swarm.swarm_id, seed=1)
    status, body = await post_publish(http, server, envelope_json(usurper.signed), usurper.parts())
    assert status == 400 and "another publisher" in body["message"], body
    assert stored_files(server.data_dir) == before
    status, envelope = await get_json(http, f"{server.base}/api/swarms/{swarm.swarm_id}")
    assert envelope["signature"] == swarm.signed.signature
    # the owner may republish under the same swarm id
    update = tiny_publication(publisher, swarm_id=swarm.swarm_id, seed=1)
    await publish(http, server, update)
    status, envelope = await get_json(http, f"{server.base}/api/swarms/{swarm.swarm_id}")
    assert envelope["signature"] == update.signed.signature


# ---- WebSocket: joining -----------------------------------------------------------------


async def test_join_welcome_lists_peers_and_spreads_shards(http: aiohttp.ClientSession, swarm: Publication, server: Server) -> None:
    clients: list[Client] = []
    shards: list[int] = []
    for i in range(4):
        client, welcome = await join(http, server, swarm.swarm_id)
        assert [p.peer_id for p in welcome.peers] == [c.peer_id for c in clients]
        assert all(p.client == "python" for p in welcome.peers)
        assert welcome.peers == [PeerInfo(peer_id=c.peer_id, public_key=public_key_bytes(c.key).hex()) for c in clients]
        for earlier in clients:  # everyone already there hears about the newcomer
            assert (await earlier.expect(PeerJoined)).peer.peer_id == client.peer_id
        clients.append(client)
        shards.append(welcome.shard)
    assert shards == [0, 1, 2, 0]  # three train shards, least used first

    leaver = clients[1]  # holds shard 1
    await leaver.send(Leave())
    for other in (clients[0], clients[2], clients[3]):
        assert (await other.expect(PeerLeft)).peer_id == leaver.peer_id
    newcomer, welcome = await join(http, server, swarm.swarm_id)
    assert welcome.shard == 1
    status, listing = await get_json(http, f"{server.base}/api/swarms")
    assert listing["swarms"][0]["peers"] == 4


async def test_bad_proof_is_refused_and_closed(http: aiohttp.ClientSession, swarm: Publication, server: Server) -> None:
    client, challenge = await connect(http, server)
    await client.send(client.join(challenge, swarm.swarm_id, nonce=secrets.token_bytes(32)))  # signs another nonce
    await client.expect_error("bad_proof")
    await client.expect_closed()
    # a signature by another key over the right nonce is refused as well
    client, challenge = await connect(http, server)
    forged = client.join(challenge, swarm.swarm_id).model_copy(update={"public_key": public_key_bytes(Ed25519PrivateKey.generate()).hex()})
    await client.send(forged)
    await client.expect_error("bad_proof")
    await client.expect_closed()
    assert (await get_json(http, f"{server.base}/health"))[1]["peers"] == 0


async def test_unknown_swarm_is_refused(http: aiohttp.ClientSession, swarm: Publication, server: Server) -> None:
    client, challenge = await connect(http, server)
    await client.send(client.join(challenge, secrets.token_hex(16)))
    await client.expect_error("unknown_swarm")
    await client.expect_closed()


async def test_full_swarm_is_refused_but_a_member_may_reconnect(http: aiohttp.ClientSession, start: StartServer, publisher: Ed25519PrivateKey) -> None:
    server = await start(max_peers_per_swarm=2)
    pub = tiny_publication(publisher)
    await publish(http, server, pub)
    a, b = await join_pair(http, server, pub.swarm_id)
    third, challenge = await connect(http, server)
    await third.send(third.join(challenge, pub.swarm_id))
    await third.expect_error("swarm_full")
    await third.expect_closed()
    # the same key coming back (its old socket gone stale) replaces itself, it does not count twice
    a2, welcome = await join(http, server, pub.swarm_id, a.key)
    assert [p.peer_id for p in welcome.peers] == [b.peer_id]
    await a.expect_closed()


async def test_join_timeout_closes_silent_connections(http: aiohttp.ClientSession, start: StartServer) -> None:
    server = await start(join_timeout_s=0.2)
    client, _ = await connect(http, server)
    await client.expect_error("not_joined")
    await client.expect_closed()


async def test_second_join_on_one_connection_is_refused(http: aiohttp.ClientSession, swarm: Publication, server: Server) -> None:
    client, challenge = await connect(http, server)
    await client.send(client.join(challenge, swarm.swarm_id))
    await client.expect(Welcome)
    await client.send(client.join(challenge, swarm.swarm_id))
    await client.expect_error("already_joined")
    await client.quiet()


# ---- WebSocket: relaying ----------------------------------------------------------------


async def test_relay_reaches_only_the_addressed_peer_with_from_set_by_the_server(
    http: aiohttp.ClientSession, swarm: Publication, server: Server
) -> None:
    a, b = await join_pair(http, server, swarm.swarm_id)
    c, _ = await join(http, server, swarm.swarm_id)
    for earlier in (a, b):
        await earlier.expect(PeerJoined)

    await a.send(Offer(to=b.peer_id, sdp=SDP, auth=AUTH))
    offer = await b.expect(Offer)
    assert (offer.from_, offer.to, offer.sdp, offer.auth) == (a.peer_id, b.peer_id, SDP, AUTH)
    assert json.loads(dump(offer))["from"] == a.peer_id

    await b.send(Answer(to=a.peer_id, sdp=SDP + "a=answer\r\n", auth=AUTH))
    answer = await a.expect(Answer)
    assert (answer.from_, answer.sdp) == (b.peer_id, SDP + "a=answer\r\n")

    candidate = "candidate:1 1 UDP 2130706431 127.0.0.1 50000 typ host"
    await a.send(Candidate(to=b.peer_id, candidate=candidate, sdp_mid="0", sdp_mline_index=0))
    got = await b.expect(Candidate)
    assert (got.from_, got.candidate, got.sdp_mid, got.sdp_mline_index) == (a.peer_id, candidate, "0", 0)

    await a.send(Candidate(to=b.peer_id, candidate=None))  # end of candidates
    end = await b.expect(Candidate)
    assert end.candidate is None and end.from_ == a.peer_id

    # a client cannot speak for another peer: its `from` is overwritten
    await c.send(Offer.model_validate({"to": b.peer_id, "from": a.peer_id, "sdp": SDP, "auth": AUTH}))
    spoofed = await b.expect(Offer)
    assert spoofed.from_ == c.peer_id
    await c.send(json.dumps({"v": 1, "type": "answer", "to": b.peer_id, "from": a.peer_id, "sdp": SDP,
                             "auth": AUTH.model_dump()}))  # fmt: skip
    assert (await b.expect(Answer)).from_ == c.peer_id

    for client in (a, b, c):  # nothing went anywhere else
        await client.quiet()


async def test_relay_to_unknown_or_foreign_peer_is_an_error(
    http: aiohttp.ClientSession, swarm: Publication, server: Server, publisher: Ed25519PrivateKey
) -> None:
    a, _ = await join(http, server, swarm.swarm_id)
    await a.send(Offer(to=secrets.token_hex(16), sdp=SDP, auth=AUTH))
    await a.expect_error("unknown_peer")
    other = tiny_publication(publisher, seed=2)
    await publish(http, server, other)
    stranger, _ = await join(http, server, other.swarm_id)
    await a.send(Offer(to=stranger.peer_id, sdp=SDP, auth=AUTH))  # swarms are isolated
    await a.expect_error("unknown_peer")
    await stranger.quiet()


async def test_relay_before_join_is_refused_and_the_join_still_works(
    http: aiohttp.ClientSession, swarm: Publication, server: Server
) -> None:
    a, _ = await join(http, server, swarm.swarm_id)
    early, challenge = await connect(http, server)
    await early.send(Offer(to=a.peer_id, sdp=SDP, auth=AUTH))
    await early.expect_error("not_joined")
    await early.send(Leave())
    await early.expect_error("not_joined")
    await early.send(Ping())
    await early.expect(Pong)
    await a.quiet()  # the offer was not relayed
    await early.send(early.join(challenge, swarm.swarm_id))
    await early.expect(Welcome)
    await a.expect(PeerJoined)


async def test_leave_and_disconnect_announce_peer_left(http: aiohttp.ClientSession, swarm: Publication, server: Server) -> None:
    a, b = await join_pair(http, server, swarm.swarm_id)
    c, _ = await join(http, server, swarm.swarm_id)
    for earlier in (a, b):
        await earlier.expect(PeerJoined)
    await c.send(Leave())
    await c.expect_closed()
    for other in (a, b):
        assert (await other.expect(PeerLeft)).peer_id == c.peer_id
    await b.ws.close()  # no leave message: the server notices the closed socket
    assert (await a.expect(PeerLeft)).peer_id == b.peer_id
    await a.send(Offer(to=b.peer_id, sdp=SDP, auth=AUTH))
    await a.expect_error("unknown_peer")
    assert (await get_json(http, f"{server.base}/health"))[1]["peers"] == 1


async def test_same_key_reconnecting_replaces_the_old_socket(http: aiohttp.ClientSession, swarm: Publication, server: Server) -> None:
    a, b = await join_pair(http, server, swarm.swarm_id)
    a2, welcome = await join(http, server, swarm.swarm_id, a.key)
    assert [p.peer_id for p in welcome.peers] == [b.peer_id]
    closed = await a.expect_closed()
    assert closed.extra == "replaced by a new connection", closed
    assert (await b.expect(PeerJoined)).peer.peer_id == a.peer_id
    await b.quiet()  # the stale socket's end was not announced as a departure
    await b.send(Offer(to=a.peer_id, sdp=SDP, auth=AUTH))
    assert (await a2.expect(Offer)).from_ == b.peer_id
    assert (await get_json(http, f"{server.base}/health"))[1]["peers"] == 2


async def test_rejoin_racing_the_last_other_leave_stays_in_the_swarm(
    http: aiohttp.ClientSession, swarm: Publication, server: Server
) -> None:
    """The leave lands while the rejoin closes the old socket, which empties and deletes the room."""
    a, b = await join_pair(http, server, swarm.swarm_id)
    a2, challenge = await connect(http, server, a.key)
    await a2.send(a2.join(challenge, swarm.swarm_id))
    await b.send(Leave())
    await a2.expect(Welcome)
    await b.expect_closed()  # the server closes b only after it removed b
    assert (await get_json(http, f"{server.base}/health"))[1]["peers"] == 1
    c, welcome = await join(http, server, swarm.swarm_id)
    assert [p.peer_id for p in welcome.peers] == [a.peer_id]
    assert (await a2.expect(PeerJoined)).peer.peer_id == c.peer_id


async def test_ping_pong(http: aiohttp.ClientSession, swarm: Publication, server: Server) -> None:
    client, challenge = await connect(http, server)
    await client.send(Ping())
    assert await client.expect(Pong) == Pong()
    await client.send(client.join(challenge, swarm.swarm_id))
    await client.expect(Welcome)
    await client.send(json.dumps({"v": 1, "type": "ping"}))
    await client.expect(Pong)


# ---- WebSocket: bad input does not disturb anyone ---------------------------------------

BAD_MESSAGES: dict[str, str | bytes] = {
    "not json": "this is not json {",
    "unknown type": json.dumps({"v": 1, "type": "shout", "to": "0" * 32}),
    "wrong version": json.dumps({"v": 2, "type": "ping"}),
    "extra field": json.dumps({"v": 1, "type": "ping", "admin": True}),
    "bad peer id": json.dumps({"v": 1, "type": "offer", "to": "../../etc", "sdp": SDP}),
    "json array": "[1, 2, 3]",
    "binary": b"\x00\x01binary",
}


@pytest.mark.parametrize("name", BAD_MESSAGES, ids=list(BAD_MESSAGES))
async def test_malformed_messages_get_errors_and_service_goes_on(
    http: aiohttp.ClientSession, swarm: Publication, server: Server, name: str
) -> None:
    bad = BAD_MESSAGES[name]
    a, b = await join_pair(http, server, swarm.swarm_id)
    early, _ = await connect(http, server)
    await early.send(bad)  # before joining
    await early.expect_error("malformed")
    await a.send(bad)  # after joining
    await a.expect_error("malformed")
    await a.send(Offer(to=b.peer_id, sdp=SDP, auth=AUTH))
    assert (await b.expect(Offer)).from_ == a.peer_id
    await b.send(Answer(to=a.peer_id, sdp=SDP, auth=AUTH))
    assert (await a.expect(Answer)).from_ == b.peer_id
    await early.quiet()


async def test_oversized_messages_get_errors_and_service_goes_on(http: aiohttp.ClientSession, start: StartServer, publisher: Ed25519PrivateKey) -> None:
    server = await start(max_message_bytes=1024, max_frame_bytes=8192)
    pub = tiny_publication(publisher)
    await publish(http, server, pub)
    a, b = await join_pair(http, server, pub.swarm_id)
    big = Offer(to=b.peer_id, sdp="a=x" * 400, auth=AUTH)  # valid, but 1.6 kB of JSON
    assert len(dump(big)) > 1024
    await a.send(big)
    await a.expect_error("too_large")
    await b.quiet()  # not relayed
    early, _ = await connect(http, server)
    await early.send(big)
    await early.expect_error("too_large")
    await a.send(Offer(to=b.peer_id, sdp=SDP, auth=AUTH))  # the sender itself keeps working
    assert (await b.expect(Offer)).from_ == a.peer_id
    # beyond max_frame_bytes aiohttp closes that one socket (1009); the others carry on
    await b.send("x" * 10_000)
    closed = await b.expect_closed()
    assert closed.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG, closed
    assert (await a.expect(PeerLeft)).peer_id == b.peer_id
    c, _ = await join(http, server, pub.swarm_id)
    await a.expect(PeerJoined)
    await c.send(Offer(to=a.peer_id, sdp=SDP, auth=AUTH))
    assert (await a.expect(Offer)).from_ == c.peer_id


async def test_rate_limit(http: aiohttp.ClientSession, start: StartServer, publisher: Ed25519PrivateKey) -> None:
    server = await start(messages_per_second=0.01, burst=3)
    pub = tiny_publication(publisher)
    await publish(http, server, pub)
    a, b = await join_pair(http, server, pub.swarm_id)
    for _ in range(5):
        await a.send(Ping())
    replies = [await a.recv() for _ in range(5)]
    assert [type(r).__name__ for r in replies] == ["Pong", "Pong", "Pong", "Error", "Error"]
    assert all(r.code == "rate_limited" for r in replies[3:])
    await a.send(Offer(to=b.peer_id, sdp=SDP, auth=AUTH))  # still limited: not relayed
    await a.expect_error("rate_limited")
    await b.quiet()  # another connection has its own bucket


async def test_per_address_connection_limits(http: aiohttp.ClientSession, start: StartServer, publisher: Ed25519PrivateKey) -> None:
    server = await start(exempt_loopback=False, max_connections_per_address=3, connect_burst_per_address=100)
    pub = tiny_publication(publisher)
    await publish(http, server, pub)
    open_sockets = [await http.ws_connect(server.ws_url) for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(server.ws_url)
    assert refused.value.status == 429
    await open_sockets.pop().close()  # a slot frees when a connection ends
    await asyncio.sleep(0.2)
    open_sockets.append(await http.ws_connect(server.ws_url))
    for ws in open_sockets:
        await ws.close()
    async with http.get(f"{server.base}/health") as resp:
        assert resp.status == 200  # everyone else is still served


async def test_per_address_connect_rate_and_upload_limits(http: aiohttp.ClientSession, start: StartServer, publisher: Ed25519PrivateKey) -> None:
    server = await start(exempt_loopback=False, connects_per_second_per_address=0.01, connect_burst_per_address=2,
                         uploads_per_minute_per_address=1)  # fmt: skip
    for _ in range(2):
        await (await http.ws_connect(server.ws_url)).close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(server.ws_url)
    assert refused.value.status == 429
    await publish(http, server, tiny_publication(publisher))
    before = stored_files(server.data_dir)
    status, body = await post_publish(http, server, envelope_json(tiny_publication(publisher).signed), [])
    assert (status, body["error"]) == (429, "rate_limited") and "uploads per minute" in body["message"]
    assert stored_files(server.data_dir) == before
    async with http.get(f"{server.base}/health") as resp:  # the refusals the limits promise, counted
        assert (await resp.json())["refused"] == {"connect_rate": 1, "uploads": 1}


