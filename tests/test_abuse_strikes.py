"""Every kind of abuse on a data channel is a strike against the sending neighbor (issue 14, item 6).

Two in-process meshes over a real signaling server and real aiortc (fixtures of
test_mesh_link); the receiving side runs the peer's real ``MeshTransport`` and ``FrameVerifier``
wired as ``peer.node`` wires them (the transport's ``on_frame`` and ``on_chunk_error`` are the
mesh's handlers). The sender abuses its link below the frame level: 20,000 junk chunks, a dozen text messages, a frame above the receiver's limit, a 16 MiB
data-channel message, a transfer that stops half way, and signed replies nobody asked for. Each
is refused and counted; junk, text and unsolicited weights get the sender banned after
``STRIKES_TO_BAN`` strikes; one oversized frame is one strike, not one per chunk; the 16 MiB
message is refused while it arrives; the stalled transfer drops the link.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from peer.gossip import GossipEngine, Update
from peer.link import STALL_TIMEOUT_S, LinkState, PeerLink, sctp_inbound
from peer.metrics import PeerMetrics
from peer.transport import STRIKES_TO_BAN, MeshTransport
from peer.verifier import FrameVerifier
from protocols.chunking import MAX_MESSAGE_SIZE, split_frame
from protocols.frame import FrameKind, build_frame

from test_mesh_link import MAX_FRAME, TIMEOUT, Side, eventually, open_link, pair, swarm_url  # noqa: F401  (fixtures)

MODEL_ID = b"\x07" * 32
SHAPES = [(2,)]


def guard(side: Side, link: PeerLink) -> MeshTransport:
    """The peer's real transport behind ``side``'s mesh, wired as peer.node wires it."""
    mesh = side.mesh
    metrics = PeerMetrics(mesh.peer_id)
    verifier = FrameVerifier(swarm_id=bytes.fromhex(mesh.swarm_id), model_id=MODEL_ID, own_key=mesh.public_key,
                             is_known=lambda key: any(l.remote_key == key for l in mesh.links.values()),
                             shapes=SHAPES, max_frame_size=MAX_FRAME)  # fmt: skip
    transport = MeshTransport(mesh.key, swarm_id=bytes.fromhex(mesh.swarm_id), model_id=MODEL_ID, verifier=verifier,
                              engine=GossipEngine(None), metrics=metrics, links=lambda: mesh.links)  # type: ignore[arg-type]  # fmt: skip
    transport.on_misbehaving = lambda peer, why: mesh.ban(peer)
    mesh.on_frame, mesh.on_chunk_error = transport.on_frame, transport.on_chunk_error
    link._on_frame = transport.on_frame
    return transport


def strikes(transport: MeshTransport, peer: str) -> int:
    return len(transport._strikes.get(peer, ()))


def response(a: Side, b: Side, seq: int, exchange_id: int) -> bytes:
    """A valid, signed EXCHANGE_RESPONSE carrying weights, from ``a`` to ``b``."""
    return build_frame(a.mesh.key, kind=FrameKind.EXCHANGE_RESPONSE, swarm_id=bytes.fromhex(a.mesh.swarm_id),
                       model_id=MODEL_ID, receiver=b.mesh.public_key, session=1, seq=seq, exchange_id=exchange_id,
                       sample_weight=1.0, step=0, tensors=[np.ones(2, np.float32)]).encode()  # fmt: skip


def decline(a: Side, b: Side) -> bytes:
    return build_frame(a.mesh.key, kind=FrameKind.EXCHANGE_DECLINE, swarm_id=bytes.fromhex(a.mesh.swarm_id),
                       model_id=MODEL_ID, receiver=b.mesh.public_key, session=1, seq=1, exchange_id=99,
                       sample_weight=0.0, step=0).encode()  # fmt: skip


async def banned(transport: MeshTransport, link: PeerLink, side: Side, peer: str) -> float:
    """Wait for the ban; return when it happened (monotonic)."""
    await eventually(lambda: transport.metrics.bans >= 1, TIMEOUT, "the receiver bans the sender")
    at = time.monotonic()
    await eventually(lambda: link.state == LinkState.CLOSED, TIMEOUT, "the banned sender's link closes")
    assert side.mesh.is_banned(peer)
    return at


async def test_20000_junk_chunks_get_the_sender_banned(pair: tuple[Side, Side]) -> None:
    a, b = pair
    ab, ba = await open_link(a, b)
    transport = guard(b, ba)
    junk = b"XX" + bytes(30)  # a bad chunk magic: no transfer, no frame, today only counted
    started = time.monotonic()
    for _ in range(20_000):
        ab.channel.send(junk)  # type: ignore[union-attr]
    at = await banned(transport, ba, b, a.mesh.peer_id)
    seen = b.mesh.stats.chunk_rejects.get("bad_chunk", 0)
    print(f"\n20,000 junk chunks: banned after {STRIKES_TO_BAN} strikes in {at - started:.2f} s; "
          f"{seen} junk messages handled, the rest never read")  # fmt: skip
    assert transport.metrics.bans == 1 and seen >= STRIKES_TO_BAN
    assert seen < 20_000  # the link closed: the flood stopped costing anything


async def test_a_dozen_text_messages_get_the_sender_banned(pair: tuple[Side, Side]) -> None:
    a, b = pair
    ab, ba = await open_link(a, b)
    transport = guard(b, ba)
    started = time.monotonic()
    for i in range(12):
        ab.channel.send(f"hello {i}")  # type: ignore[union-attr]
    at = await banned(transport, ba, b, a.mesh.peer_id)
    print(f"\n12 text messages: banned after {STRIKES_TO_BAN} strikes in {at - started:.2f} s")
    assert transport.metrics.rejected["malformed"] >= STRIKES_TO_BAN and transport.metrics.bans == 1


async def test_an_oversized_frame_is_one_strike_and_the_link_survives(pair: tuple[Side, Side]) -> None:
    a, b = pair
    ab, ba = await open_link(a, b)
    transport = guard(b, ba)
    chunks = len(list(split_frame(bytes(MAX_FRAME + 1), 1)))
    await ab.send(lambda: bytes(MAX_FRAME + 1))  # 33 chunks, each declaring a frame above the limit
    await ab.send(lambda: decline(a, b))  # a good frame after it: unasked for, counted, but no strike
    await eventually(lambda: transport.metrics.rejected["unexpected"] == 1, TIMEOUT, "the frame after it arrives")
    print(f"\none frame above the limit in {chunks} chunks: {b.mesh.stats.chunk_rejects.get('oversize')} reject, "
          f"{strikes(transport, a.mesh.peer_id)} strike")  # fmt: skip
    assert b.mesh.stats.chunk_rejects == {"oversize": 1}  # not one per chunk
    assert strikes(transport, a.mesh.peer_id) == 1 and transport.metrics.bans == 0
    assert ba.state == LinkState.OPEN


async def test_a_16_mib_message_is_refused_while_it_arrives(pair: tuple[Side, Side]) -> None:
    a, b = pair
    ab, ba = await open_link(a, b)
    transport = guard(b, ba)
    held: list[int] = []
    count = b.mesh.on_chunk_error
    assert count is not None
    b.mesh.on_chunk_error = lambda reason: (held.append(sctp_inbound(ba.pc)[0]), count(reason))  # type: ignore[func-returns-value]
    ab.pc.sctp._remote_max_message_size = 0  # type: ignore[union-attr]  # a sender that ignores a=max-message-size
    started = time.monotonic()
    ab.channel.send(bytes(16 << 20))  # type: ignore[union-attr]
    await eventually(lambda: ba.state == LinkState.CLOSED, TIMEOUT, "the receiver refuses the message and the link")
    took = time.monotonic() - started
    print(f"\none 16 MiB message: refused after {took:.2f} s with {held[0] / 1024:.0f} KiB of it buffered, "
          f"{strikes(transport, a.mesh.peer_id)} strike, link closed ({ba.closed_reason})")  # fmt: skip
    assert ba.closed_reason == "oversize message" and b.mesh.stats.chunk_rejects == {"oversize": 1}
    assert strikes(transport, a.mesh.peer_id) == 1
    assert MAX_MESSAGE_SIZE < held[0] < 4 * 1024 * 1024  # refused long before all of it arrived
    assert took < 5.0


async def test_a_transfer_that_stops_half_way_drops_the_link(pair: tuple[Side, Side]) -> None:
    a, b = pair
    ab, ba = await open_link(a, b)
    guard(b, ba)
    first = next(split_frame(bytes(2 * MAX_MESSAGE_SIZE), 7))  # chunk 0 of 3; the rest never comes
    started = time.monotonic()
    ab.channel.send(first)  # type: ignore[union-attr]
    await eventually(lambda: ba.state == LinkState.CLOSED, STALL_TIMEOUT_S + TIMEOUT, "the stalled link is dropped")
    took = time.monotonic() - started
    print(f"\na transfer stopped after its first chunk: link dropped after {took:.1f} s (stall timeout {STALL_TIMEOUT_S:.0f} s)")
    assert ba.closed_reason == "stalled"
    assert STALL_TIMEOUT_S <= took < STALL_TIMEOUT_S + 2.0  # on evidence, not after two exchange timeouts (20 s)


async def test_replies_nobody_asked_for_are_strikes_but_a_late_reply_is_not(pair: tuple[Side, Side]) -> None:
    a, b = pair
    ab, ba = await open_link(a, b)
    transport = guard(b, ba)
    # b asks a, which does not answer in time; its late reply afterwards is no misbehaviour
    try:
        async with asyncio.timeout(0.5):
            await transport.request(a.mesh.peer_id, Update([np.zeros(2, np.float32)], 1.0, 0))
    except TimeoutError:
        pass
    await ab.send(lambda: response(a, b, seq=1, exchange_id=1))
    await eventually(lambda: transport.metrics.rejected["unexpected"] == 1, TIMEOUT, "the late reply is counted")
    assert strikes(transport, a.mesh.peer_id) == 0
    # weights for exchanges b never asked for (and the same late reply again) are strikes
    started = time.monotonic()
    for seq in range(2, 2 + STRIKES_TO_BAN):
        await ab.send(lambda s=seq: response(a, b, seq=s, exchange_id=1 if s == 2 else 1000 + s))
    at = await banned(transport, ba, b, a.mesh.peer_id)
    print(f"\n{STRIKES_TO_BAN} unsolicited weight-carrying replies: banned in {at - started:.2f} s; "
          "one late reply after a timeout: no strike")  # fmt: skip
    assert transport.metrics.rejected["unexpected"] >= 1 + STRIKES_TO_BAN


# ---- the browser peer, the same rules -------------------------------------------------------


@pytest.mark.timeout(180)
async def test_a_tab_bans_a_neighbor_flooding_junk_chunks_and_counts_an_oversized_frame_once(server: str) -> None:
    from apps.publish import upload
    from browser import chromium
    from peer.ice import use_candidate_addresses
    from test_browser_signaling_resilience import MESH, open_tab, python_mesh, tab_publication

    reply = await upload(server, tab_publication())
    ws_url = server.replace("http", "ws", 1) + "/ws"
    use_candidate_addresses(["127.0.0.1"])
    try:
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            victim = await open_tab(page, reply["join_url"])
            await page.evaluate(f"() => {{ {MESH}.config.degree = 0; }}")
            attackers = []
            try:
                for flood in (False, True):
                    attacker = await python_mesh(ws_url, reply["swarm_id"])
                    attackers.append(attacker)
                    await eventually(lambda a=attacker: victim in a.known, TIMEOUT, "the attacker knows the tab")
                    for _ in range(100):  # the tab must know the attacker before its offer counts
                        if await page.evaluate(f"(id) => {MESH}.known.has(id)", attacker.peer_id):
                            break
                        await asyncio.sleep(0.1)
                    link = await attacker.connect_to(attacker.known[victim])
                    await asyncio.wait_for(link.opened.wait(), TIMEOUT)
                    state = f"(id) => ({{ state: {MESH}.links.get(id)?.state, banned: {MESH}.isBanned(id), " \
                            "snap: window.swarmPeer.snapshot() })"
                    for _ in range(100):
                        if (await page.evaluate(state, attacker.peer_id))["state"] == "open":
                            break
                        await asyncio.sleep(0.1)
                    if not flood:  # one frame above the tab's limit, in many chunks: one strike, the link stays
                        await link.send(lambda: bytes(20 * MAX_MESSAGE_SIZE))
                        await asyncio.sleep(2.0)
                        got = await page.evaluate(state, attacker.peer_id)
                        assert got["snap"]["rejected"].get("oversize") == 1, got["snap"]["rejected"]
                        assert got["state"] == "open" and got["snap"]["bans"] == 0
                        continue
                    started = time.monotonic()
                    for _ in range(20_000):
                        link.channel.send(b"XX" + bytes(30))  # type: ignore[union-attr]
                    for _ in range(200):
                        got = await page.evaluate(state, attacker.peer_id)
                        if got["snap"]["bans"] >= 1:
                            break
                        await asyncio.sleep(0.05)
                    took = time.monotonic() - started
                    print(f"\nbrowser tab, 20,000 junk chunks: banned in {took:.2f} s after "
                          f"{got['snap']['rejected'].get('bad_chunk')} refused; link {got['state']}")  # fmt: skip
                    assert got["snap"]["bans"] == 1 and got["banned"] and got["state"] in (None, "closed")
            finally:
                await asyncio.gather(*(a.close() for a in attackers))
    finally:
        use_candidate_addresses(None)
