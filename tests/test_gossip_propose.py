"""Propose before weights (docs/PROTOCOL.md "The gossip exchange"), on the transport-agnostic engine.

The in-memory transport here delivers proposals and requests straight to the other engine and
counts every weight-carrying message, so each test can say what a decline or a crossing cost.
"""

from __future__ import annotations

import asyncio

import numpy as np

from peer.averaging import weighted_average
from peer.gossip import GossipEngine, Outcome, Update, exchange_deadline


def _model(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]


class _Model:
    def __init__(self, weights: list[np.ndarray], n: float) -> None:
        self.lock = asyncio.Lock()
        self.weights, self.n, self.step = weights, n, 0

    def current(self) -> Update:
        return Update([w.copy() for w in self.weights], self.n, self.step)

    def assign(self, weights: list[np.ndarray], weight: float) -> None:
        self.weights, self.n = [np.asarray(w, np.float32) for w in weights], weight


class _Proposing:
    """One peer's transport: proposals, then requests, each way ``latency`` seconds."""

    def __init__(self, engines: dict[str, GossipEngine], me: str, latency: float, sent: list[str]) -> None:
        self.engines, self.me, self.latency, self.sent = engines, me, latency, sent

    async def propose(self, peer: str) -> bool:
        await asyncio.sleep(self.latency)
        accepted = self.engines[peer].on_propose(self.me)
        await asyncio.sleep(self.latency)
        return accepted

    async def request(self, peer: str, update: Update) -> Update | None:
        self.sent.append(f"{self.me}->{peer}")  # a model transfer
        await asyncio.sleep(self.latency)
        reply = await self.engines[peer].respond(update, self.me)
        await asyncio.sleep(self.latency)
        if reply is not None:
            self.sent.append(f"{peer}->{self.me}")
        return reply


A, B, C = "a" * 32, "b" * 32, "c" * 32


async def test_crossing_proposals_make_one_exchange_and_move_one_model_each_way() -> None:
    rng = np.random.default_rng(7)
    models = {A: _Model(_model(rng), 1.0), B: _Model(_model(rng), 3.0)}
    want = weighted_average([(m.weights, m.n) for m in models.values()])
    engines = {p: GossipEngine(m, peer_id=p) for p, m in models.items()}
    sent: list[str] = []
    ta, tb = (_Proposing(engines, p, 0.05, sent) for p in (A, B))  # both proposals in flight at once
    outcomes = await asyncio.wait_for(asyncio.gather(engines[A].initiate(B, ta, 1.0), engines[B].initiate(A, tb, 1.0)), 5)
    assert outcomes == [Outcome.MERGED, Outcome.CROSSED]  # a's (smaller id) proposal was the exchange
    assert sent == [f"{A}->{B}", f"{B}->{A}"]  # the crossing cost no extra model transfer
    assert engines[A].declined_requests == 1 and engines[B].crossed == 1
    for x, y, w in zip(models[A].weights, models[B].weights, want, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, w, atol=1e-6)
    assert not engines[A].busy and not engines[B].busy


async def test_a_peer_holding_for_one_proposer_declines_another_without_any_model_moving() -> None:
    rng = np.random.default_rng(8)
    models = {p: _Model(_model(rng), 1.0) for p in (A, B, C)}
    engines = {p: GossipEngine(m, peer_id=p, hold_s=5.0) for p, m in models.items()}
    sent: list[str] = []
    assert engines[B].on_propose(A)  # b accepted a and now holds for it
    tc = _Proposing(engines, C, 0.0, sent)
    assert await engines[C].initiate(B, tc, 1.0) == Outcome.DECLINED
    assert sent == [] and engines[B].declined_requests == 1  # the decline cost two small frames, no weights
    reply = await engines[B].respond(models[A].current(), A)  # a's request, after its accept
    assert reply is not None and not engines[B].busy and engines[B].served == 1
    assert await engines[C].initiate(B, tc, 1.0) == Outcome.MERGED  # free again


async def test_an_accepted_proposal_whose_request_never_comes_frees_the_responder() -> None:
    rng = np.random.default_rng(9)
    engine = GossipEngine(_Model(_model(rng), 1.0), peer_id=B, hold_s=0.05)
    assert engine.on_propose(A) and engine.busy
    assert not engine.on_propose(C)  # held for a
    await asyncio.sleep(0.1)
    assert not engine.busy and engine.expired_holds == 1
    assert engine.on_propose(C)


async def test_a_merge_after_local_steps_keeps_the_progress_made_while_the_exchange_was_in_flight() -> None:
    rng = np.random.default_rng(10)
    models = {A: _Model(_model(rng), 1.0), B: _Model(_model(rng), 1.0)}
    engines = {p: GossipEngine(m, peer_id=p) for p, m in models.items()}
    sent_a = models[A].current()
    b_before = models[B].current()
    progress = [rng.normal(scale=0.1, size=w.shape).astype(np.float32) for w in sent_a.weights]

    class Training(_Proposing):
        async def request(self, peer: str, update: Update) -> Update | None:
            reply = await super().request(peer, update)
            async with models[A].lock:  # local steps land while the reply is in flight
                models[A].weights = [w + d for w, d in zip(models[A].weights, progress, strict=True)]
                models[A].step += 5
            return reply

    assert await engines[A].initiate(B, Training(engines, A, 0.01, []), 1.0) == Outcome.MERGED
    average = weighted_average([(sent_a.weights, 1.0), (b_before.weights, 1.0)])
    for got, avg, d in zip(models[A].weights, average, progress, strict=True):
        np.testing.assert_allclose(got, avg + d, atol=1e-6)  # the averaging step plus the local progress
    # what both hold sums to what they held plus the local steps: the gossip sums are kept
    for a, b, a0, b0, d in zip(models[A].weights, models[B].weights, sent_a.weights, b_before.weights, progress, strict=True):
        np.testing.assert_allclose(a + b, a0 + b0 + d, atol=1e-5)


async def test_a_fedavg_style_responder_that_accepts_everyone_still_serves_each_request() -> None:
    from peer.fedavg import FedAvgAggregator

    rng = np.random.default_rng(11)
    server = FedAvgAggregator(_Model(_model(rng), 0.0), expected=lambda: 2, round_timeout=1.0)
    clients = {p: _Model(_model(rng), 1.0) for p in (A, C)}
    want = weighted_average([(m.weights, m.n) for m in clients.values()])
    engines: dict[str, object] = {B: server, **{p: GossipEngine(m, average=lambda mine, mw, theirs, tw: (list(theirs), mw))
                                                 for p, m in clients.items()}}  # fmt: skip
    outcomes = await asyncio.gather(*(engines[p].initiate(B, _Proposing(engines, p, 0.01, []), 2.0)  # type: ignore[attr-defined]
                                      for p in clients))  # fmt: skip
    assert outcomes == [Outcome.MERGED, Outcome.MERGED] and server.rounds == 1
    for m in clients.values():
        for got, w in zip(m.weights, want, strict=True):
            np.testing.assert_allclose(got, w, atol=1e-6)


def test_the_exchange_deadline_grows_with_the_frame_and_the_link() -> None:
    floor = 10.0
    assert exchange_deadline(400_000, None, None, floor_s=floor) == floor  # the default model: the floor
    big = exchange_deadline(38_000_000, None, None, floor_s=floor)  # 38 MB at the 1 MB/s default rate
    assert big == 2 * (2 * 38.0)
    assert exchange_deadline(38_000_000, 5e6, 0.1, floor_s=floor) == 2 * (2 * 38e6 / 5e6 + 0.4)
    assert exchange_deadline(10**12, 1.0, None, floor_s=floor) == 600.0  # bounded


async def test_a_peer_initiating_with_one_neighbor_serves_another_and_its_merge_keeps_both() -> None:
    """Initiating does not make a peer busy for a third neighbor's proposal (in a busy mesh that
    rule declined most proposals): a serves c while its own exchange with b is in flight, and its
    merge adds the a-b averaging step to the model the a-c exchange left, so what the three hold
    still sums to what they held (push-pull gossip keeps the sum)."""
    rng = np.random.default_rng(12)
    models = {p: _Model(_model(rng), 1.0) for p in (A, B, C)}
    before = {p: m.current().weights for p, m in models.items()}
    engines = {p: GossipEngine(m, peer_id=p) for p, m in models.items()}
    sent: list[str] = []
    slow_a = _Proposing(engines, A, 0.05, sent)  # a's exchange with b is slow ...
    a_exchange = asyncio.create_task(engines[A].initiate(B, slow_a, 2.0))
    await asyncio.sleep(0.12)  # ... and in flight when c proposes to a
    assert engines[A].busy
    assert await engines[C].initiate(A, _Proposing(engines, C, 0.0, sent), 2.0) == Outcome.MERGED
    assert await a_exchange == Outcome.MERGED
    assert engines[A].declined_requests == 0 and engines[A].served == 1 and engines[A].interleaved == 1
    for i in range(2):
        np.testing.assert_allclose(models[A].weights[i], (before[B][i] + before[C][i]) / 2, atol=1e-6)
        total = sum(models[p].weights[i] for p in (A, B, C))
        np.testing.assert_allclose(total, sum(before[p][i] for p in (A, B, C)), atol=1e-5)
    assert models[A].n == 1.0


async def test_interleaved_exchanges_with_proposals_still_converge_to_the_exact_weighted_mean() -> None:
    """Peers serve proposals while their own exchange is in flight, so exchanges interleave; the
    merge on the gossip sums (``_merge_into``) keeps the weighted mean exact anyway."""
    import random

    from peer.averaging import consensus_distance

    rng = np.random.default_rng(13)
    ids = [chr(ord("a") + i) * 32 for i in range(6)]
    models = {p: _Model(_model(rng), float(10 * (i + 1))) for i, p in enumerate(ids)}
    target = weighted_average([(m.weights, m.n) for m in models.values()])
    engines = {p: GossipEngine(m, peer_id=p) for p, m in models.items()}
    transports = {p: _Proposing(engines, p, 0.002, []) for p in ids}
    ring = {p: [ids[(i - 1) % 6], ids[(i + 1) % 6]] for i, p in enumerate(ids)}
    pick = random.Random(0)
    before = consensus_distance([m.weights for m in models.values()])

    async def jittered(p: str) -> Outcome:
        await asyncio.sleep(pick.random() * 0.004)
        return await engines[p].initiate(pick.choice(ring[p]), transports[p], 1.0)

    outcomes = [o for _ in range(150) for o in await asyncio.gather(*(jittered(p) for p in ids))]
    assert sum(e.served for e in engines.values()) > 0 and Outcome.TIMEOUT not in outcomes
    assert sum(e.interleaved for e in engines.values()) > 0  # the case this test is about happened
    assert consensus_distance([m.weights for m in models.values()]) < 1e-4 * before
    for m in models.values():
        for got, want in zip(m.weights, target, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)
