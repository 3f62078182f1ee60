"""Gossip over the WebRTC mesh: turns proposals and ``Update`` objects into signed frames and back.

Implements ``gossip.Transport`` for the live peer. Every incoming frame goes through the
``FrameVerifier`` first; proposals and requests are answered by the engine, through the
interface it declares (``gossip.Engine``: ``on_propose``, ``respond``, ``model``); accepts, declines and responses resolve the pending exchange with the same
``exchange_id`` from the same peer. An accepted proposal's ``exchange_id`` is reused by the
request that follows it (docs/PROTOCOL.md "The gossip exchange").

Reputation: every kind of abuse is a strike against the sending neighbor, and ``STRIKES_TO_BAN``
strikes within ``STRIKE_WINDOW_S`` ban it: rejected frames, weight-carrying replies nobody
asked for, and what a link refuses before there is a frame at all (junk chunks, text messages,
oversized messages: ``PeerLink.refusals``, collected by ``collect_abuse`` whenever a link
reports a chunk error: ``on_chunk_error``). A model far from ours is *not* a strike: honest neighbors drift far
apart (early training from one initialization, a partition, a skewed shard), and the clipped
average already bounds what a poisoned model can do (``averaging.ClippedPairAverage``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
import weakref
from collections import deque
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.codecs import CodecId
from protocols.frame import FrameKind, build_frame

from .error_feedback import ErrorFeedback
from .gossip import Engine, Update, exchange_deadline
from .link import PeerLink
from .metrics import PeerMetrics
from .ratelimit import TokenBucket
from .verifier import FrameRejected, FrameVerifier

log = logging.getLogger("peer.transport")

MAX_PENDING = 64
MAX_RESIDUALS = 256
# per neighbor: a gossip exchange costs each side one or two frames, so honest peers stay far below
FRAME_RATE = 20.0  # frames per second, sustained
FRAME_BURST = 40
# reputation: this many strikes (rejected frames, refused messages) within the window ban a peer
STRIKES_TO_BAN = 10
STRIKE_WINDOW_S = 60.0
PULL_INTERVAL_S = 10.0  # one model per neighbor per this long, however often it asks
NOT_STRIKES = {"unexpected", "rate_limited"}  # late replies after a timeout are not misbehaviour
LATE_REPLIES = 64  # per neighbor: exchanges that ended unanswered, whose one late reply is no strike


class MeshTransport:
    def __init__(
        self,
        key: Ed25519PrivateKey,
        *,
        swarm_id: bytes,
        model_id: bytes,
        verifier: FrameVerifier,
        engine: Engine,
        metrics: PeerMetrics,
        links: Callable[[], dict[str, PeerLink]],
        codec: CodecId = CodecId.FLOAT32,
        frame_bytes: int = 0,
        exchange_timeout_s: float = 10.0,
    ) -> None:
        self.key = key
        self.swarm_id, self.model_id = swarm_id, model_id
        self.verifier, self.engine, self.metrics = verifier, engine, metrics
        self.links = links
        self.codec = codec
        self.frame_bytes, self.exchange_timeout_s = frame_bytes, exchange_timeout_s
        self.session = secrets.randbits(64)  # new per process: receivers key replay state by it
        self._seq = itertools.count(1)
        self._exchange = itertools.count(1)
        self._pending: dict[tuple[str, int], asyncio.Future[Update | bool | None]] = {}
        self._accepted: dict[str, int] = {}  # neighbor -> exchange id of its accept (our request reuses it)
        self.last_distance: float | None = None
        self._feedback = ErrorFeedback(MAX_RESIDUALS)
        self._buckets: dict[str, TokenBucket] = {}
        self._strikes: dict[str, deque[float]] = {}
        self._pulls_served: dict[str, float] = {}
        self._late: dict[str, deque[int]] = {}  # neighbor -> exchange ids that timed out (a late reply is fine)
        self._banned: dict[str, float] = {}  # neighbor -> when we banned it: strikes stop counting meanwhile
        self._refusals_seen: weakref.WeakKeyDictionary[PeerLink, int] = weakref.WeakKeyDictionary()
        self.on_misbehaving: Callable[[str, str], None] = lambda peer, why: None  # the mesh bans

    def _frame(self, link: PeerLink, kind: FrameKind, exchange_id: int, update: Update | None,
               codec: CodecId) -> Callable[[], bytes]:  # fmt: skip
        tensors = self._with_error_feedback(link.peer_id, update.weights, codec) if update else []

        def build() -> bytes:  # called under the link's send lock so seq order = wire order
            return build_frame(
                self.key, kind=kind, swarm_id=self.swarm_id, model_id=self.model_id,
                receiver=link.remote_key, session=self.session, seq=next(self._seq),
                exchange_id=exchange_id, sample_weight=update.weight if update else 0.0,
                step=update.step if update else 0, tensors=tensors, codec=int(codec),
            ).encode()  # fmt: skip

        return build

    def _with_error_feedback(self, peer: str, weights: list[np.ndarray], codec: CodecId) -> list[np.ndarray]:
        """Lossy codecs: send w + r and keep r <- (w + r) - decode(encode(w + r)) per neighbor.

        What a neighbor receives then differs from our model by one residual, never by the sum
        of every exchange's rounding error.
        """
        return self._feedback.apply(peer, weights, codec)

    async def send(self, link: PeerLink, kind: FrameKind, exchange_id: int, update: Update | None,
                   codec: CodecId | None = None) -> None:  # fmt: skip
        """Send one frame; ConnectionError if the link is gone or our own weights cannot be encoded."""
        try:
            await link.send(self._frame(link, kind, exchange_id, update, self.codec if codec is None else codec))
        except ValueError as exc:  # a codec refused our weights (non-finite): nothing went out
            log.error("not sending a %s to %s: %s", kind.name, link.peer_id[:8], exc)
            raise ConnectionError(f"our weights cannot be sent: {exc}") from exc
        self.metrics.frames_sent += 1

    def deadline(self, peer: str) -> float:
        """Seconds for each step of an exchange with ``peer`` (``gossip.exchange_deadline``):
        from the model's frame size and the link's measured rate and RTT, floored at the swarm's
        ``exchange_timeout_s``."""
        link = self.links().get(peer)
        rate, rtt = (link.rate_bytes_s, link.rtt_s) if link is not None else (None, None)
        return exchange_deadline(self.frame_bytes, rate, rtt, floor_s=self.exchange_timeout_s)

    # ---- gossip.Transport -------------------------------------------------------------
    async def propose(self, peer: str) -> bool:
        """Propose an exchange; True once ``peer`` accepted (our next request reuses its exchange id)."""
        self._accepted.pop(peer, None)
        exchange_id = next(self._exchange)
        accepted = await self._ask(peer, FrameKind.EXCHANGE_PROPOSE, None, exchange_id)
        if accepted is True:
            self._accepted[peer] = exchange_id
            while len(self._accepted) > MAX_RESIDUALS:
                self._accepted.pop(next(iter(self._accepted)))
            return True
        return False

    async def request(self, peer: str, update: Update) -> Update | None:
        exchange_id = self._accepted.pop(peer, None) or next(self._exchange)
        reply = await self._ask(peer, FrameKind.EXCHANGE_REQUEST, update, exchange_id)
        if not isinstance(reply, Update):
            return None
        self.last_distance = _distance(update.weights, reply.weights)
        return reply

    async def pull(self, peer: str) -> Update | None:
        """Ask a neighbor for its current model (a joining peer starts from the swarm's state)."""
        reply = await self._ask(peer, FrameKind.PULL_REQUEST, None, next(self._exchange))
        return reply if isinstance(reply, Update) else None

    async def _ask(self, peer: str, kind: FrameKind, update: Update | None, exchange_id: int) -> Update | bool | None:
        """Send a request frame and wait for the reply with its exchange id.

        Returns the reply's update (RESPONSE, PULL_RESPONSE), True (ACCEPT) or None (DECLINE).
        """
        link = self.links().get(peer)
        if link is None:
            raise ConnectionError(f"no link to {peer[:8]}")
        if len(self._pending) >= MAX_PENDING:
            raise ConnectionError("too many exchanges in flight")
        future: asyncio.Future[Update | bool | None] = asyncio.get_running_loop().create_future()
        self._pending[(peer, exchange_id)] = future
        try:
            await self.send(link, kind, exchange_id, update)
            return await future
        finally:
            self._pending.pop((peer, exchange_id), None)
            if future.cancelled() or not future.done():  # timed out: one late reply may still come
                self._late.setdefault(peer, deque(maxlen=LATE_REPLIES)).append(exchange_id)
                while len(self._late) > MAX_RESIDUALS:
                    self._late.pop(next(iter(self._late)))

    def _was_late(self, peer: str, exchange_id: int) -> bool:
        """Whether ``exchange_id`` is an exchange with ``peer`` that timed out (forgotten once answered)."""
        late = self._late.get(peer)
        if late is None or exchange_id not in late:
            return False
        late.remove(exchange_id)
        return True

    # ---- reputation -----------------------------------------------------------------------
    def strike(self, peer: str, why: str) -> None:
        """Count one piece of misbehaviour; too many within the window and the mesh bans the peer."""
        now = time.monotonic()
        if now - self._banned.get(peer, -STRIKE_WINDOW_S) < STRIKE_WINDOW_S:
            return  # banned: what was still in flight on its closing link is not a second ban
        strikes = self._strikes.setdefault(peer, deque())
        strikes.append(now)
        while strikes and now - strikes[0] > STRIKE_WINDOW_S:
            strikes.popleft()
        if len(strikes) >= STRIKES_TO_BAN:
            strikes.clear()
            log.warning("banning %s: %d strikes in %.0f s (last: %s)", peer[:8], STRIKES_TO_BAN, STRIKE_WINDOW_S, why)
            self.metrics.bans += 1
            self._banned[peer] = now
            while len(self._banned) > MAX_RESIDUALS:
                self._banned.pop(next(iter(self._banned)))
            self.on_misbehaving(peer, why)
        while len(self._strikes) > MAX_RESIDUALS:
            self._strikes.pop(next(iter(self._strikes)))

    def collect_abuse(self) -> None:
        """Strike every message a link refused before there was a frame (junk chunks, text, oversized).

        Call it whenever a link reports a chunk error: the mesh passes on only the reason, so the
        links' own ``refusals`` counters say which neighbor sent it (the one whose count moved).
        """
        for link in list(self.links().values()):
            new = link.refusals - self._refusals_seen.get(link, 0)
            if new > 0:
                self._refusals_seen[link] = link.refusals
                for _ in range(new):
                    self.strike(link.peer_id, link.last_refusal or "bad_chunk")

    def on_chunk_error(self, reason: str) -> None:
        """The mesh's chunk-error handler: count the refusal and strike whoever sent it."""
        self.metrics.rejected[reason] += 1
        self.collect_abuse()

    # ---- incoming -----------------------------------------------------------------------
    async def on_frame(self, link: PeerLink, data: bytes) -> None:
        """The mesh's frame handler: rate-limit, verify, then answer or resolve the pending exchange."""
        bucket = self._buckets.get(link.peer_id)
        if bucket is None:
            bucket = self._buckets[link.peer_id] = TokenBucket(FRAME_RATE, FRAME_BURST)
            while len(self._buckets) > MAX_RESIDUALS:
                self._buckets.pop(next(iter(self._buckets)))
        if not bucket.take():
            self.metrics.rejected["rate_limited"] += 1  # dropped before any parsing or crypto
            return
        try:
            frame, tensors = self.verifier.admit(data, link.remote_key)
        except FrameRejected as exc:
            self.metrics.rejected[exc.reason] += 1
            log.debug("rejected frame from %s: %s", link.peer_id[:8], exc)
            if exc.reason not in NOT_STRIKES:
                self.strike(link.peer_id, exc.reason)
            return
        self.metrics.frames_accepted += 1
        self.metrics.accepted_from[link.peer_id] += 1
        h = frame.header
        update = Update(tensors, h.sample_weight, h.step) if tensors else None
        if h.kind == FrameKind.EXCHANGE_REQUEST and update is not None:
            reply = await self.engine.respond(update, link.peer_id)
            kind = FrameKind.EXCHANGE_RESPONSE if reply is not None else FrameKind.EXCHANGE_DECLINE
            try:  # the reply uses the request's codec: codecs are negotiated per exchange
                await self.send(link, kind, h.exchange_id, reply, CodecId(h.codec))
            except (ConnectionError, TimeoutError) as exc:
                log.debug("could not answer %s: %s", link.peer_id[:8], exc)
        elif h.kind == FrameKind.EXCHANGE_PROPOSE:
            kind = FrameKind.EXCHANGE_ACCEPT if self.engine.on_propose(link.peer_id) else FrameKind.EXCHANGE_DECLINE
            try:
                await self.send(link, kind, h.exchange_id, None)
            except (ConnectionError, TimeoutError) as exc:
                log.debug("could not answer a proposal of %s: %s", link.peer_id[:8], exc)
        elif h.kind in (FrameKind.EXCHANGE_RESPONSE, FrameKind.EXCHANGE_DECLINE, FrameKind.PULL_RESPONSE,
                        FrameKind.EXCHANGE_ACCEPT):  # fmt: skip
            future = self._pending.get((link.peer_id, h.exchange_id))
            if future is None or future.done():
                self.metrics.rejected["unexpected"] += 1
                if update is not None and not self._was_late(link.peer_id, h.exchange_id):
                    self.strike(link.peer_id, "unexpected")  # weights nobody asked for: a verify and a decode for nothing
            elif h.kind == FrameKind.EXCHANGE_ACCEPT:
                future.set_result(True)
            else:
                future.set_result(None if h.kind == FrameKind.EXCHANGE_DECLINE else update)
        elif h.kind == FrameKind.PULL_REQUEST:
            now = time.monotonic()
            if now - self._pulls_served.get(link.peer_id, -PULL_INTERVAL_S) < PULL_INTERVAL_S:
                self.metrics.rejected["rate_limited"] += 1  # a whole model per tiny request: bound it
                return
            self._pulls_served[link.peer_id] = now
            async with self.engine.model.lock:
                mine = self.engine.model.current()
            try:
                await self.send(link, FrameKind.PULL_RESPONSE, h.exchange_id, mine)
            except (ConnectionError, TimeoutError) as exc:
                log.debug("could not answer a pull of %s: %s", link.peer_id[:8], exc)


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum((x.astype(np.float64) - y) ** 2)) for x, y in zip(a, b, strict=True))))
