"""A rogue swarm member: a valid key that sends every kind of tampered frame.

Shared by the Python and browser end-to-end tests: every frame must be rejected, each for
its own reason, while training goes on.

The rogue answers every proposal, request and pull with a signed decline (in a session of its
own, so its replies never make a tampered frame look replayed). A rogue that stayed silent was
dropped by honest peers after two unanswered proposals (each waits an exchange deadline), and on a loaded 2-core
machine that once cut its tampered frames off before the last of them arrived: the test then
measured our scheduler, not our verifier.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.fetch import fetch_manifest
from peer.ice import use_candidate_addresses
from peer.link import PeerLink
from peer.mesh import Mesh, MeshConfig
from protocols.codecs import CodecId
from protocols.crypto import sha256, sign
from protocols.frame import FrameKind, build_frame, decode_frame


def hostile_frame(key: Ed25519PrivateKey, tensors: list[np.ndarray], codec: int = CodecId.FLOAT32, **fields: Any) -> bytes:
    """A frame signed by ``key`` whose payload holds ``tensors`` as they are, NaN and infinities included.

    Our encoders refuse non-finite values, so this is how a sender that skips them builds such a
    frame: a good frame of the same layout, its payload swapped and the header re-signed.
    float32 and float16 layouts only (values cast as numpy casts them).
    """
    dtype = {CodecId.FLOAT32: "<f4", CodecId.FLOAT16: "<f2"}[CodecId(codec)]
    zeros = [np.zeros(t.shape, np.float32) for t in tensors]
    frame = build_frame(key, tensors=zeros, codec=int(codec), **fields)
    with np.errstate(over="ignore", invalid="ignore"):
        payload = b"".join(np.ascontiguousarray(t, dtype=dtype).tobytes() for t in tensors)
    signed = replace(frame.header, digest=sha256(payload)).signed_bytes()
    return signed + sign(key, signed) + payload


def tampered_frames(key: Ed25519PrivateKey, swarm: bytes, model: bytes, receiver: bytes, shapes: list[tuple[int, ...]]) -> dict[str, bytes]:
    """One frame per attack, each signed by the rogue's own (swarm-member) key."""
    good = [np.zeros(s, np.float32) for s in shapes]

    def frame(seq: int, **over: Any) -> bytes:
        fields: dict[str, Any] = dict(kind=FrameKind.EXCHANGE_REQUEST, swarm_id=swarm, model_id=model,
                                      receiver=receiver, session=1, seq=seq, exchange_id=seq,
                                      sample_weight=1e6, step=0, tensors=good)  # fmt: skip
        fields.update(over)
        if any(not np.isfinite(t).all() for t in fields["tensors"]):  # our codecs refuse to encode these
            return hostile_frame(key, **fields)
        return build_frame(key, **fields).encode()

    def flip(data: bytes, index: int) -> bytes:
        out = bytearray(data)
        out[index] ^= 0xFF
        return bytes(out)

    nan = [np.full(s, np.nan, np.float32) for s in shapes]
    return {
        "bad_digest": flip(frame(1), -5),
        "bad_signature": flip(frame(2), 150),
        "wrong_swarm": frame(3, swarm_id=b"\x00" * 16),
        "wrong_model": frame(4, model_id=b"\x00" * 32),
        "wrong_receiver": frame(5, receiver=b"\x01" * 32),
        "non_finite": frame(6, tensors=nan),
        "bad_shape": frame(7, tensors=[np.zeros((3,), np.float32)]),
    }


async def join_rogue(join_url: str, n_peers: int) -> tuple[Mesh, int, dict[str, int]]:
    """Join as a member, link to every peer, send each the tampered frames.

    Returns (mesh, tampered frames per peer, declines sent so far by peer id); the declines go on
    until the mesh closes, and they are the only frames of the rogue a peer may accept.

    The caller closes the mesh once the peers reported the rejects (closing earlier could
    cut frames still in flight).
    """
    server, swarm_id = join_url.rsplit("/s/", 1)
    async with aiohttp.ClientSession() as http:
        signed, manifest = await fetch_manifest(http, server, swarm_id)
    shapes = [tuple(w.shape) for w in manifest.model.weights]
    key = Ed25519PrivateKey.generate()

    replies = itertools.count(1)
    declined: dict[str, int] = {}
    asks = (FrameKind.EXCHANGE_PROPOSE, FrameKind.EXCHANGE_REQUEST, FrameKind.PULL_REQUEST)

    async def decline(link: PeerLink, data: bytes) -> None:
        try:
            h = decode_frame(data).header
        except Exception:  # noqa: BLE001 - whatever an honest peer sent, the rogue only declines or ignores
            return
        if h.kind not in asks:
            return
        reply = build_frame(key, kind=FrameKind.EXCHANGE_DECLINE, swarm_id=h.swarm_id, model_id=h.model_id,
                            receiver=link.remote_key, session=2, seq=next(replies), exchange_id=h.exchange_id,
                            sample_weight=0.0, step=0).encode()  # fmt: skip
        try:
            await link.send(lambda: reply)
            declined[link.peer_id] = declined.get(link.peer_id, 0) + 1
        except (ConnectionError, TimeoutError):
            pass  # the link closed under us: the test is over or the peer dropped us

    use_candidate_addresses(["127.0.0.1"])
    mesh = Mesh(key, server.replace("http", "ws", 1) + "/ws", swarm_id, MeshConfig(degree=n_peers, max_degree=n_peers),
                max_frame_size=1 << 20, on_frame=decline)  # fmt: skip
    try:
        await asyncio.wait_for(mesh.start(), 30)
        mesh.accept_links()
        async with asyncio.timeout(90):
            while len(mesh.open_links()) < n_peers:
                await asyncio.sleep(0.2)
        for link in mesh.open_links():
            frames = tampered_frames(key, bytes.fromhex(swarm_id), bytes.fromhex(signed.model_id), link.remote_key, shapes)
            for data in frames.values():
                await link.send(lambda d=data: d)
        # send() returns once a frame is buffered (up to HIGH_WATER): wait until every frame left
        # this process, so a caller's deadline counts delivery, not our own SCTP queue
        started = time.monotonic()
        async with asyncio.timeout(60):
            while any(link.channel is not None and link.channel.bufferedAmount for link in mesh.open_links()):
                await asyncio.sleep(0.05)
        print(f"rogue: {len(frames)} frames to each of {n_peers} peers left its buffers {time.monotonic() - started:.2f} s after the last was queued")
        return mesh, len(frames), declined
    except BaseException:
        await mesh.close()
        raise
    finally:
        use_candidate_addresses(None)
