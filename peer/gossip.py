"""Asynchronous push-pull gossip: the exchange logic, independent of any transport.

A peer that finished its local steps picks a neighbor and *initiates*: it sends its weights
and gossip weight, and the neighbor *responds* with its own pre-merge weights; both then
hold the pairwise average (``averaging.pair_average``). A peer already in an exchange
declines. Two peers asking each other at once (A->B while B->A, "crossing" requests) are
resolved by peer id instead: the request of the smaller id is the exchange, so the larger
peer answers it while its own request is in flight and the smaller one declines that
request. Without this both would decline each other, and peers whose exchanges take long
(large models, slow links) would do so round after round (a livelock). The transport
(WebRTC mesh, simulator) only moves ``Update`` objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np

from .averaging import Weights, pair_average

log = logging.getLogger("peer.gossip")


@dataclass(frozen=True)
class Update:
    weights: Weights
    weight: float  # gossip weight: starts as the local sample count
    step: int = 0


class LocalModel(Protocol):
    """What gossip needs from the trainer; callers hold ``lock`` around train steps too."""

    lock: asyncio.Lock

    def current(self) -> Update: ...

    def assign(self, weights: Weights, weight: float) -> None: ...


class Transport(Protocol):
    async def request(self, peer: str, update: Update) -> Update | None:
        """Send an exchange request; return the reply, or None if the peer declined."""
        ...


class Outcome(Enum):
    MERGED = "merged"
    DECLINED = "declined"
    BUSY = "busy"
    TIMEOUT = "timeout"
    FAILED = "failed"
    CROSSED = "crossed"  # our request crossed the partner's; we merged as its responder instead


def exchange_deadline(frame_bytes: int, rate_bytes_s: float | None, rtt_s: float | None, *,
                      floor_s: float, ceiling_s: float = 600.0) -> float:  # fmt: skip
    """Seconds to wait for an exchange reply: both frames at the link's rate, plus round trips.

    ``2 x frame_bytes / rate + 4 x rtt`` (request and reply transfers, the SCTP handshake
    of each, and the responder's turn), doubled for slack, never below ``floor_s`` (the
    swarm's ``exchange_timeout_s``) nor above ``ceiling_s``. Unknown rate or RTT: the floor.
    Units: bytes, bytes per second, seconds.
    """
    if not rate_bytes_s or rate_bytes_s <= 0:
        return min(max(floor_s, 0.0), ceiling_s)
    expected = 2.0 * frame_bytes / rate_bytes_s + 4.0 * (rtt_s or 0.0)
    return min(max(floor_s, 2.0 * expected), ceiling_s)


class GossipEngine:
    def __init__(self, model: LocalModel, average: Callable[..., tuple[Weights, float]] = pair_average,
                 peer_id: str | None = None) -> None:  # fmt: skip
        self.model = model
        self.average = average
        self.peer_id = peer_id  # ours: breaks crossing requests (None: every busy request is declined)
        self.busy = False
        self.outcomes: dict[Outcome, int] = {o: 0 for o in Outcome}
        self.served = 0
        self.declined_requests = 0
        self.crossed = 0  # crossing requests answered as the larger id
        self._partner: str | None = None  # the peer we are initiating with
        self._crossed_with: str | None = None

    async def initiate(self, peer: str, transport: Transport, timeout: float) -> Outcome:
        outcome = await self._initiate(peer, transport, timeout)
        self.outcomes[outcome] += 1
        return outcome

    async def _initiate(self, peer: str, transport: Transport, timeout: float) -> Outcome:
        if self.busy:
            return Outcome.BUSY
        self.busy, self._partner, self._crossed_with = True, peer, None
        try:
            async with self.model.lock:
                mine = self.model.current()
            try:
                async with asyncio.timeout(timeout):
                    reply = await transport.request(peer, mine)
            except TimeoutError:
                return Outcome.CROSSED if self._crossed_with == peer else Outcome.TIMEOUT
            except ConnectionError as exc:
                log.debug("exchange with %s failed: %s", peer[:8], exc)
                return Outcome.FAILED
            if self._crossed_with == peer:
                return Outcome.CROSSED  # we already merged the partner's model as its responder
            if reply is None:
                return Outcome.DECLINED
            async with self.model.lock:
                merged, weight = self.average(mine.weights, mine.weight, reply.weights, reply.weight)
                self.model.assign(merged, weight)
            return Outcome.MERGED
        finally:
            self.busy, self._partner = False, None

    def _answers_crossing(self, peer: str | None) -> bool:
        """A request from the peer we are initiating with, whose smaller id makes its request the exchange."""
        return (peer is not None and self.peer_id is not None and peer == self._partner
                and self._crossed_with is None and peer < self.peer_id)  # fmt: skip

    async def respond(self, update: Update, peer: str | None = None) -> Update | None:
        """Answer a verified request from ``peer``: our pre-merge weights, or None to decline while busy."""
        crossing = self.busy and self._answers_crossing(peer)
        if self.busy and not crossing:
            self.declined_requests += 1
            return None
        if crossing:
            self._crossed_with = peer  # our own request's reply (a decline) must not be merged too
            self.crossed += 1
        else:
            self.busy = True  # an initiate() racing this merge would overwrite it with a stale average
        try:
            async with self.model.lock:
                mine = self.model.current()
                merged, weight = self.average(mine.weights, mine.weight, update.weights, update.weight)
                self.model.assign(merged, weight)
        finally:
            if not crossing:
                self.busy = False
        self.served += 1
        return mine


def flat(weights: Weights) -> np.ndarray:
    return np.concatenate([np.ravel(w) for w in weights])
