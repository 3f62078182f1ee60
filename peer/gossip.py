"""Asynchronous push-pull gossip: the exchange logic, independent of any transport.

A peer that finished its local steps picks a neighbor and *initiates*: it sends its weights
and gossip weight, and the neighbor *responds* with its own pre-merge weights; both then
hold the pairwise average (``averaging.pair_average``). A peer already in an exchange
declines, so two peers asking each other at once (A->B while B->A) both get a decline and
retry elsewhere instead of deadlocking. The transport (WebRTC mesh, simulator) only moves
``Update`` objects.
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


class GossipEngine:
    def __init__(self, model: LocalModel, average: Callable[..., tuple[Weights, float]] = pair_average) -> None:
        self.model = model
        self.average = average
        self.busy = False
        self.outcomes: dict[Outcome, int] = {o: 0 for o in Outcome}
        self.served = 0
        self.declined_requests = 0

    async def initiate(self, peer: str, transport: Transport, timeout: float) -> Outcome:
        outcome = await self._initiate(peer, transport, timeout)
        self.outcomes[outcome] += 1
        return outcome

    async def _initiate(self, peer: str, transport: Transport, timeout: float) -> Outcome:
        if self.busy:
            return Outcome.BUSY
        self.busy = True
        try:
            async with self.model.lock:
                mine = self.model.current()
            try:
                async with asyncio.timeout(timeout):
                    reply = await transport.request(peer, mine)
            except TimeoutError:
                return Outcome.TIMEOUT
            except ConnectionError as exc:
                log.debug("exchange with %s failed: %s", peer[:8], exc)
                return Outcome.FAILED
            if reply is None:
                return Outcome.DECLINED
            async with self.model.lock:
                merged, weight = self.average(mine.weights, mine.weight, reply.weights, reply.weight)
                self.model.assign(merged, weight)
            return Outcome.MERGED
        finally:
            self.busy = False

    async def respond(self, update: Update) -> Update | None:
        """Answer a verified request: our pre-merge weights, or None to decline while busy."""
        if self.busy:
            self.declined_requests += 1
            return None
        self.busy = True  # an initiate() racing this merge would overwrite it with a stale average
        try:
            async with self.model.lock:
                mine = self.model.current()
                merged, weight = self.average(mine.weights, mine.weight, update.weights, update.weight)
                self.model.assign(merged, weight)
        finally:
            self.busy = False
        self.served += 1
        return mine


def flat(weights: Weights) -> np.ndarray:
    return np.concatenate([np.ravel(w) for w in weights])
