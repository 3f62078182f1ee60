"""The simulated swarm's control plane: live gossip and FedAvg code on a virtual clock.

Every simulated peer is a ``peer.gossip.GossipEngine`` (busy, decline, timeout), FedAvg clients
use it with ``peer.fedavg.adopt`` and the aggregator is a ``peer.fedavg.FedAvgAggregator`` (its
round closes when every online client sent or after ``round_timeout``), all driven through an
in-memory transport on ``research.clock.VirtualClockLoop``: exchanges are asynchronous, their
timing comes from ``research.timing`` (links are FIFO queues, compute holds the model's lock as
the live training loop does), and the peer loop mirrors ``peer.schedule.Schedule``
(chunks of ``TRAIN_CHUNK`` steps under the lock, an exchange with a random online neighbor after
``local_steps``, a random back-off after anything but a merge).

What flows through the engines are *tokens* (``Tok``), not tensors: which exchange happens when,
who declines and who times out depend on time only, never on weight values, so this pass records
the exact schedule of operations (train, send through the codec, merge, aggregate, evaluate) and
``research.replay`` then computes the tensors with the live averaging functions, batching every
peer's training that is ready at once. The scalar gossip weights are computed here, by the live
rules (``peer.averaging``) called on placeholder tensors; the replay checks them again on the
real tensors.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from peer.averaging import ClippedPairAverage, bounded_pair_average
from peer.fedavg import FedAvgAggregator, adopt
from peer.gossip import GossipEngine, Outcome, Update
from peer.schedule import BACKOFF_S, IDLE_SLEEP_S, TRAIN_CHUNK
from peer.skew import choose_partners

from .timing import TimeModel

PLACEHOLDER = [np.zeros(1, np.float32)]  # stands in for tensors where a live function needs arrays
DONE_GOSSIP_SLEEP_S = IDLE_SLEEP_S  # a peer done training sleeps this long between exchanges, as live peers do


@dataclass(frozen=True)
class Tok:
    """A model version in the schedule: ``research.replay`` computes its tensors."""

    id: int


@dataclass
class Op:
    kind: str  # train | send | merge | interleave | aggregate | evaluate
    peer: int  # trainer, sender, merging peer; -1 for aggregate and evaluate
    inputs: tuple[int, ...]  # token ids
    out: int = -1  # token id produced (-1: none)
    steps: int = 0  # train: local steps
    dst: int = -1  # send: receiver
    scalars: tuple[float, ...] = ()  # merge: (my weight, their weight, new weight); interleave: (n_now, n_merged, n_sent); aggregate: input weights
    row: dict[str, Any] | None = None  # evaluate: the timeseries row (time, bytes, online...)


class Schedule:
    """Operations in the order they happened; tokens 0..P-1 are the peers' initial models."""

    def __init__(self, peers: int) -> None:
        self.peers = peers
        self.ops: list[Op] = []
        self._next = peers + 1  # token `peers` is the aggregator's (never read)

    def _add(self, op: Op) -> int:
        op.out = self._next if op.kind != "evaluate" else -1
        self._next += op.kind != "evaluate"
        self.ops.append(op)
        return op.out

    def train(self, peer: int, token: int, steps: int) -> int:
        return self._add(Op("train", peer, (token,), steps=steps))

    def send(self, src: int, dst: int, token: int) -> int:
        return self._add(Op("send", src, (token,), dst=dst))

    def merge(self, peer: int, mine: int, theirs: int, my_weight: float, their_weight: float, weight: float) -> int:
        return self._add(Op("merge", peer, (mine, theirs), scalars=(my_weight, their_weight, weight)))

    def interleave(self, peer: int, now: int, merged: int, sent: int, scalars: tuple[float, float, float]) -> int:
        return self._add(Op("interleave", peer, (now, merged, sent), scalars=scalars))

    def aggregate(self, inputs: list[tuple[int, float]]) -> int:
        return self._add(Op("aggregate", -1, tuple(t for t, _ in inputs), scalars=tuple(w for _, w in inputs)))

    def evaluate(self, tokens: list[int], row: dict[str, Any]) -> None:
        self._add(Op("evaluate", -1, tuple(tokens), row=row))


class SimModel:
    """``gossip.LocalModel`` of a simulated peer: holds a token, its gossip weight and its step."""

    def __init__(self, token: int, weight: float) -> None:
        self.lock = asyncio.Lock()
        self.token, self.weight, self.step = token, weight, 0
        self.exchanged = token  # the model right after its last merge (what an exchange left it with)

    def current(self) -> Update:
        return Update(Tok(self.token), self.weight, self.step)  # type: ignore[arg-type]

    def assign(self, weights: Any, weight: float) -> None:
        if isinstance(weights, Tok):  # the aggregator's model takes placeholder averages: nothing to track
            self.token = self.exchanged = weights.id
        self.weight = weight


class RecordedRule:
    """A peer's averaging rule in the control plane: records the merge, returns the live rule's weight."""

    def __init__(self, schedule: Schedule, peer: int, rule: Callable[..., tuple[Any, float]], adopts: bool = False) -> None:
        self.schedule, self.peer, self.rule, self.adopts = schedule, peer, rule, adopts

    def __call__(self, mine: Tok, my_weight: float, theirs: Tok, their_weight: float) -> tuple[Tok, float]:
        _, weight = self.rule(PLACEHOLDER, my_weight, PLACEHOLDER, their_weight)
        if self.adopts:  # FedAvg client: the global model itself, no arithmetic
            return theirs, weight
        return Tok(self.schedule.merge(self.peer, mine.id, theirs.id, my_weight, their_weight, weight)), weight


class RecordedInterleave:
    """``GossipEngine.interleave`` in the control plane: records ``peer.gossip.interleaved_merge`` for the replay."""

    def __init__(self, schedule: Schedule, peer: int) -> None:
        self.schedule, self.peer = schedule, peer

    def __call__(self, now: Tok, n_now: float, merged: Tok, n_merged: float, sent: Tok, n_sent: float) -> tuple[Tok, float]:
        out = self.schedule.interleave(self.peer, now.id, merged.id, sent.id, (n_now, n_merged, n_sent))
        return Tok(out), n_now + (n_merged - n_sent)


def make_rule(robust: str, clip_multiplier: float) -> Callable[..., Any]:
    """The live peers' averaging rule for the manifest's ``robust`` (``peer.roles.Gossip`` and ``ClippedGossip``)."""
    return ClippedPairAverage(clip_multiplier) if robust == "clip" else bounded_pair_average


class Network:
    """Per-peer FIFO uplinks and downlinks with the measured costs; counts every byte sent."""

    def __init__(self, time: TimeModel, peers: int, on_bytes: Callable[[int], None]) -> None:
        self.link = time.link
        self.up, self.down = [0.0] * peers, [0.0] * peers
        self.sent = 0
        self.on_bytes = on_bytes

    async def transfer(self, src: int, dst: int, nbytes: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        end = max(now, self.up[src], self.down[dst]) + nbytes / self.link.rate
        self.up[src] = self.down[dst] = end
        self.sent += nbytes
        self.on_bytes(self.sent)
        await asyncio.sleep(end - now + self.link.latency + self.link.overhead * min(1.0, nbytes / self.link.frame))


class RecordingAggregator(FedAvgAggregator):
    """The live aggregator; each closing round is also recorded as an aggregate of the tokens it averages."""

    def __init__(self, swarm: SimSwarm, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.swarm = swarm

    def _close_round(self) -> None:
        live = [self.swarm.placeholders.pop(id(u.weights)) for u, f in self._pending if not f.done()]
        if live:
            self.swarm.round_tokens[self.rounds + 1] = self.swarm.schedule.aggregate([(tok, w) for _, tok, w in live])
        super()._close_round()


class InMemoryTransport:
    """``gossip.Transport`` of one simulated peer: frames cross the modelled links, engines answer."""

    def __init__(self, me: int, swarm: SimSwarm) -> None:
        self.me, self.swarm = me, swarm

    async def propose(self, peer_id: str) -> bool:
        """EXCHANGE_PROPOSE and its ACCEPT or DECLINE: two weightless frames across the modelled link."""
        sw = self.swarm
        peer = int(peer_id)
        if not (sw.online[peer] and sw.online[self.me]):
            raise ConnectionError(f"peer {peer} is offline")
        await sw.net.transfer(self.me, peer, sw.decline_bytes)
        accepted = bool(sw.engines[peer].on_propose(sw.ids[self.me]))
        await sw.net.transfer(peer, self.me, sw.decline_bytes)
        return accepted

    async def request(self, peer_id: str, update: Update) -> Update | None:
        sw = self.swarm
        peer = int(peer_id)
        if not (sw.online[peer] and sw.online[self.me]):
            raise ConnectionError(f"peer {peer} is offline")
        wire = sw.schedule.send(self.me, peer, update.weights.id)  # type: ignore[attr-defined]
        await sw.net.transfer(self.me, peer, sw.frame_bytes)
        responder = sw.engines[peer]
        if isinstance(responder, FedAvgAggregator):
            arrays = [np.zeros(1, np.float32)]  # a fresh placeholder: its identity names the client's token
            sw.placeholders[id(arrays)] = (arrays, wire, update.weight)
            reply = await responder.respond(Update(arrays, update.weight, update.step))
        else:
            reply = await responder.respond(Update(Tok(wire), update.weight, update.step), sw.ids[self.me])  # type: ignore[arg-type]
        if reply is None:
            await sw.net.transfer(peer, self.me, sw.decline_bytes)
            return None
        token = reply.weights.id if isinstance(reply.weights, Tok) else sw.round_tokens[reply.step]
        back = sw.schedule.send(peer, self.me, token)
        await sw.net.transfer(peer, self.me, sw.frame_bytes)
        return Update(Tok(back), reply.weight, reply.step)  # type: ignore[arg-type]


@dataclass
class SwarmSpec:
    """What the control plane needs to know of an experiment."""

    method: str  # gossip | central | local
    peers: int
    sizes: list[int]  # samples per peer (initial gossip weights)
    graph: list[list[int]]
    local_steps: int
    max_steps: int
    frame_bytes: int
    decline_bytes: int
    time: TimeModel
    robust: str = "none"
    clip_multiplier: float = 2.0
    exchange_timeout_s: float = 60.0
    mixing: str = "random"  # peer.skew: random neighbor, or the one-peer exponential graph
    fanout: int = 1  # partners per round (peer.skew.fanout_partners)
    resolve_crossing: bool = True  # engines know their peer id: crossing requests merge once instead of declining
    eval_every_s: float = 1.0
    seed: int = 0
    step_jitter: float = 0.1  # each chunk takes step_s x (1 +- this), uniformly: machines are never in lock-step
    budget_bytes: float | None = None
    budget_seconds: float | None = None
    churn: list[tuple[float, list[bool]]] = field(default_factory=list)  # (time, online per peer) changes


class SimSwarm:
    def __init__(self, spec: SwarmSpec) -> None:
        self.spec = spec
        n = spec.peers
        self.schedule = Schedule(n)
        self.frame_bytes, self.decline_bytes = spec.frame_bytes, spec.decline_bytes
        self.online = [True] * (n + 1)
        self.stop = asyncio.Event()
        self.net = Network(spec.time, n + 1, self._on_bytes)
        self.models = [SimModel(p, float(spec.sizes[p])) for p in range(n)]
        self.placeholders: dict[int, tuple[list[np.ndarray], int, float]] = {}
        self.round_tokens: dict[int, int] = {}
        self.engines: list[Any] = []
        self.ids = [f"{p:06d}" for p in range(n + 1)]  # peer ids as the engines compare them (strings)
        own = (lambda p: self.ids[p]) if spec.resolve_crossing else (lambda p: None)
        if spec.method == "central":
            aggregator = n  # the FedAvg server is one more node, never a trainer
            self.neighbors = [[aggregator] for _ in range(n)]
            self.engines = [GossipEngine(m, average=RecordedRule(self.schedule, p, adopt, adopts=True))  # type: ignore[arg-type]
                            for p, m in enumerate(self.models)]  # fmt: skip
            self.engines.append(RecordingAggregator(self, model=SimModel(n, 0.0), round_timeout=spec.exchange_timeout_s / 2,
                                                    expected=lambda: sum(self.online[:n])))  # fmt: skip
        else:
            self.neighbors = spec.graph
            self.engines = [GossipEngine(m, average=RecordedRule(self.schedule, p, make_rule(spec.robust, spec.clip_multiplier)),  # type: ignore[arg-type]
                                         peer_id=own(p), hold_s=spec.exchange_timeout_s,
                                         interleave=RecordedInterleave(self.schedule, p))
                            for p, m in enumerate(self.models)]  # fmt: skip
        self.transports = [InMemoryTransport(p, self) for p in range(n)]
        self._online_events = [asyncio.Event() for _ in range(n)]
        for e in self._online_events:
            e.set()
        self._churn_left = 0
        self._finished = [False] * n  # did its steps and came back from its last exchange
        self._rounds = [0] * n  # exchange rounds each peer started (the exponential graph's clock)

    def _on_bytes(self, sent: int) -> None:
        if self.spec.budget_bytes is not None and sent >= self.spec.budget_bytes:
            self.stop.set()

    def _set_online(self, online: list[bool]) -> None:
        for p, on in enumerate(online):
            self.online[p] = on
            (self._online_events[p].set if on else self._online_events[p].clear)()

    # ---- one peer: peer.schedule.Schedule -------------------------------------------------
    async def _peer(self, p: int) -> None:
        spec, model = self.spec, self.models[p]
        rng = random.Random(spec.seed * 1_000_003 + p)
        since, finished = 0, False
        while True:
            await self._online_events[p].wait()
            if model.step < spec.max_steps:
                n = min(TRAIN_CHUNK, spec.local_steps - since) or 1
                async with model.lock:
                    out = self.schedule.train(p, model.token, n)
                    await asyncio.sleep(n * spec.time.step_s * (1 + spec.step_jitter * (2 * rng.random() - 1)))
                    model.token = out
                    model.step += n
                since += n
            else:  # done training: keep gossiping towards consensus, as live peers do
                if not finished:
                    finished = self._finished[p] = True
                    self._check_done()
                if spec.method == "local":
                    return
                await asyncio.sleep(DONE_GOSSIP_SLEEP_S)
                since = spec.local_steps
            if since >= spec.local_steps:
                if spec.method != "local":
                    await self._exchange(p, rng)
                since = 0

    def _check_done(self) -> None:
        """The run ends once every peer did its steps or is offline with no churn event to come."""
        if self._churn_left == 0 and all(f or not on for f, on in zip(self._finished, self.online, strict=False)):
            self.stop.set()

    async def _exchange(self, p: int, rng: random.Random) -> None:
        spec = self.spec
        exponential = spec.mixing == "exponential" and spec.method == "gossip"
        pool = range(spec.peers) if exponential else self.neighbors[p]  # the exponential graph links i to i + 2^k
        options = [self.ids[q] for q in pool if q != p and self.online[q]]
        self._rounds[p] += 1
        for partner in choose_partners(self.ids[p], options, self.ids[: spec.peers], self._rounds[p] - 1, rng,
                                       spec.mixing if spec.method == "gossip" else "random", spec.fanout):  # fmt: skip
            outcome = await self.engines[p].initiate(partner, self.transports[p], spec.exchange_timeout_s)
            if outcome != Outcome.MERGED:
                await asyncio.sleep(rng.uniform(0.0, BACKOFF_S))

    # ---- the run ------------------------------------------------------------------------------
    def _evaluate(self, after_exchange: bool = False) -> None:
        """Every peer's current model; with ``after_exchange``, the model its last merge left it with
        (FedAvg: the global model; gossip: before the local drift of the steps since)."""
        loop = asyncio.get_running_loop()
        steps = [m.step for m in self.models]
        row = {"time_s": round(loop.time(), 6), "bytes_sent": self.net.sent, "online": int(sum(self.online[: self.spec.peers])),
               "round": round(float(np.mean(steps)) / self.spec.local_steps, 3), "snapshot": "after_exchange" if after_exchange else "current"}  # fmt: skip
        self.schedule.evaluate([m.exchanged if after_exchange else m.token for m in self.models], row)

    async def _evaluator(self) -> None:
        while True:
            self._evaluate()
            await asyncio.sleep(self.spec.eval_every_s)

    async def _churn(self) -> None:
        loop = asyncio.get_running_loop()
        for at, online in self.spec.churn[self._churn_applied :]:
            await asyncio.sleep(max(0.0, at - loop.time()))
            self._set_online(online)
            self._churn_left -= 1
            self._check_done()

    async def run(self) -> Schedule:
        self._churn_left, self._churn_applied = len(self.spec.churn), 0
        for at, online in self.spec.churn:  # who is away from the start never takes a step
            if at > 0:
                break
            self._set_online(online)
            self._churn_left, self._churn_applied = self._churn_left - 1, self._churn_applied + 1
        tasks = [asyncio.create_task(self._peer(p)) for p in range(self.spec.peers)]
        tasks += [asyncio.create_task(self._evaluator()), asyncio.create_task(self._churn())]
        try:
            if self.spec.budget_seconds is not None:
                try:
                    async with asyncio.timeout(self.spec.budget_seconds):
                        await self.stop.wait()
                except TimeoutError:
                    pass
            else:
                await self.stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        if errors:
            raise errors[0]
        self._evaluate()
        if self.spec.method != "local":
            self._evaluate(after_exchange=True)
        return self.schedule

    def outcomes(self) -> dict[str, int]:
        total = {o.value: 0 for o in Outcome}
        for e in self.engines:
            for o, k in e.outcomes.items():
                total[o.value] += k
        total["declined_requests"] = sum(e.declined_requests for e in self.engines)
        return total
