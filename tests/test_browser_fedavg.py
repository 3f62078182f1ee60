"""A FedAvg (``gossip.method = "central"``) swarm with a Chromium tab as one of its clients.

Real signaling server, real aiortc and Chromium WebRTC, TensorFlow and TensorFlow.js. The
aggregator is a real ``PeerNode`` run in this process (its mesh, transport, verifier and
``FedAvgAggregator`` as ``swarm join`` builds them) whose aggregator also keeps, for each
request it answered, what it received (sender, weights, sample weight) and the round's result;
one Python client is a ``swarm join --data`` subprocess (1000 digits of its own, half the
tab's shard, so the sample-weighted mean is not the plain one) and one client is a tab. The
clients start first: both must do one round's steps and wait there until the aggregator is up
(synchronous FedAvg). The swarm must reach the target, every round's result must be the sample-weighted mean (numpy,
float64) of exactly what was received, the aggregator must hold it, and each client's sample
weight must stay its sample count: a tab that averaged pairwise with the aggregator would send
a growing gossip weight instead and pull every round's average towards itself.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import spawn_peer
from apps.publish import default_publication, upload
from peer.config import PeerConfig
from peer.fedavg import FedAvgAggregator
from peer.gossip import Update
from peer.identity import load_or_create
from peer.node import PeerNode
from protocols.crypto import public_key_bytes
from protocols.dataset import decode_shard
from protocols.manifest import GossipConfig

from browser import chromium, tab_accuracy
from publish_helpers import mnist_subset_npz

TARGET = 0.85
OWN_EXAMPLES = 1000  # the Python client trains on its own 1000 digits, the tab on a 2000-example shard
SNAPSHOT = "() => { const s = window.swarmPeer && window.swarmPeer.snapshot(); if (s) delete s.history; return s; }"


@dataclass
class Served:
    """One answered request: what the aggregator received, the round's reply, and its own model right after."""

    peer: str | None
    received: Update
    reply: Update
    held: list[np.ndarray]


class RecordingAggregator(FedAvgAggregator):
    """The real aggregator; each answered request is also kept in ``served``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.served_log: list[Served] = []

    async def respond(self, update: Update, peer: str | None = None) -> Update | None:
        reply = await super().respond(update, peer)
        if reply is not None:  # the model cannot change before this line: the next round needs new requests
            held = [np.array(w) for w in self.model.current().weights]
            self.served_log.append(Served(peer, Update([np.array(w) for w in update.weights], update.weight, update.step), reply, held))
        return reply


class AggregatorNode(PeerNode):
    """``swarm join`` as the manifest's aggregator, its FedAvgAggregator a RecordingAggregator."""

    aggregator: RecordingAggregator | None = None

    def _engine(self, manifest: Any, trainer: Any, mesh: Any) -> Any:
        engine = super()._engine(manifest, trainer, mesh)
        assert isinstance(engine, FedAvgAggregator), engine
        self.aggregator = RecordingAggregator(trainer, expected=engine.expected, round_timeout=engine.round_timeout)
        return self.aggregator


def sample_weighted_mean(received: list[Update]) -> list[np.ndarray]:
    """Σ nᵢ·wᵢ / Σ nᵢ per tensor, in float64 (numpy's own weighted average)."""
    weights = np.array([u.weight for u in received], np.float64)
    return [np.average(np.stack([np.asarray(u.weights[i], np.float64) for u in received]), axis=0, weights=weights)
            for i in range(len(received[0].weights))]  # fmt: skip


async def _hold_at_their_round(page: Any, py: Any, local_steps: int, hold_s: float = 10.0) -> None:
    """Synchronous FedAvg: before the aggregator is up, both clients do one round's steps and wait there.

    A client that trained on alone would make the comparison with gossip one against local training.
    """
    held_since, deadline = None, time.monotonic() + 300
    while True:
        snap, row = await page.evaluate(SNAPSHOT), py.latest
        steps = ((snap or {}).get("step", 0), (row or {}).get("step", 0))
        assert max(steps) <= local_steps, f"a FedAvg client trained past its round with no aggregator: steps {steps}"
        if steps == (local_steps, local_steps):
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= hold_s:
                return
        assert py.proc.poll() is None, py.log.read_text()[-3000:]
        assert not (snap and snap["error"]), snap["error"]
        assert time.monotonic() < deadline, ("the clients never reached their first round", steps)
        await asyncio.sleep(0.5)


@pytest.mark.timeout(900)
async def test_a_tab_is_a_fedavg_client_and_the_aggregator_averages_what_it_received(server: str, tmp_path: Path,
                                                                                     publisher_key: Ed25519PrivateKey) -> None:  # fmt: skip
    aggregator_key = public_key_bytes(load_or_create(tmp_path / "aggregator.key")).hex()
    pub = await asyncio.to_thread(default_publication, publisher_key, swarm_id=secrets.token_hex(16), seed=0,
                                  gossip=GossipConfig(method="central", aggregator=aggregator_key))  # fmt: skip
    join_url = (await upload(server, pub))["join_url"]
    node = AggregatorNode(PeerConfig(server=server, swarm_id=pub.manifest.swarm_id, identity=tmp_path / "aggregator.key",
                                     ice_addresses=["127.0.0.1"], checkpoint_dir=tmp_path / "aggregator-checkpoint",
                                     eval_limit=500, progress=False))  # fmt: skip
    aggregating: asyncio.Task[None] | None = None
    # clients of unequal sizes: the sample-weighted mean is then not the plain mean of the clients
    own = mnist_subset_npz(tmp_path / "own.npz", per_class=OWN_EXAMPLES // 10)
    py = spawn_peer(join_url, tmp_path, "py", "--seed", "1", "--eval-limit", "1000", "--data", str(own))
    errors: list[str] = []
    m = pub.manifest
    try:
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{join_url}?seed=10")
            await _hold_at_their_round(page, py, m.training.local_steps)
            aggregating = asyncio.create_task(node.run())
            started = time.monotonic()
            deadline = started + 420
            while True:
                snap = await page.evaluate(SNAPSHOT)
                row = py.latest
                log = node.aggregator.served_log if node.aggregator else []
                both = {s.reply.step for s in log if s.peer == (snap or {}).get("peerId")} & {
                    s.reply.step for s in log if s.peer == (row or {}).get("peer_id")}
                if (snap and snap["testAcc"] is not None and snap["testAcc"] >= TARGET and row and row["test_acc"] >= TARGET
                        and len(both) >= 3):  # fmt: skip
                    break
                assert not errors, errors
                assert not (snap and snap["error"]), snap["error"]
                assert py.proc.poll() is None, py.log.read_text()[-3000:]
                assert not aggregating.done(), aggregating.exception()  # type: ignore[union-attr]
                assert node.aggregator is not None or time.monotonic() < started + 120, (
                    "the aggregator's engine was not made through PeerNode._engine: follow peer/node.py in AggregatorNode")
                assert time.monotonic() < deadline, (snap, row, len(log))
                await asyncio.sleep(1)
            x, y = decode_shard(pub.blobs[m.dataset.test.digest])
            measured = await tab_accuracy(page, m, pub.blobs[m.model.initial_weights.digest], x, y)
    finally:
        py.terminate()
        code = await py.wait(60)
        node.stop.set()
        if aggregating is not None:
            await asyncio.wait_for(asyncio.gather(aggregating, return_exceptions=True), 60)
    assert code == 0, py.log.read_text()[-2000:]
    assert measured >= TARGET - 0.02, measured  # the tab's model evaluated here, not its claim

    tab, python = snap["peerId"], row["peer_id"]
    # the tab linked with the aggregator only, as the FedAvg client it is
    assert snap["role"] == "client" and [n["peerId"] for n in snap["neighbors"]] == [node.metrics.peer_id], snap["neighbors"]
    samples = {tab: m.dataset.train_shards[snap["shard"]].num_samples, python: OWN_EXAMPLES}
    assert samples[tab] != samples[python], samples
    assert snap["gossipWeight"] == samples[tab]  # adopting keeps the sample count; pairwise averaging would grow it
    log = node.aggregator.served_log
    rounds: dict[int, list[Served]] = {}
    for s in log:
        rounds.setdefault(s.reply.step, []).append(s)
    for number, served in rounds.items():
        assert {s.peer for s in served} <= {tab, python} and len({s.peer for s in served}) == len(served), number
        for s in served:  # each client sent its sample count every round, never a gossip weight of its own making
            assert s.received.weight == samples[s.peer], (number, s.peer, s.received.weight, samples)
        expected = sample_weighted_mean([s.received for s in served])
        for s in served:  # one reply per round: the mean of exactly what was received, and what the aggregator holds
            assert s.reply.weight == sum(x.received.weight for x in served)
            for got, held, want in zip(s.reply.weights, s.held, expected, strict=True):
                assert got.dtype == np.float32 and np.array_equal(got, held)
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    print("\nrounds (clients, sample weights):", {n: [(s.peer[:6], s.received.weight) for s in v] for n, v in rounds.items()},
          "tab accuracy measured here:", measured)  # fmt: skip
    assert sum(len(served) == 2 for served in rounds.values()) >= 3, {n: [s.peer for s in v] for n, v in rounds.items()}
    # and the round's result is not simply one client's model (the mean moves both)
    last_both = max(n for n, served in rounds.items() if len(served) == 2)
    first, second = (s.received.weights for s in rounds[last_both])
    assert not np.array_equal(rounds[last_both][0].reply.weights[0], first[0])
    assert not np.array_equal(rounds[last_both][0].reply.weights[0], second[0])
