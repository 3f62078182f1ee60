"""Reputation over real links: a neighbor that keeps sending bad frames is banned.

Two in-process meshes on a real signaling server and real aiortc (fixtures of
test_mesh_link). The receiving side runs the peer's real ``MeshTransport`` and
``FrameVerifier``; the sender pushes junk and forged frames. After ``STRIKES_TO_BAN`` strikes
the receiver closes the link and refuses the sender's new offers; frames beyond the
per-neighbor rate are dropped before any parsing.
"""

from __future__ import annotations

import asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.gossip import GossipEngine
from peer.link import LinkState
from peer.metrics import PeerMetrics
from peer.ratelimit import TokenBucket
from peer.transport import FRAME_BURST, STRIKES_TO_BAN, MeshTransport
from peer.verifier import FrameVerifier
from protocols.frame import FrameKind, build_frame

from test_mesh_link import MAX_FRAME, TIMEOUT, Side, eventually, open_link, pair, swarm_url  # noqa: F401  (fixtures)


def guard(side: Side) -> MeshTransport:
    """Put the peer's real transport behind ``side``'s mesh (no model: bad frames never reach one)."""
    mesh = side.mesh
    verifier = FrameVerifier(swarm_id=bytes.fromhex(mesh.swarm_id), model_id=b"\x07" * 32, own_key=mesh.public_key,
                             is_known=lambda key: any(l.remote_key == key for l in mesh.links.values()),
                             shapes=[(2,)], max_frame_size=MAX_FRAME)  # fmt: skip
    transport = MeshTransport(mesh.key, swarm_id=bytes.fromhex(mesh.swarm_id), model_id=b"\x07" * 32, verifier=verifier,
                              engine=GossipEngine(None), metrics=PeerMetrics(mesh.peer_id),  # type: ignore[arg-type]
                              links=lambda: mesh.links)  # fmt: skip
    transport.on_misbehaving = lambda peer, why: mesh.ban(peer)
    mesh.on_frame = transport.on_frame
    for link in mesh.links.values():
        link._on_frame = transport.on_frame
    return transport


async def test_a_neighbor_sending_forged_frames_is_banned_and_refused(pair: tuple[Side, Side]) -> None:
    a, b = pair
    link, _ = await open_link(a, b)
    transport = guard(b)
    for seq in range(STRIKES_TO_BAN):
        forged = bytearray(build_frame(a.mesh.key, kind=FrameKind.EXCHANGE_REQUEST, swarm_id=bytes.fromhex(a.mesh.swarm_id),
                                       model_id=b"\x07" * 32, receiver=b.mesh.public_key, session=1, seq=seq + 1,
                                       exchange_id=seq, sample_weight=1.0, step=0, tensors=[]).encode())  # fmt: skip
        forged[150] ^= 0xFF  # inside the signed header: the signature no longer verifies
        await link.send(lambda f=bytes(forged): f)
    await eventually(lambda: transport.metrics.bans == 1, TIMEOUT, "the receiver bans the sender")
    assert transport.metrics.rejected["bad_signature"] == STRIKES_TO_BAN
    await eventually(lambda: link.state == LinkState.CLOSED, TIMEOUT, "the banned sender's link closes")
    assert b.mesh.is_banned(a.mesh.peer_id)
    # the banned peer's new offer reaches the receiver and is refused there: no answer, no link
    refused = b.mesh.stats.signal_rejects.get("not_linking", 0)
    retry = await a.mesh.connect_to(a.mesh.known[b.mesh.peer_id])
    await eventually(lambda: b.mesh.stats.signal_rejects.get("not_linking", 0) > refused, TIMEOUT,
                     "the receiver saw the banned peer's offer and refused it")  # fmt: skip
    assert b.mesh.stats.signal_rejects_by_sender[a.mesh.peer_id] >= 1
    assert retry.state != LinkState.OPEN and a.mesh.peer_id not in b.mesh.links
    assert retry.pc.remoteDescription is None  # no answer ever came back


async def test_frames_beyond_the_neighbor_rate_are_dropped_unparsed(pair: tuple[Side, Side]) -> None:
    a, b = pair
    link, _ = await open_link(a, b)
    transport = guard(b)
    sent = FRAME_BURST + 30
    for seq in range(sent):  # valid, signed declines nobody asked for: counted, but no strike
        frame = build_frame(a.mesh.key, kind=FrameKind.EXCHANGE_DECLINE, swarm_id=bytes.fromhex(a.mesh.swarm_id),
                            model_id=b"\x07" * 32, receiver=b.mesh.public_key, session=1, seq=seq + 1,
                            exchange_id=10_000 + seq, sample_weight=0.0, step=0).encode()  # fmt: skip
        await link.send(lambda f=frame: f)
    await eventually(lambda: sum(transport.metrics.rejected.values()) >= sent, TIMEOUT, "every frame counted")
    assert transport.metrics.rejected["rate_limited"] >= 20  # a few tokens refill while frames arrive
    assert transport.metrics.rejected["unexpected"] >= FRAME_BURST
    assert transport.metrics.bans == 0 and link.state == LinkState.OPEN  # a fast neighbor is slowed, not banned


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=5, clock=lambda: now[0])
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.25  # 2.5 tokens
    assert [bucket.take() for _ in range(3)] == [True, True, False]
