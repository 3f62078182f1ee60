"""Two in-process meshes over a real signaling server and real aiortc on loopback.

One mesh offers (``connect_to``) and the other answers, so there is no offer glare to wait
out. Frames larger than a data-channel message travel in chunks and come back whole; the
byte counters of both ends agree; closing one side closes the link on the other.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.ice import use_candidate_addresses
from peer.link import LinkState, PeerLink
from peer.mesh import Mesh, MeshConfig
from protocols.chunking import CHUNK_HEADER_SIZE, DEFAULT_MESSAGE_SIZE
from protocols.crypto import peer_id_of, public_key_bytes
from protocols.manifest import envelope_json
from protocols.signaling import PeerInfo
from signaling.app import make_app
from signaling.config import ServerConfig

from tiny_swarm import publish_form, tiny_publication

TIMEOUT = 30.0
MAX_FRAME = 8 * 1024 * 1024


@dataclass
class Side:
    mesh: Mesh
    frames: asyncio.Queue[tuple[PeerLink, bytes]]

    @property
    def info(self) -> PeerInfo:
        return PeerInfo(peer_id=self.mesh.peer_id, public_key=self.mesh.public_key.hex())


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition the mesh exposes no event for, within a deadline."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


@pytest.fixture
async def swarm_url(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A server on 127.0.0.1 with a tiny published swarm: (ws url, swarm id)."""
    runner = web.AppRunner(make_app(ServerConfig(data_dir=tmp_path / "server")), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        pub = tiny_publication(Ed25519PrivateKey.generate())
        form = publish_form(envelope_json(pub.signed), pub.parts())
        async with aiohttp.ClientSession() as http, http.post(f"{base}/api/publish", data=form) as resp:
            assert resp.status == 201, await resp.text()
        yield base.replace("http", "ws", 1) + "/ws", pub.swarm_id
    finally:
        await runner.cleanup()


@pytest.fixture
async def pair(swarm_url: tuple[str, str], request: pytest.FixtureRequest) -> AsyncIterator[tuple[Side, Side]]:
    """Two joined meshes that make no links on their own (``degree`` 0) and accept one offer.

    Their frame limit is ``MAX_FRAME``, or the test's indirect parameter.
    """
    max_frame = getattr(request, "param", MAX_FRAME)
    ws_url, swarm_id = swarm_url
    use_candidate_addresses(["127.0.0.1"])
    sides: list[Side] = []
    try:
        for _ in range(2):
            frames: asyncio.Queue[tuple[PeerLink, bytes]] = asyncio.Queue()

            async def on_frame(link: PeerLink, data: bytes, frames: asyncio.Queue[tuple[PeerLink, bytes]] = frames) -> None:
                frames.put_nowait((link, data))

            config = MeshConfig(degree=0, max_degree=1, maintain_interval=0.1)
            mesh = Mesh(Ed25519PrivateKey.generate(), ws_url, swarm_id, config, max_frame_size=max_frame, on_frame=on_frame)
            sides.append(Side(mesh, frames))
            await asyncio.wait_for(mesh.start(), TIMEOUT)
            mesh.accept_links()
        yield sides[0], sides[1]
    finally:
        await asyncio.gather(*(s.mesh.close() for s in sides), return_exceptions=True)
        use_candidate_addresses(None)


async def open_link(offerer: Side, answerer: Side) -> tuple[PeerLink, PeerLink]:
    """``offerer`` connects to ``answerer``; return both ends once their channels are open."""
    await eventually(lambda: answerer.mesh.peer_id in offerer.mesh.known and offerer.mesh.peer_id in answerer.mesh.known,
                     TIMEOUT, "both meshes know each other")  # fmt: skip
    link = await offerer.mesh.connect_to(offerer.mesh.known[answerer.mesh.peer_id])
    await asyncio.wait_for(link.opened.wait(), TIMEOUT)
    remote = answerer.mesh.links[offerer.mesh.peer_id]  # made when the offer arrived, before our channel opened
    await asyncio.wait_for(remote.opened.wait(), TIMEOUT)
    assert link.state == remote.state == LinkState.OPEN
    return link, remote


def wire_bytes(frame_len: int) -> int:
    """Bytes a frame takes on the data channel: the frame plus one chunk header per message."""
    return frame_len + CHUNK_HEADER_SIZE * max(1, math.ceil(frame_len / (DEFAULT_MESSAGE_SIZE - CHUNK_HEADER_SIZE)))


async def test_large_frames_arrive_whole_both_ways_and_counters_agree(pair: tuple[Side, Side]) -> None:
    a, b = pair
    ab, ba = await open_link(a, b)
    assert (ab.peer_id, ba.peer_id) == (b.mesh.peer_id, a.mesh.peer_id)
    assert ab.remote_key == public_key_bytes(b.mesh.key) and peer_id_of(ba.remote_key) == a.mesh.peer_id

    big = os.urandom(3 * 1024 * 1024 + 12345)  # a dozen chunks, the last one partial
    small = secrets.token_bytes(100)
    await ab.send(lambda: big)
    await ab.send(lambda: small)
    await ba.send(lambda: big[::-1])
    for receiver, end, want in ((b, ba, big), (b, ba, small), (a, ab, big[::-1])):
        link, data = await asyncio.wait_for(receiver.frames.get(), TIMEOUT)
        assert link is end and len(data) == len(want) and data == want  # whole and in order
    assert a.frames.empty() and b.frames.empty()

    ab_bytes = wire_bytes(len(big)) + wire_bytes(len(small))
    assert ab.bytes_sent == ba.bytes_received == ab_bytes
    assert ba.bytes_sent == ab.bytes_received == wire_bytes(len(big))
    assert not a.mesh.stats.chunk_rejects and not b.mesh.stats.chunk_rejects


SLOW_SEND = 96 * 1024 * 1024  # ~10 s through one process's aiortc; each drain to low water (3 MiB) well under 1 s


@pytest.mark.parametrize("pair", [SLOW_SEND + 4096], indirect=True)
async def test_a_send_longer_than_its_allowance_finishes_while_the_buffer_keeps_draining(pair: tuple[Side, Side]) -> None:
    """The allowance counts from the last drain to low water, not from the send's start (peer/link.py send):
    a link slower than its estimate (a lossy mobile path) finishes its frame instead of timing out."""
    a, b = pair
    ab, ba = await open_link(a, b)
    ab.send_timeout, ab.rate_bytes_s = 2.0, 1e12  # a rate estimate far above what this link does
    data = os.urandom(SLOW_SEND)
    started = time.monotonic()
    await ab.send(lambda: data)
    took = time.monotonic() - started
    link, got = await asyncio.wait_for(b.frames.get(), 300)
    assert link is ba and got == data
    assert took > 2 * ab.send_timeout, f"the send took {took:.1f} s: too fast to show the allowance renewing"


async def test_frame_above_the_receivers_limit_is_rejected_not_delivered(pair: tuple[Side, Side]) -> None:
    a, b = pair
    ab, ba = await open_link(a, b)
    await ab.send(lambda: bytes(MAX_FRAME + 1))
    await ab.send(lambda: b"after")  # the link survives the reject
    link, data = await asyncio.wait_for(b.frames.get(), TIMEOUT)
    assert (link, data) == (ba, b"after")
    assert b.mesh.stats.chunk_rejects.get("oversize", 0) >= 1


async def test_closing_one_side_closes_the_link_on_the_other(pair: tuple[Side, Side]) -> None:
    a, b = pair
    ab, ba = await open_link(a, b)
    await a.mesh.close()
    assert ab.state == LinkState.CLOSED and b.mesh.peer_id not in a.mesh.links
    await eventually(lambda: ba.state == LinkState.CLOSED, 15.0, "the remote end noticed the close")
    await eventually(lambda: a.mesh.peer_id not in b.mesh.links, 5.0, "the mesh dropped the closed link")
    with pytest.raises(ConnectionError):
        await ba.send(lambda: b"too late")


async def test_a_mesh_with_only_peers_refuses_offers_from_anyone_else(pair: tuple[Side, Side]) -> None:
    """A FedAvg client links only with its aggregator: an offer from another member is refused, counted."""
    a, b = pair
    b.mesh.config.only_peers = {"0" * 32}  # someone else: the aggregator
    await eventually(lambda: b.mesh.peer_id in a.mesh.known and a.mesh.peer_id in b.mesh.known, TIMEOUT, "both meshes know each other")
    await a.mesh.connect_to(a.mesh.known[b.mesh.peer_id])
    await eventually(lambda: b.mesh.stats.signal_rejects.get("not_linking", 0) >= 1, TIMEOUT, "b refused a's offer")
    assert a.mesh.peer_id not in b.mesh.links
    b.mesh.config.only_peers = {a.mesh.peer_id}  # now a is the one peer b links with
    ab, ba = await open_link(a, b)
    assert ba.peer_id == a.mesh.peer_id
