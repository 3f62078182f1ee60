"""A malicious signaling server cannot sit between peers (issue 14, item 4).

The test runs the man in the middle itself: ``Mitm`` serves HTTP and the signaling WebSocket,
relays both to a real server, and rewrites what it relays (``Rewrite``):

- ``KEYS``: every announced public key becomes the attacker's (peer ids untouched). The
  attacker answers every offer itself and offers to every peer, as the peer it impersonates,
  signing what it signs with its own key, and sends 11 frames signed by that key over each link
  it gets. Before link authentication this is what made a victim credit the attacker's frames
  to another honest peer.
- ``FINGERPRINTS``: keys untouched; the attacker swaps its own SDP (its DTLS certificate) into
  every offer and answer between the honest peers, keeping the honest offerer's signature (it
  cannot make one) and signing answers with its own key: a full man in the middle, one leg to
  each peer. Before link authentication both legs opened.
- ``NONE``: a faithful relay, the control: the same peers link and credit each other's frames.

Behind it, two honest Python meshes (in-process ``Mesh`` objects, no TensorFlow) and, in the
browser test, a Chromium tab. Each must refuse every attacked link and count it by reason
(``wrong_key``, ``bad_link_auth``); no link may open, and no frame signed by the attacker's key
may be credited to an honest peer id. A last test covers the Python peer's own check of the
certificate seen in the DTLS handshake (``fingerprint_mismatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.publish import upload
from peer.ice import use_candidate_addresses
from peer.link import LinkState, PeerLink
from peer.mesh import Mesh, MeshConfig
from peer.verifier import FrameRejected, FrameVerifier
from protocols.chunking import DEFAULT_MESSAGE_SIZE, split_frame
from protocols.crypto import answer_message, offer_message, public_key_bytes, sign
from protocols.frame import FrameKind, build_frame
from protocols.signaling import Offer, sdp_fingerprints

from browser import chromium
from test_browser_signaling_resilience import open_tab, tab_publication

TIMEOUT = 30.0
MAX_FRAME = 1 << 20
ATTACK_FRAMES = 11
SHAPES = [(4, 3), (3,)]  # the tiny swarm's dense layer
LINK_AUTH = "auth" in Offer.model_fields  # the attacker speaks whatever protocol the peers speak


class Rewrite(Enum):
    NONE = "none"
    KEYS = "keys"
    FINGERPRINTS = "fingerprints"


@dataclass
class Impostor:
    """One attacker endpoint: an aiortc connection that ``victim`` should take for ``claimed``."""

    pc: RTCPeerConnection
    victim: str
    claimed: str
    opened: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Conn:
    client: web.WebSocketResponse
    up: aiohttp.ClientWebSocketResponse
    peer_id: str = ""
    public_key: str = ""


class Mitm:
    """A malicious signaling server in front of a real one (see the module docstring)."""

    def __init__(self, upstream: str, swarm_id: str, model_id: str, rewrite: Rewrite) -> None:
        self.upstream, self.swarm_id, self.model_id, self.rewrite = upstream, swarm_id, bytes.fromhex(model_id), rewrite
        self.key = Ed25519PrivateKey.generate()
        self.public_key = public_key_bytes(self.key)
        self.conns: dict[str, Conn] = {}
        self.impostors: dict[tuple[str, str], Impostor] = {}  # (victim, claimed) -> the latest one
        self.all_impostors: list[Impostor] = []
        self.sent: Counter[tuple[str, str, str]] = Counter()  # (what, victim, claimed) -> how many reached the victim
        self.http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- serving --------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/{tail:.*}", self._http)
        return app

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(imp.pc.close() for imp in self.all_impostors), return_exceptions=True)

    async def _http(self, request: web.Request) -> web.Response:
        assert self.http is not None
        async with self.http.get(self.upstream + request.path_qs) as resp:
            body = await resp.read()
            return web.Response(body=body, status=resp.status,
                                headers={"Content-Type": resp.headers.get("Content-Type", "application/octet-stream")})  # fmt: skip

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        assert self.http is not None
        client = web.WebSocketResponse(max_msg_size=1 << 20)
        await client.prepare(request)
        async with self.http.ws_connect(self.upstream.replace("http", "ws", 1) + "/ws") as up:
            conn = Conn(client, up)
            pumps = [asyncio.create_task(self._pump(up, client, lambda m: self._from_server(conn, m))),
                     asyncio.create_task(self._pump(client, up, lambda m: self._from_client(conn, m)))]  # fmt: skip
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        await client.close()
        return client

    async def _pump(self, source: Any, sink: Any, rewrite: Callable[[dict[str, Any]], Awaitable[list[dict[str, Any]]]]) -> None:
        async for msg in source:
            if msg.type != WSMsgType.TEXT:
                return
            for out in await rewrite(json.loads(msg.data)):
                await sink.send_str(json.dumps(out))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- rewriting ------------------------------------------------------------------------
    async def _from_server(self, conn: Conn, m: dict[str, Any]) -> list[dict[str, Any]]:
        if m.get("type") == "welcome":
            conn.peer_id = m["peer_id"]
            self.conns[conn.peer_id] = conn
            peers = m["peers"]
        elif m.get("type") == "peer_joined":
            peers = [m["peer"]]
        else:
            return [m]
        if self.rewrite == Rewrite.KEYS:
            for p in peers:
                p["public_key"] = self.public_key.hex()  # same peer id, the attacker's key
                self._spawn(self._offer_as(conn, p["peer_id"]))
        return [m]

    async def _from_client(self, conn: Conn, m: dict[str, Any]) -> list[dict[str, Any]]:
        kind = m.get("type")
        if kind == "join":
            conn.public_key = m["public_key"]
        if self.rewrite == Rewrite.NONE or kind not in ("offer", "answer", "candidate"):
            return [m]
        to = m["to"]
        if kind == "candidate":  # trickled (the browser): for the impostor this peer is really talking to
            imp = self.impostors.get((conn.peer_id, to))
            if imp is not None and m.get("candidate"):
                await _add_candidate(imp.pc, m)
            return []
        if kind == "answer":  # to an impostor's offer
            imp = self.impostors.get((conn.peer_id, to))
            if imp is not None and imp.pc.signalingState == "have-local-offer":
                await imp.pc.setRemoteDescription(RTCSessionDescription(sdp=m["sdp"], type="answer"))
            return []
        # an offer from conn to `to`: the attacker answers it itself ...
        self._spawn(self._answer_as(conn, to, m))
        if self.rewrite == Rewrite.KEYS or to not in self.conns:
            return []
        # ... and, for FINGERPRINTS, offers to `to` as conn with its own SDP and conn's signature
        imp = await self._impostor(self.conns[to], conn.peer_id)
        channel = imp.pc.createDataChannel("gossip", ordered=True)
        channel.on("open", lambda: self._attack(imp, channel))
        await imp.pc.setLocalDescription(await imp.pc.createOffer())
        self.sent["rewritten_offer", to, conn.peer_id] += 1
        return [{**m, "sdp": imp.pc.localDescription.sdp}, {"v": 1, "type": "candidate", "to": to, "candidate": None}]

    # ---- the attacker's endpoints -----------------------------------------------------------
    async def _impostor(self, victim: Conn, claimed: str) -> Impostor:
        old = self.impostors.get((victim.peer_id, claimed))
        if old is not None:
            await old.pc.close()
        imp = Impostor(RTCPeerConnection(RTCConfiguration(iceServers=[])), victim.peer_id, claimed)
        self.impostors[victim.peer_id, claimed] = imp
        self.all_impostors.append(imp)
        return imp

    async def _answer_as(self, victim: Conn, claimed: str, offer: dict[str, Any]) -> None:
        imp = await self._impostor(victim, claimed)
        imp.pc.on("datachannel", lambda channel: self._on_channel(imp, channel))
        await imp.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await imp.pc.setLocalDescription(await imp.pc.createAnswer())
        answer: dict[str, Any] = {"v": 1, "type": "answer", "to": victim.peer_id, "from": claimed, "sdp": imp.pc.localDescription.sdp}
        if "auth" in offer:  # the best it can do: sign with its own key
            nonce = secrets.token_bytes(32)
            fps = sdp_fingerprints(answer["sdp"])
            message = answer_message(self.swarm_id, claimed, victim.peer_id, nonce, bytes.fromhex(offer["auth"]["nonce"]), fps)
            answer["auth"] = {"nonce": nonce.hex(), "signature": sign(self.key, message).hex()}
        await self._deliver(victim, "answer", claimed, answer)

    async def _offer_as(self, victim: Conn, claimed: str) -> None:
        imp = await self._impostor(victim, claimed)
        channel = imp.pc.createDataChannel("gossip", ordered=True)
        channel.on("open", lambda: self._attack(imp, channel))
        await imp.pc.setLocalDescription(await imp.pc.createOffer())
        offer: dict[str, Any] = {"v": 1, "type": "offer", "to": victim.peer_id, "from": claimed, "sdp": imp.pc.localDescription.sdp}
        if LINK_AUTH:
            nonce = secrets.token_bytes(32)
            message = offer_message(self.swarm_id, claimed, victim.peer_id, nonce, sdp_fingerprints(offer["sdp"]))
            offer["auth"] = {"nonce": nonce.hex(), "signature": sign(self.key, message).hex()}
        await self._deliver(victim, "offer", claimed, offer)

    async def _deliver(self, victim: Conn, what: str, claimed: str, message: dict[str, Any]) -> None:
        """A relayed message as the server would send it, ``from`` the impersonated peer."""
        with contextlib.suppress(ConnectionError, RuntimeError):  # the victim left meanwhile
            await victim.client.send_str(json.dumps(message))
            await victim.client.send_str(json.dumps({"v": 1, "type": "candidate", "to": victim.peer_id, "from": claimed,
                                                     "candidate": None, "sdp_mid": None, "sdp_mline_index": None}))  # fmt: skip
            self.sent[what, victim.peer_id, claimed] += 1

    def _on_channel(self, imp: Impostor, channel: RTCDataChannel) -> None:
        if channel.readyState == "open":
            self._attack(imp, channel)
        else:
            channel.on("open", lambda: self._attack(imp, channel))

    def _attack(self, imp: Impostor, channel: RTCDataChannel) -> None:
        """The link opened: send frames signed by the attacker's key, with weights it chose."""
        imp.opened.set()
        victim_key = bytes.fromhex(self.conns[imp.victim].public_key)
        session = secrets.randbits(64)
        for seq in range(1, ATTACK_FRAMES + 1):
            frame = build_frame(self.key, kind=FrameKind.EXCHANGE_REQUEST, swarm_id=bytes.fromhex(self.swarm_id),
                                model_id=self.model_id, receiver=victim_key, session=session, seq=seq, exchange_id=seq,
                                sample_weight=1e6, step=10**6, tensors=[np.full(s, 42.0, np.float32) for s in SHAPES])  # fmt: skip
            for chunk in split_frame(frame.encode(), seq, DEFAULT_MESSAGE_SIZE):
                channel.send(chunk)


async def _add_candidate(pc: RTCPeerConnection, m: dict[str, Any]) -> None:
    text = str(m["candidate"]).removeprefix("candidate:")
    if ".local " in text:
        return
    candidate = candidate_from_sdp(text)
    candidate.sdpMid, candidate.sdpMLineIndex = m.get("sdp_mid"), m.get("sdp_mline_index")
    if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
        candidate.sdpMLineIndex = 0
    with contextlib.suppress(Exception):  # the impostor may be closed already
        await pc.addIceCandidate(candidate)


# ---- honest peers -------------------------------------------------------------------------


@dataclass
class Honest:
    """An honest Python mesh that verifies frames as ``peer/node.py`` does and records what it credits."""

    mesh: Mesh
    verifier: FrameVerifier | None = None
    credited: Counter[tuple[str, str]] = field(default_factory=Counter)  # (link peer id, signer key hex) -> frames
    links_made: list[PeerLink] = field(default_factory=list)

    async def on_frame(self, link: PeerLink, data: bytes) -> None:
        assert self.verifier is not None
        try:
            frame, _ = self.verifier.admit(data, link.remote_key)
        except FrameRejected:
            return  # counted by the verifier
        self.credited[link.peer_id, frame.header.sender.hex()] += 1

    def ever_opened(self) -> list[PeerLink]:
        return [link for link in self.links_made if link.opened.is_set()]


async def honest_mesh(ws_url: str, swarm_id: str, model_id: str, *, degree: int) -> Honest:
    honest = Honest(None)  # type: ignore[arg-type]
    config = MeshConfig(degree=degree, max_degree=4, maintain_interval=0.2, retry_after=1.0, connect_timeout=10.0)
    mesh = Mesh(Ed25519PrivateKey.generate(), ws_url, swarm_id, config, max_frame_size=MAX_FRAME, on_frame=honest.on_frame)
    honest.mesh = mesh
    honest.verifier = FrameVerifier(swarm_id=bytes.fromhex(swarm_id), model_id=bytes.fromhex(model_id),
                                    own_key=mesh.public_key, is_known=lambda key: any(l.remote_key == key for l in mesh.links.values()),
                                    shapes=SHAPES, max_frame_size=MAX_FRAME)  # fmt: skip
    real_new_link = mesh._new_link

    def tracking(info: Any) -> PeerLink:
        link = real_new_link(info)
        honest.links_made.append(link)
        return link

    mesh._new_link = tracking  # type: ignore[method-assign]
    mesh.accept_links()  # before the welcome: no offer finds it not ready
    await asyncio.wait_for(mesh.start(), TIMEOUT)
    return honest


async def send_own_frames(honest: Honest, count: int = 3) -> None:
    """Frames signed by the peer's own key over each open link (what an honest exchange sends)."""
    for link in honest.mesh.open_links():
        for seq in range(1, count + 1):
            frame = build_frame(honest.mesh.key, kind=FrameKind.EXCHANGE_REQUEST, swarm_id=bytes.fromhex(honest.mesh.swarm_id),
                                model_id=honest.verifier.model_id if honest.verifier else b"", receiver=link.remote_key,
                                session=1, seq=seq, exchange_id=seq, sample_weight=1.0, step=0,
                                tensors=[np.zeros(s, np.float32) for s in SHAPES])  # fmt: skip
            await link.send(lambda f=frame: f.encode())


def link_auth_refusals(mesh: Mesh) -> Counter[str]:
    reasons = ("wrong_key", "bad_link_auth", "replayed_offer", "fingerprint_mismatch")
    return Counter({r: mesh.stats.signal_rejects.get(r, 0) for r in reasons if mesh.stats.signal_rejects.get(r, 0)})


# ---- fixtures -------------------------------------------------------------------------------


@dataclass
class Setup:
    mitm: Mitm
    base: str  # the malicious server's URL, what the peers were given
    swarm_id: str
    model_id: str

    @property
    def ws_url(self) -> str:
        return self.base.replace("http", "ws", 1) + "/ws"


@pytest.fixture
async def behind_mitm(server: str, request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    """A tiny swarm on the real ``server`` and a ``Mitm`` (rewriting ``request.param``) in front of it."""
    reply = await upload(server, tab_publication())
    mitm = Mitm(server, reply["swarm_id"], reply["model_id"], request.param)
    runner = web.AppRunner(mitm.app(), access_log=None, shutdown_timeout=1.0)
    use_candidate_addresses(["127.0.0.1"])
    async with aiohttp.ClientSession() as http:
        mitm.http = http
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            yield Setup(mitm, f"http://127.0.0.1:{runner.addresses[0][1]}", reply["swarm_id"], reply["model_id"])
        finally:
            await mitm.close()
            await runner.cleanup()
            use_candidate_addresses(None)


async def settle(condition: Callable[[], bool | Awaitable[bool]], timeout: float = TIMEOUT) -> bool:
    """Wait for ``condition``; False at the deadline (the caller's asserts then say what happened)."""

    async def holds() -> bool:
        value = condition()
        return bool(await value) if inspect.isawaitable(value) else bool(value)

    try:
        async with asyncio.timeout(timeout):
            while not await holds():
                await asyncio.sleep(0.1)
        return True
    except TimeoutError:
        return False


def attacks_on(mitm: Mitm, victim: str) -> Counter[str]:
    """What the attacker delivered to ``victim`` (impostor offers and answers, swapped offers), by impersonated peer."""
    out: Counter[str] = Counter()
    for (_, v, claimed), n in mitm.sent.items():
        if v == victim:
            out[claimed] += n
    return out


def all_refused(mitm: Mitm, mesh_stats: dict[str, int], victim: str, extra: int = 0) -> bool:
    """Every attacked message (plus ``extra`` per impersonated peer, e.g. its PeerInfo) was refused and counted."""
    attacks = attacks_on(mitm, victim)
    return bool(attacks) and all(mesh_stats.get(claimed, 0) >= n + extra for claimed, n in attacks.items())


def attacker_credit(peers: list[Honest], attacker_key: bytes) -> dict[str, int]:
    """Frames signed by the attacker's key that an honest mesh accepted, by the peer id it credited them to."""
    out: Counter[str] = Counter()
    for honest in peers:
        for (peer_id, signer), n in honest.credited.items():
            if signer == attacker_key.hex():
                out[peer_id] += n
    return dict(out)


# ---- Python meshes -------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("behind_mitm", list(Rewrite), ids=lambda r: r.value, indirect=True)
async def test_a_rewriting_server_gets_no_link_and_no_credit(behind_mitm: Setup) -> None:
    s, mitm = behind_mitm, behind_mitm.mitm
    a = b = None
    try:
        a = await honest_mesh(s.ws_url, s.swarm_id, s.model_id, degree=1)  # a offers, b only answers
        b = await honest_mesh(s.ws_url, s.swarm_id, s.model_id, degree=0)
        peers = [a, b]
        ids = {a.mesh.peer_id: a, b.mesh.peer_id: b}

        if mitm.rewrite == Rewrite.NONE:
            await settle(lambda: bool(a.mesh.open_links() and b.mesh.open_links()))
            await asyncio.gather(send_own_frames(a), send_own_frames(b))
            await settle(lambda: sum(a.credited.values()) >= 3 and sum(b.credited.values()) >= 3)
            # the relay itself works: honest frames credited to their signers, nothing refused
            assert a.credited == {(b.mesh.peer_id, b.mesh.public_key.hex()): 3}, a.credited
            assert b.credited == {(a.mesh.peer_id, a.mesh.public_key.hex()): 3}, b.credited
            assert not link_auth_refusals(a.mesh) and not link_auth_refusals(b.mesh)
            return

        extra = 1 if mitm.rewrite == Rewrite.KEYS else 0  # KEYS: the rewritten PeerInfo is refused too

        def refused_or_broken() -> bool:
            broken = any(imp.opened.is_set() for imp in mitm.all_impostors) or any(h.ever_opened() for h in peers)
            return broken or all(all_refused(mitm, h.mesh.stats.signal_rejects_by_sender, h.mesh.peer_id, extra) for h in peers)

        await settle(refused_or_broken)
        await asyncio.sleep(1.0)  # a link that was going to open, and frames that were on their way, are in by now

        opened = [(h.mesh.peer_id[:8], l.peer_id[:8]) for h in peers for l in h.ever_opened()]
        credit = attacker_credit(peers, mitm.public_key)
        assert not credit, f"frames signed by the attacker's key credited to honest peers {credit}"
        assert not opened and not any(i.opened.is_set() for i in mitm.all_impostors), f"links opened: {opened}"
        for h in peers:
            other = next(pid for pid in ids if pid != h.mesh.peer_id)
            refusals, attacks = link_auth_refusals(h.mesh), attacks_on(mitm, h.mesh.peer_id)
            assert set(attacks) == {other}, attacks  # the attacker reached both, in the other's name
            # every attacked message was refused and counted against the peer it claimed to come from
            assert all_refused(mitm, h.mesh.stats.signal_rejects_by_sender, h.mesh.peer_id, extra), (attacks, h.mesh.stats)
            if mitm.rewrite == Rewrite.KEYS:
                # the other's rewritten PeerInfo is refused, so it is never a partner, and offers in its
                # name are refused as not_linking
                assert refusals["wrong_key"] >= 1 and other not in h.mesh.known, (refusals, h.mesh.known)
            else:
                # every swapped SDP fails its signature: offers at b, the attacker's answers at a (b's
                # offer rate limit may refuse some of a's retries first, as offer_rate)
                assert refusals["bad_link_auth"] >= 1 and other in h.mesh.known, refusals
            assert not h.mesh.open_links()
    finally:
        await asyncio.gather(*(h.mesh.close() for h in (a, b) if h is not None), return_exceptions=True)



# ---- a browser tab among them --------------------------------------------------------------

MESH = "window.swarmPeer.mesh"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("behind_mitm", [Rewrite.KEYS, Rewrite.FINGERPRINTS], ids=lambda r: r.value, indirect=True)
async def test_a_browser_tab_behind_a_rewriting_server_gets_no_link_and_no_credit(behind_mitm: Setup) -> None:
    s, mitm = behind_mitm, behind_mitm.mitm
    peers: list[Honest] = []
    errors: list[str] = []
    try:
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            tab = await open_tab(page, f"{s.base}/s/{s.swarm_id}")  # first and alone: it pulls from nobody
            peers += [await honest_mesh(s.ws_url, s.swarm_id, s.model_id, degree=1),
                      await honest_mesh(s.ws_url, s.swarm_id, s.model_id, degree=0)]  # fmt: skip

            async def tab_state() -> dict[str, Any]:
                return await page.evaluate(f"""() => ({{
                    rejects: {{...{MESH}.stats.signalRejects}},
                    bySender: Object.fromEntries({MESH}.stats.signalRejectsBySender),
                    known: [...{MESH}.known.keys()],
                    open: {MESH}.openLinks().map((l) => l.peerId),
                    acceptedFrom: {{...window.swarmPeer.metrics.acceptedFrom}},
                    acceptedKeys: {{...window.swarmPeer.verifier.accepted}} }})""")  # type: ignore[no-any-return]  # fmt: skip

            extra = 1 if mitm.rewrite == Rewrite.KEYS else 0

            async def refused_or_broken() -> bool:
                if any(imp.opened.is_set() for imp in mitm.all_impostors):
                    return True
                state = await tab_state()
                return (len(attacks_on(mitm, tab)) == 2 and all_refused(mitm, state["bySender"], tab, extra)
                        and all(attacks_on(mitm, p.mesh.peer_id)[tab] for p in peers))  # fmt: skip

            await settle(refused_or_broken)
            await asyncio.sleep(1.0)
            state = await tab_state()
            assert not any(imp.opened.is_set() for imp in mitm.all_impostors), "a link to the attacker opened"
            assert not state["open"] and not any(p.ever_opened() for p in peers), state
            assert mitm.public_key.hex() not in state["acceptedKeys"] and not state["acceptedFrom"], state
            assert not attacker_credit(peers, mitm.public_key)
            assert all_refused(mitm, state["bySender"], tab, extra), (state, mitm.sent)
            reason = "wrong_key" if mitm.rewrite == Rewrite.KEYS else "bad_link_auth"
            assert state["rejects"].get(reason, 0) >= (2 if reason == "wrong_key" else 1), state
            if mitm.rewrite == Rewrite.KEYS:
                assert not set(state["known"]) & {p.mesh.peer_id for p in peers}, state
            for p in peers:  # the Python meshes refused the attacked links with the tab too
                attacks = attacks_on(mitm, p.mesh.peer_id)
                assert attacks[tab] and p.mesh.stats.signal_rejects_by_sender.get(tab, 0) >= attacks[tab] + extra, p.mesh.stats
            assert not errors, errors
    finally:
        await asyncio.gather(*(p.mesh.close() for p in peers), return_exceptions=True)



# ---- the certificate actually seen ---------------------------------------------------------


async def test_a_dtls_certificate_other_than_the_signed_one_closes_the_link_before_any_frame(server: str) -> None:
    """The Python peer's own check after the handshake (aiortc already checks the SDP's fingerprints):
    here the answerer is made to remember other signed fingerprints than the SDP's, as if a stack
    had accepted a certificate the offerer never signed. It closes the link at DTLS, before SCTP."""
    reply = await upload(server, tab_publication())
    ws_url = server.replace("http", "ws", 1) + "/ws"
    use_candidate_addresses(["127.0.0.1"])
    peers: list[Honest] = []
    try:
        a = await honest_mesh(ws_url, reply["swarm_id"], reply["model_id"], degree=0)
        b = await honest_mesh(ws_url, reply["swarm_id"], reply["model_id"], degree=0)
        peers += [a, b]
        real = b.mesh._verified_fingerprints

        def other_certificate(*args: Any) -> list[str] | None:
            signed = real(*args)
            return None if signed is None else ["sha-256 " + ":".join(["00"] * 32)]

        b.mesh._verified_fingerprints = other_certificate  # type: ignore[method-assign]
        assert await settle(lambda: b.mesh.peer_id in a.mesh.known and a.mesh.peer_id in b.mesh.known)
        link = await a.mesh.connect_to(a.mesh.known[b.mesh.peer_id])
        assert await settle(lambda: b.mesh.stats.signal_rejects.get("fingerprint_mismatch", 0) == 1)
        assert await settle(lambda: link.state == LinkState.CLOSED), "the offerer's end closes too"
        assert not a.ever_opened() and not b.ever_opened() and not a.credited and not b.credited
        assert link_auth_refusals(b.mesh) == {"fingerprint_mismatch": 1} and not link_auth_refusals(a.mesh)
    finally:
        await asyncio.gather(*(p.mesh.close() for p in peers), return_exceptions=True)
        use_candidate_addresses(None)
