"""The WebRTC mesh: a signaling client plus one ``PeerLink`` per neighbor.

Neighbors are chosen at random among known peers until ``degree`` links exist (with
``gossip.mixing = "exponential"``, the peer's exponential partners first: ``_to_offer``); incoming
offers are accepted up to ``max_degree``. Offer glare (both sides offer at once) is broken
by peer id: the smaller id keeps its offer, the larger answers. Failed or silent links are
closed and replaced; the signaling connection is re-established with backoff, and links
stay up while the server is away.

The server is not trusted with identities: a peer id must be the hash of its announced key, and
every offer and answer carries the sender's Ed25519 signature over its SDP's DTLS fingerprints
(``protocols.crypto.offer_message`` / ``answer_message``). A link opens only when that signature
verifies against the announced key and the certificate seen in the DTLS handshake is the signed
one, so a server that swaps keys or SDPs cannot sit between two peers (docs/PROTOCOL.md, "Link
authentication").
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS, certificate_digest
from aiortc.sdp import candidate_from_sdp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from protocols.crypto import (
    LINK_NONCE_SIZE,
    answer_message,
    join_message,
    offer_message,
    peer_id_of,
    public_key_bytes,
    sign,
    verify,
)
from protocols.errors import ProtocolError, SignatureError
from protocols.signaling import (
    Answer,
    Candidate,
    Challenge,
    Error,
    IceServer,
    Join,
    LinkAuth,
    Offer,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Ping,
    Report,
    Welcome,
    dump,
    parse_server_message,
    sdp_fingerprints,
)

from .link import FrameHandler, LinkState, PeerLink
from .ratelimit import TokenBucket
from .skew import exponential_neighbors, partners_to_link

log = logging.getLogger("peer.mesh")


@dataclass
class MeshConfig:
    degree: int = 4
    max_degree: int = 8
    ice_servers: list[IceServer] | None = None  # None: take the swarm's (from the welcome)
    connect_timeout: float = 20.0  # ICE gathering alone may take 5 s per side (an unreachable STUN/TURN server)
    maintain_interval: float = 1.0
    ping_interval: float = 30.0
    report_interval: float = 10.0
    reconnect_max_delay: float = 10.0
    retry_after: float = 5.0
    client: str = "python"
    only_peers: set[str] | None = None  # link only with these peer ids, offers both ways (FedAvg clients -> aggregator)
    relay_only: bool = False  # gather TURN relay candidates only (strict NATs, or proving the relay works)
    mixing: str = "random"  # gossip.mixing: "exponential" links to the exponential partners first (peer.skew)


_DATA_CHANNEL = re.compile(r"^m=application [0-9]+ [A-Z/]*SCTP\b", re.MULTILINE)


def has_data_channel(sdp: str) -> bool:
    """Whether an SDP negotiates a data channel (an m=application section over DTLS/SCTP)."""
    return _DATA_CHANNEL.search(sdp) is not None


OFFER_RATE = 0.2  # offers per second a remote peer may send us, sustained (one per 5 s)
OFFER_BURST = 3
MAX_SIGNAL_SENDERS = 4096  # per-sender counters kept
MAX_OFFER_NONCES = 4096  # nonces of verified offers remembered, so a replayed offer is refused


def remote_certificate_fingerprints(pc: RTCPeerConnection) -> set[str] | None:
    """Canonical fingerprints (``sdp_fingerprints`` form) of the certificate the remote end presented
    in the DTLS handshake of ``pc``'s data channel transport; None when it cannot be read.

    aiortc keeps the handshake in ``RTCDtlsTransport._ssl`` (pyOpenSSL) and exposes no peer
    certificate of its own, so this reads that private attribute (aiortc 1.16)."""
    try:
        cert = pc.sctp.transport._ssl.get_peer_certificate(as_cryptography=True)  # type: ignore[union-attr]
    except AttributeError:
        return None
    if cert is None:
        return None
    return {f"{algorithm} {certificate_digest(cert, algorithm)}" for algorithm in X509_DIGEST_ALGORITHMS}


def certificate_matches(signed: Sequence[str], seen: set[str]) -> bool:
    """aiortc's rule, over the signed fingerprints: at least one of an algorithm we can compute, and
    every one of those is the certificate's."""
    supported = [f for f in signed if f.split(" ", 1)[0] in X509_DIGEST_ALGORITHMS]
    return bool(supported) and all(f in seen for f in supported)


@dataclass
class LinkBinding:
    """What link authentication established for one link.

    ``offer_nonce``: the nonce of the offer we sent (offerer side; the answer must sign it).
    ``fingerprints``: the DTLS fingerprints the remote peer signed. ``dtls_verified``: the
    certificate of the DTLS handshake is one of them; frames are delivered only after that.
    """

    offer_nonce: bytes | None = None
    fingerprints: list[str] | None = None
    dtls_verified: bool = False


@dataclass
class MeshStats:
    chunk_rejects: dict[str, int] = field(default_factory=dict)
    mdns_candidates_skipped: int = 0
    signaling_errors: list[str] = field(default_factory=list)
    # relayed messages refused, by reason (bad_sdp, bad_candidate, offer_rate, not_linking, already_linked,
    # unexpected_answer; link authentication: wrong_key, bad_link_auth, replayed_offer, fingerprint_mismatch)
    # and by sender
    signal_rejects: dict[str, int] = field(default_factory=dict)
    signal_rejects_by_sender: dict[str, int] = field(default_factory=dict)
    sessions: int = 0  # signaling sessions opened (reconnects = sessions - 1)

    def reject(self, sender: str, reason: str) -> None:
        self.signal_rejects[reason] = self.signal_rejects.get(reason, 0) + 1
        self.signal_rejects_by_sender[sender] = self.signal_rejects_by_sender.get(sender, 0) + 1
        while len(self.signal_rejects_by_sender) > MAX_SIGNAL_SENDERS:
            self.signal_rejects_by_sender.pop(next(iter(self.signal_rejects_by_sender)))


class Mesh:
    def __init__(
        self,
        key: Ed25519PrivateKey,
        ws_url: str,
        swarm_id: str,
        config: MeshConfig,
        *,
        max_frame_size: int,
        on_frame: FrameHandler | None = None,
        on_chunk_error: Callable[[str], None] | None = None,
    ) -> None:
        """``on_frame`` and ``on_chunk_error`` are read at call time: an owner whose handler needs the
        mesh (the transport reads ``links``) sets them after construction, before ``accept_links``."""
        self.key = key
        self.public_key = public_key_bytes(key)
        self.peer_id = peer_id_of(self.public_key)
        self.ws_url, self.swarm_id, self.config = ws_url, swarm_id, config
        self.max_frame_size = max_frame_size
        self.on_frame = on_frame
        self.on_chunk_error = on_chunk_error
        self.known: dict[str, PeerInfo] = {}
        self.links: dict[str, PeerLink] = {}
        self.welcome: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()
        self.stats = MeshStats()
        self.connected = asyncio.Event()
        self.ready = asyncio.Event()  # set by the owner once it can handle frames
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._retry_at: dict[str, float] = {}
        self.banned: dict[str, float] = {}  # peer id -> until (monotonic): no links either way
        self._rng = random.Random()
        self._offer_buckets: dict[str, TokenBucket] = {}
        self._bindings: dict[PeerLink, LinkBinding] = {}
        self._offer_nonces: OrderedDict[bytes, None] = OrderedDict()
        self._swarm_ice_servers: list[IceServer] = []
        self._closing = False
        self.report_source: Callable[[], Report | None] | None = None  # metrics for the contribution board

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self) -> Welcome:
        """Join the swarm; links are made only after ``ready`` is set (see ``accept_links``)."""
        self._tasks = [asyncio.create_task(self._signaling_loop()), asyncio.create_task(self._maintain_loop())]
        return await self.welcome

    def accept_links(self) -> None:
        """Start making and accepting connections: frames can be handled from now on."""
        self.ready.set()

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(link.close() for link in list(self.links.values())), return_exceptions=True)

    def ban(self, peer_id: str, seconds: float = 300.0) -> None:
        """Disconnect a misbehaving peer and refuse it (offers and our own connects) for a while."""
        self.banned[peer_id] = time.monotonic() + seconds
        link = self.links.get(peer_id)
        if link is not None:
            asyncio.ensure_future(link.close())
        while len(self.banned) > 4096:
            self.banned.pop(next(iter(self.banned)))

    def is_banned(self, peer_id: str) -> bool:
        until = self.banned.get(peer_id)
        return until is not None and time.monotonic() < until

    def open_links(self) -> list[PeerLink]:
        return [link for link in self.links.values() if link.state == LinkState.OPEN]

    def members(self) -> list[str]:
        """Every member of the swarm this peer knows, itself included: the welcome's peers, those
        announced since (``peer_joined``, minus ``peer_left``), and open links the server forgot."""
        return sorted({self.peer_id, *self.known, *(link.peer_id for link in self.open_links())})

    def exponential_partners(self) -> list[str]:
        """With ``mixing = "exponential"``: this peer's partners in the exponential graph over ``members``
        (``peer.skew.exponential_neighbors``), which it links to first; else none."""
        return exponential_neighbors(self.peer_id, self.members()) if self.config.mixing == "exponential" else []

    def _to_offer(self, candidates: list[PeerInfo]) -> list[PeerInfo]:
        """Whom to offer a link to now, among unlinked ``candidates``: the exponential partners (with
        that mixing) while links stay within ``max_degree``, then random peers up to ``degree``."""
        by_id, first = {c.peer_id: c for c in candidates}, []
        if self.config.mixing == "exponential":
            members = self.members()
            skip = {p for p in members if p not in by_id}  # linked or connecting, banned, retried later
            first = [by_id[p] for p in partners_to_link(self.peer_id, members, skip, self.config.max_degree - len(self.links))]
        rest = [c for c in candidates if c not in first]
        missing = max(0, self.config.degree - len(self.links) - len(first))
        return first + self._rng.sample(rest, min(missing, len(rest)))

    def ice_servers(self) -> list[IceServer]:
        """The configured ICE servers if the user gave any, else the swarm's from the latest welcome."""
        return list(self.config.ice_servers) if self.config.ice_servers is not None else list(self._swarm_ice_servers)

    def link_report(self) -> list[dict[str, object]]:
        """Per open link: neighbor, its client, the selected ICE pair's candidate types, the RTT (ms)
        and the measured send rate (MB/s, None until a large send measured it)."""
        return [{"peer": link.peer_id, "client": link.remote.client, **link.ice_info(),
                 "rate_mb_s": round(link.rate_bytes_s / 1e6, 3) if link.rate_bytes_s else None}
                for link in self.open_links()]  # fmt: skip

    # ---- signaling ----------------------------------------------------------------------
    async def _signaling_loop(self) -> None:
        """Keep one signaling session up: whatever ends it (server gone, network down, a bug),
        reconnect with jittered exponential backoff. Only ``close()`` stops this loop."""
        delay = 0.5
        while not self._closing:
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.ws_connect(self.ws_url, heartbeat=self.config.ping_interval) as ws:
                        self._ws = ws
                        self.stats.sessions += 1
                        delay = 0.5
                        await self._session(ws)
                if not self._closing:
                    log.warning("signaling session with %s ended; reconnecting in about %.1f s", self.ws_url, delay)
            except (aiohttp.ClientError, ConnectionError, TimeoutError, ProtocolError) as exc:
                log.warning("signaling connection to %s failed: %s; retrying in %.1f s", self.ws_url, exc, delay)
            except Exception:  # a bug must not leave the peer offline for good: log it loudly and reconnect
                log.exception("signaling session failed unexpectedly; reconnecting in %.1f s", delay)
            finally:
                self._ws = None
                self.connected.clear()
            if self._closing:
                return
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, self.config.reconnect_max_delay)

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        pinger = asyncio.create_task(self._ping_loop(ws))
        try:
            await self._read(ws)
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)

    async def _ping_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Application pings (the server's idle timeout counts signaling messages, not WebSocket
        pings) and progress reports for the contribution board."""
        last_ping = time.monotonic()
        while not ws.closed:
            await asyncio.sleep(min(self.config.ping_interval, self.config.report_interval))
            report = self.report_source() if self.report_source and self.connected.is_set() else None
            if report is not None:
                await ws.send_str(dump(report))
            elif time.monotonic() - last_ping >= self.config.ping_interval:
                await ws.send_str(dump(Ping()))
                last_ping = time.monotonic()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            try:
                parsed = parse_server_message(msg.data)
            except ProtocolError as exc:
                self.stats.reject("server", exc.reason)  # whoever wrote it, the server relayed it
                log.warning("ignoring malformed signaling message: %s", exc)
                continue
            try:
                await self._dispatch(parsed)
            except Exception as exc:  # noqa: BLE001 - one peer's message must never end our session
                sender = getattr(parsed, "from_", None) or "server"
                self.stats.reject(sender, "bad_" + getattr(parsed, "type", "message"))
                log.warning("refused a %s from %s: %s: %s", getattr(parsed, "type", "message"), sender[:8],
                            type(exc).__name__, exc)  # fmt: skip

    async def _send(self, message: BaseModel) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionError("signaling server is not connected")
        await ws.send_str(dump(message))

    async def _dispatch(self, msg: object) -> None:
        if isinstance(msg, Challenge):
            signature = sign(self.key, join_message(bytes.fromhex(msg.nonce), self.swarm_id))
            await self._send(Join(swarm_id=self.swarm_id, public_key=self.public_key.hex(),
                                  signature=signature.hex(), client=self.config.client))  # type: ignore[arg-type]  # fmt: skip
        elif isinstance(msg, Welcome):
            if msg.peer_id != self.peer_id:
                self.stats.reject("server", "wrong_peer_id")
                log.warning("the server welcomed us as %s, but our key makes us %s", msg.peer_id[:8], self.peer_id[:8])
            self.known = {p.peer_id: p for p in msg.peers if p.peer_id != self.peer_id and self._key_matches(p)}
            # every welcome, not just the first: TURN credentials are per peer and expire, and a
            # reconnect brings fresh ones
            self._swarm_ice_servers = list(msg.ice_servers)
            if not self.welcome.done():
                self.welcome.set_result(msg)
            self.connected.set()
            log.info("joined swarm %s as %s with %d known peers", self.swarm_id[:8], self.peer_id[:8], len(self.known))
        elif isinstance(msg, PeerJoined):
            if msg.peer.peer_id != self.peer_id and self._key_matches(msg.peer):
                self.known[msg.peer.peer_id] = msg.peer
        elif isinstance(msg, PeerLeft):
            self.known.pop(msg.peer_id, None)
            link = self.links.get(msg.peer_id)
            if link is not None and link.state != LinkState.OPEN:
                await link.close()  # open links outlive the server's view; they close on their own
        elif isinstance(msg, Offer):
            await self._on_offer(msg)
        elif isinstance(msg, Answer):
            await self._on_answer(msg)
        elif isinstance(msg, Candidate):
            await self._on_candidate(msg)
        elif isinstance(msg, Error):
            self.stats.signaling_errors.append(msg.code)
            log.warning("signaling error %s: %s", msg.code, msg.message)
            if not self.welcome.done() and msg.code in ("bad_proof", "unknown_swarm", "swarm_full"):
                self.welcome.set_exception(ConnectionError(f"cannot join: {msg.message}"))

    def _key_matches(self, info: PeerInfo) -> bool:
        """Whether ``info``'s peer id is the hash of its public key; a server that announces another
        key for a peer id (to have us credit its frames to that peer) is refused and counted here."""
        if peer_id_of(bytes.fromhex(info.public_key)) == info.peer_id:
            return True
        self.stats.reject(info.peer_id, "wrong_key")
        log.warning("refused peer %s: its announced key %s… does not hash to its id (a server rewriting keys?)",
                    info.peer_id[:8], info.public_key[:12])  # fmt: skip
        return False

    # ---- link authentication ------------------------------------------------------------
    def _signed_offer(self, link: PeerLink) -> Offer:
        """Our offer for ``link``, signed over its SDP's fingerprints with a fresh nonce (remembered
        on the link's binding: the answer must sign it)."""
        sdp = link.pc.localDescription.sdp
        nonce = secrets.token_bytes(LINK_NONCE_SIZE)
        self._bindings[link] = LinkBinding(offer_nonce=nonce)
        signature = sign(self.key, offer_message(self.swarm_id, self.peer_id, link.peer_id, nonce, sdp_fingerprints(sdp)))
        return Offer(to=link.peer_id, sdp=sdp, auth=LinkAuth(nonce=nonce.hex(), signature=signature.hex()))

    def _signed_answer(self, link: PeerLink, offer_nonce: bytes) -> Answer:
        sdp = link.pc.localDescription.sdp
        nonce = secrets.token_bytes(LINK_NONCE_SIZE)
        message = answer_message(self.swarm_id, self.peer_id, link.peer_id, nonce, offer_nonce, sdp_fingerprints(sdp))
        return Answer(to=link.peer_id, sdp=sdp, auth=LinkAuth(nonce=nonce.hex(), signature=sign(self.key, message).hex()))

    def _verified_fingerprints(self, sender: str, remote: PeerInfo, sdp: str, auth: LinkAuth,
                               message: Callable[[list[str]], bytes]) -> list[str] | None:  # fmt: skip
        """The DTLS fingerprints of ``sdp`` if ``remote``'s key signed them (``message`` builds the
        signed bytes from them); else None, refused and counted (``bad_sdp``, ``bad_link_auth``)."""
        try:
            fingerprints = sdp_fingerprints(sdp)
            if not fingerprints:
                raise ProtocolError("the SDP declares no DTLS fingerprint", reason="bad_sdp")
        except ProtocolError as exc:
            self.stats.reject(sender, exc.reason)
            log.info("refused an SDP from %s: %s", sender[:8], exc)
            return None
        try:
            verify(bytes.fromhex(remote.public_key), bytes.fromhex(auth.signature), message(fingerprints))
        except SignatureError:
            self.stats.reject(sender, "bad_link_auth")
            log.warning("refused an offer or answer from %s: its signature does not cover this SDP's DTLS "
                        "fingerprints (a server rewriting SDPs?)", sender[:8])  # fmt: skip
            return None
        return fingerprints

    def _fresh_offer_nonce(self, nonce: bytes) -> bool:
        """Remember a verified offer's nonce; False if it was seen before (a replayed offer)."""
        if nonce in self._offer_nonces:
            return False
        self._offer_nonces[nonce] = None
        while len(self._offer_nonces) > MAX_OFFER_NONCES:
            self._offer_nonces.popitem(last=False)
        return True

    def _check_dtls(self, link: PeerLink) -> None:
        """Once DTLS is up (before SCTP, so before any frame), the remote certificate must be a
        signed one. aiortc already fails a handshake whose certificate does not match the SDP;
        this makes the binding to the *signed* fingerprints explicit and survives aiortc changes."""
        binding = self._bindings.get(link)
        if link.pc.connectionState != "connected" or binding is None or binding.dtls_verified:
            return
        seen = remote_certificate_fingerprints(link.pc)
        if binding.fingerprints is not None and seen is not None and certificate_matches(binding.fingerprints, seen):
            binding.dtls_verified = True
            return
        self.stats.reject(link.peer_id, "fingerprint_mismatch")
        log.warning("closing the link to %s: its DTLS certificate is not the one it signed", link.peer_id[:8])
        asyncio.ensure_future(link.close())

    async def _deliver(self, link: PeerLink, data: bytes) -> None:
        """Frames reach the owner only from links whose DTLS certificate matched the signed one."""
        binding = self._bindings.get(link)
        if binding is None or not binding.dtls_verified:
            self._chunk_error(link, "unverified_link")
            return
        if self.on_frame is None:  # links open only after accept_links: an owner that forgot its handler
            self.stats.chunk_rejects["no_handler"] = self.stats.chunk_rejects.get("no_handler", 0) + 1
            return
        await self.on_frame(link, data)

    # ---- connections --------------------------------------------------------------------
    def _new_link(self, info: PeerInfo) -> PeerLink:
        servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                   for s in self.ice_servers()]  # fmt: skip
        policy = RTCIceTransportPolicy.RELAY if self.config.relay_only else RTCIceTransportPolicy.ALL
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        link = PeerLink(info, pc, max_frame_size=self.max_frame_size, on_frame=self._deliver,
                        on_closed=self._on_link_closed, on_chunk_error=self._chunk_error)  # fmt: skip
        pc.on("connectionstatechange", lambda: self._check_dtls(link))
        self.links[info.peer_id] = link
        asyncio.get_running_loop().call_later(self.config.connect_timeout, self._expire, link)
        return link

    def _expire(self, link: PeerLink) -> None:
        if link.state == LinkState.CONNECTING:
            log.info("link %s did not open within %.0f s; offering again in %.0f s", link.peer_id[:8],
                     self.config.connect_timeout, self.config.retry_after)  # fmt: skip
            asyncio.ensure_future(link.close())

    def _on_link_closed(self, link: PeerLink) -> None:
        if self.links.get(link.peer_id) is link:
            del self.links[link.peer_id]
        self._bindings.pop(link, None)
        self._retry_at[link.peer_id] = time.monotonic() + self.config.retry_after

    def _chunk_error(self, link: PeerLink, reason: str) -> None:
        self.stats.chunk_rejects[reason] = self.stats.chunk_rejects.get(reason, 0) + 1
        if self.on_chunk_error is not None:
            self.on_chunk_error(reason)

    async def connect_to(self, info: PeerInfo) -> PeerLink:
        link = self._new_link(info)
        link.attach(link.pc.createDataChannel("gossip", ordered=True))
        await link.pc.setLocalDescription(await link.pc.createOffer())
        await self._send(self._signed_offer(link))
        # aiortc puts every candidate in the SDP; say so explicitly for trickle-ICE peers
        await self._send(Candidate(to=info.peer_id, candidate=None))
        return link

    def _would_link(self, sender: str) -> bool:
        """Whether an offer from ``sender`` may be answered at all (silence costs us nothing).

        With ``only_peers`` (a FedAvg client) an offer from anyone else is refused too, not only
        never made: the client's one link is the aggregator's.
        """
        only = self.config.only_peers
        return sender in self.known and self.ready.is_set() and not self.is_banned(sender) and (only is None or sender in only)

    def _offer_allowed(self, sender: str) -> bool:
        bucket = self._offer_buckets.get(sender)
        if bucket is None:
            bucket = self._offer_buckets[sender] = TokenBucket(OFFER_RATE, OFFER_BURST)
            while len(self._offer_buckets) > MAX_SIGNAL_SENDERS:
                self._offer_buckets.pop(next(iter(self._offer_buckets)))
        return bucket.take()

    async def _on_offer(self, msg: Offer) -> None:
        sender = msg.from_ or ""
        if not self._would_link(sender):
            self.stats.reject(sender, "not_linking")
            return  # not ready for frames yet (the offerer times out and retries), banned, or not a partner
        if not self._offer_allowed(sender):
            self.stats.reject(sender, "offer_rate")
            return  # an offer flood gets no answers: we never amplify it
        if not has_data_channel(msg.sdp):
            self.stats.reject(sender, "bad_sdp")
            return  # junk costs us a regular expression, not a peer connection
        offer_nonce = bytes.fromhex(msg.auth.nonce)
        fingerprints = self._verified_fingerprints(
            sender, self.known[sender], msg.sdp, msg.auth,
            lambda fps: offer_message(self.swarm_id, sender, self.peer_id, offer_nonce, fps))  # fmt: skip
        if fingerprints is None:
            return  # before any link is touched: a forged offer cannot cost us a connecting link
        if not self._fresh_offer_nonce(offer_nonce):
            self.stats.reject(sender, "replayed_offer")
            return
        existing = self.links.get(sender)
        if existing is not None:
            glare = existing.pc.signalingState == "have-local-offer"
            if glare and self.peer_id < sender:
                return  # our offer wins; the other side answers it
            if existing.state == LinkState.OPEN:
                self.stats.reject(sender, "already_linked")
                return  # a working link is never torn down by a new offer (re-offers come after it closes)
            await existing.close()
        elif len(self.links) >= self.config.max_degree:
            self.stats.reject(sender, "not_linking")
            return  # full: the offerer's connect timeout sends it elsewhere
        info = self.known[sender]
        link = self._new_link(info)
        self._bindings[link] = LinkBinding(fingerprints=fingerprints)
        link.pc.on("datachannel", link.attach)
        try:
            await link.pc.setRemoteDescription(RTCSessionDescription(sdp=msg.sdp, type="offer"))
            if link.pc.sctp is None:
                raise ValueError("the offer has no data channel (application) section")
            await link.pc.setLocalDescription(await link.pc.createAnswer())
        except Exception as exc:  # noqa: BLE001 - aiortc raises many types on junk SDP
            self.stats.reject(sender, "bad_sdp")
            log.info("refused an unusable offer from %s: %s: %s", sender[:8], type(exc).__name__, exc)
            await link.close()
            return
        await self._send(self._signed_answer(link, offer_nonce))
        await self._send(Candidate(to=sender, candidate=None))

    async def _on_answer(self, msg: Answer) -> None:
        sender = msg.from_ or ""
        link = self.links.get(sender)
        binding = self._bindings.get(link) if link is not None else None
        if link is None or binding is None or binding.offer_nonce is None or link.pc.signalingState != "have-local-offer":
            self.stats.reject(sender, "unexpected_answer")
            return
        offer_nonce, nonce = binding.offer_nonce, bytes.fromhex(msg.auth.nonce)
        fingerprints = self._verified_fingerprints(
            sender, link.remote, msg.sdp, msg.auth,
            lambda fps: answer_message(self.swarm_id, sender, self.peer_id, nonce, offer_nonce, fps))  # fmt: skip
        if fingerprints is None:
            await link.close()  # refused: this offer is spent (its nonce too); the next attempt offers afresh
            return
        binding.fingerprints = fingerprints
        try:
            await link.pc.setRemoteDescription(RTCSessionDescription(sdp=msg.sdp, type="answer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises many types on junk SDP
            self.stats.reject(sender, "bad_sdp")
            log.info("refused an unusable answer from %s: %s: %s", sender[:8], type(exc).__name__, exc)
            await link.close()

    async def _on_candidate(self, msg: Candidate) -> None:
        sender = msg.from_ or ""
        link = self.links.get(sender)
        if link is None or link.pc.remoteDescription is None:
            return
        if msg.candidate is None or msg.candidate == "":
            await link.pc.addIceCandidate(None)
            return
        text = msg.candidate.removeprefix("candidate:")
        if ".local " in text:
            self.stats.mdns_candidates_skipped += 1  # aioice cannot resolve mDNS names
            return
        try:
            candidate = candidate_from_sdp(text)
            candidate.sdpMid, candidate.sdpMLineIndex = msg.sdp_mid, msg.sdp_mline_index
            if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
                candidate.sdpMLineIndex = 0
            await link.pc.addIceCandidate(candidate)
        except Exception as exc:  # noqa: BLE001 - a malformed candidate is the sender's problem, never ours
            self.stats.reject(sender, "bad_candidate")
            log.info("ignoring an unusable candidate from %s: %s: %s", sender[:8], type(exc).__name__, exc)

    async def _maintain_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.maintain_interval)
            if not (self.connected.is_set() and self.ready.is_set()):
                continue
            now = time.monotonic()
            only = self.config.only_peers
            candidates = [p for pid, p in self.known.items()
                          if pid not in self.links and self._retry_at.get(pid, 0) <= now and not self.is_banned(pid)
                          and (only is None or pid in only)]  # fmt: skip
            for info in self._to_offer(candidates):
                try:
                    await self.connect_to(info)
                except ConnectionError as exc:
                    log.debug("could not offer to %s: %s", info.peer_id[:8], exc)
