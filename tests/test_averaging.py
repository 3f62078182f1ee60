"""The averaging core against numpy: pair averages, conservation, convergence to the mean."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from peer.averaging import consensus_distance, pair_average, weighted_average
from peer.gossip import GossipEngine, Outcome, Update


def _model(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]


def test_pair_average_is_the_weighted_mean() -> None:
    rng = np.random.default_rng(1)
    a, b = _model(rng), _model(rng)
    merged, weight = pair_average(a, 3.0, b, 1.0)
    for m, x, y in zip(merged, a, b, strict=True):
        np.testing.assert_allclose(m, 0.75 * x + 0.25 * y, rtol=1e-6)
    assert weight == 2.0


def test_pair_average_refuses_different_layouts() -> None:
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError):
        pair_average(_model(rng), 1.0, [np.zeros((4, 3), np.float32)], 1.0)


def test_weighted_average_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    models = [(_model(rng), float(n)) for n in (1, 5, 10)]
    expected = [sum(m[i] * n for m, n in models) / 16 for i in range(2)]
    for got, want in zip(weighted_average(models), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5)


class _ArrayModel:
    def __init__(self, weights: list[np.ndarray], n: float) -> None:
        self.lock = asyncio.Lock()
        self.weights, self.n = weights, n

    def current(self) -> Update:
        return Update([w.copy() for w in self.weights], self.n)

    def assign(self, weights: list[np.ndarray], weight: float) -> None:
        self.weights, self.n = weights, weight


class _InMemoryTransport:
    """Delivers requests straight to the other engine (what the simulator will do)."""

    def __init__(self, engines: dict[str, GossipEngine], latency: float = 0.0) -> None:
        self.engines, self.latency = engines, latency

    async def request(self, peer: str, update: Update) -> Update | None:
        await asyncio.sleep(self.latency)  # request in flight: other exchanges interleave
        reply = await self.engines[peer].respond(update)
        await asyncio.sleep(self.latency)  # reply in flight
        return reply


async def test_random_pairwise_gossip_converges_to_the_exact_weighted_mean() -> None:
    rng = np.random.default_rng(4)
    sizes = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    models = [_ArrayModel(_model(rng), n) for n in sizes]
    target = weighted_average([(m.weights, m.n) for m in models])
    engines = {str(i): GossipEngine(m) for i, m in enumerate(models)}
    transport = _InMemoryTransport(engines)  # instant links: jitter spreads the exchanges
    ring = {str(i): [str((i - 1) % 6), str((i + 1) % 6)] for i in range(6)}  # sparse but connected
    pick = random.Random(0)
    before = consensus_distance([m.weights for m in models])
    async def jittered(p: str, delay: float) -> Outcome:
        await asyncio.sleep(delay)  # live peers desynchronize the same way after a decline
        return await engines[p].initiate(pick.choice(ring[p]), transport, 1.0)

    for _ in range(300):
        await asyncio.gather(*(jittered(p, pick.random() * 0.005) for p in engines))
    assert consensus_distance([m.weights for m in models]) < 1e-5 * before
    for m in models:
        for got, want in zip(m.weights, target, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)
    merged = sum(e.outcomes[Outcome.MERGED] for e in engines.values())
    assert merged > 0 and merged + sum(e.outcomes[Outcome.BUSY] + e.outcomes[Outcome.DECLINED] for e in engines.values()) == 1800


async def test_simultaneous_requests_decline_instead_of_deadlocking() -> None:
    rng = np.random.default_rng(5)
    a, b = _ArrayModel(_model(rng), 1.0), _ArrayModel(_model(rng), 1.0)
    engines = {"a": GossipEngine(a), "b": GossipEngine(b)}
    transport = _InMemoryTransport(engines, latency=0.01)  # both requests in flight at once
    outcomes = await asyncio.wait_for(
        asyncio.gather(engines["a"].initiate("b", transport, 1.0), engines["b"].initiate("a", transport, 1.0)), 5
    )
    assert outcomes == [Outcome.DECLINED, Outcome.DECLINED]
    assert await engines["a"].initiate("b", transport, 1.0) == Outcome.MERGED
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(x, y)


class _SenderTransport(_InMemoryTransport):
    """As ``_InMemoryTransport``, and the responder learns who asked (the live transport knows the link)."""

    def __init__(self, engines: dict[str, GossipEngine], sender: str, latency: float) -> None:
        super().__init__(engines, latency)
        self.sender = sender

    async def request(self, peer: str, update: Update) -> Update | None:
        await asyncio.sleep(self.latency)
        reply = await self.engines[peer].respond(update, self.sender)
        await asyncio.sleep(self.latency)
        return reply


async def test_crossing_requests_make_one_exchange_decided_by_peer_id() -> None:
    """A->B while B->A: the smaller id's request is the exchange; no decline-decline livelock."""
    rng = np.random.default_rng(7)
    a, b = _ArrayModel(_model(rng), 1.0), _ArrayModel(_model(rng), 3.0)
    want = weighted_average([(a.weights, a.n), (b.weights, b.n)])
    engines = {"a" * 32: GossipEngine(a, peer_id="a" * 32), "b" * 32: GossipEngine(b, peer_id="b" * 32)}
    ta, tb = (_SenderTransport(engines, me, latency=0.05) for me in engines)  # slow links: both requests in flight
    outcomes = await asyncio.wait_for(
        asyncio.gather(engines["a" * 32].initiate("b" * 32, ta, 1.0), engines["b" * 32].initiate("a" * 32, tb, 1.0)), 5
    )
    assert outcomes == [Outcome.MERGED, Outcome.CROSSED]  # a's request was the exchange; b answered it
    assert engines["b" * 32].crossed == 1 and engines["a" * 32].declined_requests == 1
    for x, y, w in zip(a.weights, b.weights, want, strict=True):
        np.testing.assert_array_equal(x, y)  # one pairwise average on both sides, conserved
        np.testing.assert_allclose(x, w, atol=1e-6)
    assert a.n == b.n == 2.0


async def test_a_silent_peer_times_out() -> None:
    class Silent:
        async def request(self, peer: str, update: Update) -> Update | None:
            await asyncio.Event().wait()
            return None

    model = _ArrayModel(_model(np.random.default_rng(6)), 1.0)
    before = [w.copy() for w in model.weights]
    assert await GossipEngine(model).initiate("x", Silent(), 0.05) == Outcome.TIMEOUT
    for x, y in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(x, y)
