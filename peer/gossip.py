"""Asynchronous push-pull gossip: the exchange logic, independent of any transport.

A peer that finished its local steps picks a neighbor and *initiates*: it first *proposes*
(a small frame), and only once the neighbor *accepts* (and holds itself for us) does it send
its weights and gossip weight; the neighbor *responds* with its own pre-merge weights, and both
then hold the pairwise average (``averaging.pair_average``). A busy neighbor declines the
proposal, so a decline costs two small frames, never a model transfer. Two peers proposing to
each other at once ("crossing" proposals) are resolved by peer id: the smaller id's proposal is
the exchange, the larger peer accepts it while its own attempt is in flight (which then ends as
``CROSSED``), and the smaller one declines the larger one's. Without this both would decline,
and peers whose exchanges take long (large models, slow links) would do so round after round
(a livelock). The transport (WebRTC mesh, simulator) only moves proposals and ``Update`` objects.

The initiator may keep training while its exchange is in flight: its merge then adds the
averaging step computed against what it sent to the model it has now (``_merge_into``), so the
local progress made meanwhile is kept. docs/PROTOCOL.md "The gossip exchange" is the contract.
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
    async def propose(self, peer: str) -> bool:
        """Ask ``peer`` whether it will exchange now: True if it accepted (and holds itself for us)."""
        ...

    async def request(self, peer: str, update: Update) -> Update | None:
        """Send an exchange request; return the reply, or None if the peer declined."""
        ...


class Engine(Protocol):
    """What a transport needs from an exchange engine (``GossipEngine``, ``fedavg.FedAvgAggregator``).

    The transport answers proposals and requests with ``on_propose`` and ``respond``, serves
    pulls from ``model`` (under ``model.lock``), and reports the counters; nothing else of an
    engine is read from outside it.
    """

    model: LocalModel
    outcomes: dict[Outcome, int]  # exchanges this peer initiated, by how they ended
    served: int  # requests answered with our model
    declined_requests: int  # proposals and requests declined

    def on_propose(self, peer: str) -> bool:
        """Answer a verified proposal from ``peer``: True to accept (and hold for its request)."""
        ...

    async def respond(self, update: Update, peer: str | None = None) -> Update | None:
        """Answer a verified request from ``peer``: the reply, or None to decline."""
        ...


class Outcome(Enum):
    MERGED = "merged"
    DECLINED = "declined"
    BUSY = "busy"
    TIMEOUT = "timeout"
    FAILED = "failed"
    CROSSED = "crossed"  # our proposal crossed the partner's; we merged as its responder instead


DEFAULT_RATE_BYTES_S = 1e6  # a link's rate until measured: about a 10 Mbit/s mobile uplink


def exchange_deadline(frame_bytes: int, rate_bytes_s: float | None, rtt_s: float | None, *,
                      floor_s: float, ceiling_s: float = 600.0) -> float:  # fmt: skip
    """Seconds to wait for each step of an exchange (accept, then response) and to hold for one.

    ``2 x (2 x frame_bytes / rate + 4 x rtt)``: request and reply transfers plus the round
    trips of propose/accept, request and reply, doubled for slack; never below ``floor_s`` (the
    swarm's ``exchange_timeout_s``) nor above ``ceiling_s``. An unknown rate is taken as
    ``DEFAULT_RATE_BYTES_S``, an unknown RTT as 0. Units: bytes, bytes per second, seconds.
    docs/PROTOCOL.md "The gossip exchange" gives the same formula.
    """
    rate = rate_bytes_s if rate_bytes_s and rate_bytes_s > 0 else DEFAULT_RATE_BYTES_S
    expected = 2.0 * frame_bytes / rate + 4.0 * (rtt_s or 0.0)
    return min(max(floor_s, 2.0 * expected), ceiling_s)


def interleaved_merge(now: Weights, n_now: float, merged: Weights, n_merged: float, sent: Weights,
                      n_sent: float) -> tuple[Weights, float]:
    """An averaging step ``sent -> merged`` applied to ``now`` on the gossip sums ``s = n·w``:
    ``s = n_now·now + n_merged·merged - n_sent·sent`` and ``n = n_now + n_merged - n_sent``;
    returns ``(s / n, n)`` (float32 tensors of ``now``'s shapes). Linear in each side's sums, so
    the swarm's ``Σ n·w`` and ``Σ n`` are kept however exchanges interleave (push-sum's
    invariant, Kempe, Dobra and Gehrke 2003). Raises ValueError for different layouts."""
    if not len(now) == len(merged) == len(sent):
        raise ValueError("models to merge have different tensor layouts")
    total = n_now + (n_merged - n_sent)
    out = [((n_now * np.asarray(a, np.float64) + n_merged * np.asarray(m, np.float64) - n_sent * np.asarray(s, np.float64))
            / total).astype(np.float32) for a, m, s in zip(now, merged, sent, strict=True)]  # fmt: skip
    return out, total


class GossipEngine:
    """One peer's side of every exchange: initiates, answers proposals and requests, merges.

    States: free; *initiating* with one partner; *holding* for one proposer it accepted (until
    that proposer's request arrives or ``hold_s(peer)`` seconds pass); *responding* (merging a
    request). Only a free engine accepts a proposal or starts an exchange, except for the
    crossing rule (module docstring).
    """

    def __init__(self, model: LocalModel, average: Callable[..., tuple[Weights, float]] = pair_average,
                 peer_id: str | None = None, hold_s: Callable[[str], float] | float = 10.0,
                 interleave: Callable[..., tuple[Weights, float]] | None = None) -> None:  # fmt: skip
        self.model = model
        self.average = average
        self.interleave = interleave or interleaved_merge  # the simulator records it instead of computing it
        self.peer_id = peer_id  # ours: breaks crossing proposals (None: every busy proposal is declined)
        self.hold_s = hold_s if callable(hold_s) else (lambda peer, s=float(hold_s): s)
        self.outcomes: dict[Outcome, int] = {o: 0 for o in Outcome}
        self.served = 0
        self.declined_requests = 0  # proposals and requests we declined
        self.crossed = 0  # crossing proposals (or requests) accepted as the larger id
        self.expired_holds = 0  # accepted proposals whose request never came in time
        self._initiating: str | None = None  # the peer we are initiating with
        self._crossed_with: str | None = None
        self._held_for: str | None = None  # the proposer we accepted and wait for
        self._hold_timer: asyncio.TimerHandle | None = None
        self._responding = False  # merging a request: an initiate() racing it would overwrite it
        self.interleaved = 0  # our merges that landed after we served another neighbor meanwhile
        self._merges = 0  # merges into our model so far: tells _merge_into whether another exchange landed meanwhile

    @property
    def busy(self) -> bool:
        return self._initiating is not None or self._held_for is not None or self._responding

    async def initiate(self, peer: str, transport: Transport, timeout: float) -> Outcome:
        """One exchange with ``peer``: propose, and once accepted send our weights and merge the reply.

        ``timeout`` (seconds) bounds the wait for the accept and, again, for the response.
        """
        outcome = await self._initiate(peer, transport, timeout)
        self.outcomes[outcome] += 1
        return outcome

    async def _initiate(self, peer: str, transport: Transport, timeout: float) -> Outcome:
        if self.busy:
            return Outcome.BUSY
        self._initiating, self._crossed_with = peer, None
        try:
            propose = getattr(transport, "propose", None)  # a transport without it: the request is the proposal
            if propose is not None:
                try:
                    async with asyncio.timeout(timeout):
                        accepted = await propose(peer)
                except TimeoutError:
                    return Outcome.CROSSED if self._crossed_with == peer else Outcome.TIMEOUT
                except ConnectionError as exc:
                    log.debug("proposal to %s failed: %s", peer[:8], exc)
                    return Outcome.FAILED
                if self._crossed_with == peer:
                    return Outcome.CROSSED  # we hold for the partner's proposal instead
                if not accepted:
                    return Outcome.DECLINED
            async with self.model.lock:
                sent, merges_at_send = self.model.current(), self._merges
            try:
                async with asyncio.timeout(timeout):
                    reply = await transport.request(peer, sent)
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
                self._merge_into(sent, reply, merges_at_send)
            return Outcome.MERGED
        finally:
            self._initiating = None

    def _merge_into(self, sent: Update, reply: Update, merges_at_send: int | None = None) -> None:
        """Merge ``reply`` into our model; call under ``model.lock``.

        The averaging step is computed against ``sent``, the model the partner merged with.
        Nothing happened meanwhile: the average is assigned as computed (two replicas that just
        exchanged are bit-identical). We trained since (``step`` moved): that step is added to
        the model we have now, ``w <- w_now + (average(sent, reply) - sent)``, so the local
        progress is kept. We also served another neighbor meanwhile (``merges_at_send`` is
        behind): the step is taken on the gossip sums instead, ``s = n·w`` and ``n``,
        ``s <- s_now + (n'·average - n_sent·w_sent)``, ``n <- n_now + (n' - n_sent)``, which are
        linear in what each side holds, so every exchange still moves as much out of one peer as
        into the other and the swarm's weighted mean is kept exactly (push-sum's invariant,
        Kempe, Dobra and Gehrke 2003). docs/PROTOCOL.md "Exchanges beside training".
        """
        merged, weight = self.average(sent.weights, sent.weight, reply.weights, reply.weight)
        now = self.model.current()
        served_meanwhile = merges_at_send is not None and self._merges != merges_at_send
        self._merges += 1
        if served_meanwhile:
            self.interleaved += 1
            merged, weight = self.interleave(now.weights, now.weight, merged, weight, sent.weights, sent.weight)
        elif now.step != sent.step:
            merged = [(np.asarray(n, np.float64) + (np.asarray(m, np.float64) - s)).astype(np.float32)
                      for n, m, s in zip(now.weights, merged, sent.weights, strict=True)]  # fmt: skip
        self.model.assign(merged, weight)

    def _answers_crossing(self, peer: str | None) -> bool:
        """A proposal (or request) from the peer we initiate with, whose smaller id makes it the exchange."""
        return (peer is not None and self.peer_id is not None and peer == self._initiating
                and self._crossed_with is None and peer < self.peer_id)  # fmt: skip

    def on_propose(self, peer: str) -> bool:
        """Answer a verified proposal from ``peer``: True to accept (we then hold for it), False to decline."""
        if self._held_for == peer:
            self._hold(peer)  # it proposes again (its request was lost): the same hold, re-armed
            return True
        if self._held_for is not None or self._responding:
            self.declined_requests += 1
            return False
        if self._initiating == peer:  # crossing proposals: the smaller id's is the exchange
            if not self._answers_crossing(peer):
                self.declined_requests += 1
                return False
            self._crossed_with = peer  # our own proposal's answer (a decline) ends our attempt
            self.crossed += 1
        # initiating with someone else does not make us busy for a proposer: its exchange is
        # served while ours is in flight, and our merge keeps it (``_merge_into``). Declining
        # here left most proposals of a busy mesh declined (benchmarks/mesh_scale.py outcomes).
        self._hold(peer)
        return True

    def _hold(self, peer: str) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        self._held_for = peer
        self._hold_timer = asyncio.get_running_loop().call_later(self.hold_s(peer), self._expire_hold, peer)

    def _expire_hold(self, peer: str) -> None:
        if self._held_for == peer:
            log.debug("%s accepted but sent no request in time: free again", peer[:8])
            self.expired_holds += 1
            self._release_hold()

    def _release_hold(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        self._held_for, self._hold_timer = None, None

    async def respond(self, update: Update, peer: str | None = None) -> Update | None:
        """Answer a verified request from ``peer``: our pre-merge weights, or None to decline.

        Served: the request of the proposer we hold for; or, from a peer that did not propose
        (an older peer, a transport without proposals), any request while we are free, and a
        crossing request by the peer-id rule.
        """
        held = peer is not None and self._held_for == peer
        crossing = not held and self.busy and not self._responding and self._held_for is None and self._answers_crossing(peer)
        if self.busy and not held and not crossing:
            self.declined_requests += 1
            return None
        if held:
            self._release_hold()
        if crossing:
            self._crossed_with = peer  # our own request's reply (a decline) must not be merged too
            self.crossed += 1
        self._responding = True
        try:
            async with self.model.lock:
                mine = self.model.current()
                merged, weight = self.average(mine.weights, mine.weight, update.weights, update.weight)
                self.model.assign(merged, weight)
                self._merges += 1
        finally:
            self._responding = False
        self.served += 1
        return mine


def flat(weights: Weights) -> np.ndarray:
    return np.concatenate([np.ravel(w) for w in weights])
