"""No message another peer can send ends a browser peer's signaling session (as tests/test_signaling_resilience.py).

A Chromium tab joins a tiny published swarm; an attacker built from the Python ``Mesh`` sends
it an offer with junk SDP, a malformed candidate, a real offer followed by malformed
candidates, and then 1,000 offers (junk, no data channel, and real SDP), paced under the
server's per-connection limit so every one reaches the tab. The tab must refuse and count
them by reason and by sender, answer only a handful (no amplification), keep its one
signaling session, and still link with an honest Python newcomer. Then a bug in the tab's
message handling ends the session: the tab reconnects and takes the ICE servers of the new
``welcome``, not the ones it had.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import Page

from apps.publish import upload
from peer.ice import use_candidate_addresses
from peer.link import LinkState, PeerLink
from peer.mesh import OFFER_BURST, Mesh, MeshConfig
from protocols.manifest import sign_manifest
from protocols.signaling import Answer, Candidate, Offer

from browser import chromium
from test_signaling_resilience import signed_offer
from tiny_swarm import Publication, tiny_publication

TIMEOUT = 30.0
MAX_FRAME = 1 << 20
# tiny_swarm's 4-3 dense layer as a TF.js layers topology, so a tab can build and train it
DENSE_4_3 = {
    "class_name": "Sequential",
    "config": {"name": "tiny", "layers": [{"class_name": "Dense", "config": {
        "name": "dense", "units": 3, "activation": "softmax", "use_bias": True, "batch_input_shape": [None, 4]}}]},
}  # fmt: skip
MESH = "window.swarmPeer.mesh"
REJECTS = f"() => ({{...{MESH}.stats.signalRejects}})"


def tab_publication(**gossip: Any) -> Publication:
    """The tiny swarm with a topology the browser can load: a few hundred bytes, no TensorFlow here."""
    key = Ed25519PrivateKey.generate()
    pub = tiny_publication(key)
    manifest = pub.manifest.model_copy(update={
        "model": pub.manifest.model.model_copy(update={"topology": DENSE_4_3}),
        "gossip": pub.manifest.gossip.model_copy(update=gossip),
    })  # fmt: skip
    return Publication(sign_manifest(key, manifest), manifest, pub.blobs)


async def open_tab(page: Page, join_url: str) -> str:
    """Open the join link, wait until the tab trains, pause it (it keeps answering); its peer id."""
    await page.goto(f"{join_url}?key=ephemeral")
    await page.wait_for_function("window.swarmPeer && window.swarmPeer.status === 'training'", timeout=60_000)
    await page.evaluate("() => window.swarmPeer.pause()")  # the signaling path needs no training; spare the 2 cores
    return await page.evaluate("() => window.swarmPeer.peerId")  # type: ignore[no-any-return]


async def _ignore(link: PeerLink, data: bytes) -> None:
    return None


async def python_mesh(ws_url: str, swarm_id: str, *, ready: bool = True) -> Mesh:
    """A joined Python mesh that makes no links on its own (degree 0); it answers offers when ``ready``."""
    mesh = Mesh(Ed25519PrivateKey.generate(), ws_url, swarm_id, MeshConfig(degree=0, max_degree=4),
                max_frame_size=MAX_FRAME, on_frame=_ignore)  # fmt: skip
    if ready:
        mesh.accept_links()  # before the welcome, so no offer finds it not ready
    await asyncio.wait_for(mesh.start(), TIMEOUT)
    return mesh


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT) -> None:
    """Poll a condition (in the page or here) within a deadline."""
    try:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


@pytest.fixture
async def swarm(server: str) -> AsyncIterator[tuple[str, str, str]]:
    """(join url, ws url, swarm id) of a tiny swarm on the real server, with loopback-only aiortc."""
    reply = await upload(server, tab_publication())
    use_candidate_addresses(["127.0.0.1"])
    try:
        yield reply["join_url"], server.replace("http", "ws", 1) + "/ws", reply["swarm_id"]
    finally:
        use_candidate_addresses(None)


@pytest.mark.timeout(180)
async def test_junk_signaling_and_an_offer_flood_leave_the_tab_registered_and_linking(swarm: tuple[str, str, str]) -> None:
    join_url, ws_url, swarm_id = swarm
    meshes: list[Mesh] = []
    errors: list[str] = []
    try:
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            victim = await open_tab(page, join_url)
            await page.evaluate(f"() => {{ {MESH}.config.degree = 0; }}")  # it offers to nobody: every reply counted is an answer's
            attacker = await python_mesh(ws_url, swarm_id, ready=False)  # answers nothing the tab might send
            meshes.append(attacker)

            async def tab_knows(peer_id: str) -> bool:
                return bool(await page.evaluate(f"(id) => {MESH}.known.has(id)", peer_id))

            await eventually(lambda: tab_knows(attacker.peer_id), "the tab knows the attacker")
            assert victim in attacker.known
            replies: list[str] = []  # every relayed message the tab sent the attacker
            real_dispatch = attacker._dispatch

            async def count(msg: object) -> None:
                if isinstance(msg, Offer | Answer | Candidate) and msg.from_ == victim:
                    replies.append(msg.type)
                await real_dispatch(msg)

            attacker._dispatch = count  # type: ignore[method-assign]

            async def rejects() -> dict[str, int]:
                return await page.evaluate(REJECTS)  # type: ignore[no-any-return]

            # 1. the review's two messages: junk SDP, then a malformed candidate
            await attacker._send(signed_offer(attacker, victim, "junk"))
            await attacker._send(Candidate(to=victim, candidate="candidate:garbage", sdp_mid="0"))
            # 2. a real offer, then malformed candidates for the link the tab now holds
            link = await attacker.connect_to(attacker.known[victim])
            real_sdp = link.pc.localDescription.sdp
            await attacker._send(Candidate(to=victim, candidate="candidate:garbage", sdp_mid="0"))
            await attacker._send(Candidate(to=victim, candidate="candidate:1 1 udp 1 1.2.3.4 x typ host", sdp_mid="0"))

            async def candidates_refused() -> bool:
                return (await rejects()).get("bad_candidate", 0) >= 2

            await eventually(candidates_refused, "the malformed candidates were refused and counted")
            assert (await rejects()).get("bad_sdp", 0) == 1, await rejects()  # the junk offer, and nothing sent back for it
            # 3. a flood of offers, a third of them real, paced under the server's 200 messages/s per connection
            flood = ["junk", "v=0\r\n", real_sdp]
            for i in range(1000):
                await attacker._send(signed_offer(attacker, victim, flood[i % 3]))  # a member signs what it sends
                if i % 50 == 49:
                    await asyncio.sleep(0.3)

            async def all_seen() -> bool:
                return sum((await rejects()).values()) >= 1000

            await eventually(all_seen, "the tab saw every offer")
            await asyncio.sleep(1.0)  # any late answer would have arrived by now

            stats = await page.evaluate(f"""(id) => ({{ sessions: {MESH}.stats.sessions, connected: {MESH}.connected,
                bySender: {MESH}.stats.signalRejectsBySender.get(id) || 0, rejects: {{...{MESH}.stats.signalRejects}} }})""",
                                        attacker.peer_id)  # fmt: skip
            assert stats["sessions"] == 1 and stats["connected"], stats  # the session was never ended
            assert stats["bySender"] >= 1000, stats
            assert stats["rejects"].get("offer_rate", 0) >= 900, stats
            answers = replies.count("answer")
            assert 1 <= answers <= OFFER_BURST + 1, replies  # the real offer answered; a handful more at most, not 333
            assert len(replies) <= 10 * answers, replies  # each answer trails only its own few candidates
            # the dashboard lists refused signaling messages by reason
            await page.wait_for_function("document.getElementById('signal-rejected').textContent.includes('offer_rate')")

            # the tab is still registered and links with an honest newcomer
            honest = await python_mesh(ws_url, swarm_id)
            meshes.append(honest)
            await eventually(lambda: tab_knows(honest.peer_id), "the tab knows the newcomer")
            honest_link = await honest.connect_to(honest.known[victim])
            await asyncio.wait_for(honest_link.opened.wait(), TIMEOUT)
            assert honest_link.state == LinkState.OPEN

            async def tab_linked() -> bool:
                return bool(await page.evaluate(f"(id) => {MESH}.links.get(id)?.state === 'open'", honest.peer_id))

            await eventually(tab_linked, "the tab's end of the honest link opened")
            refused = await page.evaluate(f"(id) => {MESH}.stats.signalRejectsBySender.get(id) || 0", honest.peer_id)
            assert refused == 0  # nothing of the honest peer's was refused
            assert not errors, errors
    finally:
        await asyncio.gather(*(m.close() for m in meshes), return_exceptions=True)


@pytest.mark.timeout(120)
async def test_the_tab_reconnects_whatever_ends_its_session_and_refreshes_ice_servers(swarm: tuple[str, str, str]) -> None:
    """A bug in the tab's message handling ends the session; the tab rejoins with the new welcome's ICE servers."""
    join_url, _, _ = swarm
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await open_tab(page, join_url)
        welcomed = await page.evaluate(f"() => {MESH}.iceServers")
        await page.evaluate(f"""() => {{
            const mesh = {MESH};
            mesh.iceServers = [{{ urls: ["stun:stale.invalid:3478"] }}];  // what the last welcome would have said
            const real = mesh._onMessage;
            mesh._onMessage = function broken(...args) {{  // the next message hits a bug, the ones after it do not
                mesh._onMessage = real;
                throw new Error("a bug in a signaling handler");
            }};
            mesh._send({{ type: "ping" }});  // the pong is that next message
        }}""")

        async def rejoined() -> bool:
            state = await page.evaluate(f"() => ({{ sessions: {MESH}.stats.sessions, connected: {MESH}.connected }})")
            return bool(state["sessions"] >= 2 and state["connected"])

        await eventually(rejoined, "the tab rejoined")
        refreshed = await page.evaluate(f"() => {MESH}.iceServers")
        assert refreshed == welcomed and all("stale.invalid" not in str(s) for s in refreshed), refreshed
        # and the dashboard says so
        await page.wait_for_function("document.getElementById('signaling').textContent === 'connected'"
                                     " && Number(document.getElementById('sessions').textContent) >= 2")
