"""One engine: simulated peers train as the live trainer and exchange by the live gossip rules, on a virtual clock."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.publish import default_publication
from peer.averaging import weighted_average
from peer.error_feedback import ErrorFeedback
from peer.gossip import Outcome
from peer.trainer import Trainer, split_weights_blob
from protocols.chunking import MAX_MESSAGE_SIZE, split_frame
from protocols.codecs import CodecId
from protocols.dataset import decode_shard
from protocols.frame import FrameKind, build_frame, frame_size
from protocols.manifest import TrainingConfig
from research import clock, sim
from research.config import ExperimentConfig
from research.engine import SimSwarm
from research.stacked import StackedDense, dense_layers


def _config(**sections: dict) -> ExperimentConfig:
    base: dict = {"name": "t", "data": {"eval_examples": 200}, "swarm": {"peers": 6, "local_steps": 5, "degree": 3},
                  "budget": {"rounds": 6, "eval_every": 2}}  # fmt: skip
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return ExperimentConfig.model_validate(base)


def test_a_simulated_peer_trains_exactly_as_the_live_trainer() -> None:
    """Same seed, weights and batches: the vectorized step equals tf_keras (Adam, clipnorm, l2, warm-up)."""
    training = TrainingConfig(local_steps=10, l2=1e-4, clipnorm=1.0, warmup_steps=5)
    pub = default_publication(Ed25519PrivateKey.generate(), shards=3, seed=0, training=training)
    m = pub.manifest
    blob = pub.blobs[m.model.initial_weights.digest]
    shards = [decode_shard(pub.blobs[s.digest]) for s in m.dataset.train_shards]  # type: ignore[union-attr]
    test = decode_shard(pub.blobs[m.dataset.test.digest])  # type: ignore[union-attr]
    initial = split_weights_blob(m, blob)
    stacked = StackedDense(dense_layers(m.model.topology), [tuple(w.shape) for w in m.model.weights], m.training, shards, seed=7)  # type: ignore[arg-type]
    live = [Trainer(m, blob, shards[p], test, seed=7) for p in range(3)]
    weights = [initial] * 3
    for chunk in ([10, 3, 7], [10, 10, 10], [4, 10, 1]):  # peers train different numbers of steps in one batch
        weights = stacked.train([0, 1, 2], weights, chunk)
        for p in range(3):
            live[p].train_steps(chunk[p])
    for p in range(3):
        for ours, theirs in zip(weights[p], live[p].get_weights(), strict=True):
            np.testing.assert_allclose(ours, theirs, atol=2e-6)
        assert not np.allclose(weights[p][0], initial[0])


def test_the_virtual_clock_runs_timeouts_without_waiting() -> None:
    async def main() -> tuple[float, bool]:
        await asyncio.sleep(3600.0)
        try:
            async with asyncio.timeout(5.0):
                await asyncio.sleep(10.0)
        except TimeoutError:
            return asyncio.get_running_loop().time(), True
        return asyncio.get_running_loop().time(), False

    started = time.monotonic()
    assert clock.run(main()) == (3605.0, True)
    assert time.monotonic() - started < 1.0
    with pytest.raises(clock.Deadlock):
        clock.run(asyncio.Event().wait())


def _control(cfg: ExperimentConfig, method: str = "gossip") -> SimSwarm:
    from research.published import swarm_model

    spec, _ = sim.spec_for(cfg, swarm_model(cfg, 0), method, 0)
    swarm = SimSwarm(spec)
    clock.run(swarm.run())
    return swarm


def test_simulated_exchanges_decline_when_busy_and_time_out() -> None:
    # two peers finishing their steps at the same instant ask each other: both are busy, both declined ...
    twins = {"peers": 2, "degree": 1, "topology": "full"}
    blind = _control(_config(swarm={**twins, "resolve_crossing": False}, network={"step_jitter": 0.0}, budget={"rounds": 1}))
    assert blind.outcomes()["declined"] == 2 and blind.outcomes()["merged"] == 0
    # ... unless the engines know their ids: the smaller id's request is the exchange, merged once
    known = _control(_config(swarm=twins, network={"step_jitter": 0.0}, budget={"rounds": 1}))
    assert known.outcomes()["merged"] == 1 and known.outcomes()["crossed"] == 1
    # long local work between exchanges: most requests find a free partner and merge
    calm = _control(_config(swarm={"local_steps": 50}, network={"step_time_ms": 20.0}))
    assert calm.outcomes()["merged"] > calm.outcomes()["declined"]
    # a deadline shorter than one frame's transfer: every exchange times out, nothing merges on the initiator's side
    hasty = _control(_config(swarm={"exchange_timeout_s": 0.01}))
    assert hasty.outcomes()["timeout"] > 0 and hasty.outcomes()["merged"] == 0


def test_gossip_conserves_the_weighted_sum_and_converges_to_the_exact_mean() -> None:
    cfg = _config(model={"learning_rate": 0.0, "init_per_peer": True}, data={"partition": "dirichlet", "alpha": 5.0},
                  swarm={"peers": 6, "local_steps": 50, "topology": "ring"}, network={"step_time_ms": 20.0},
                  budget={"rounds": 60, "eval_every": 60})  # fmt: skip
    result = sim.run(cfg, "gossip", 0)
    assert result.stats["exchanges"]["timeout"] == 0 and result.stats["exchanges"]["merged"] > 50
    n = result.sample_counts
    assert n is not None and n.max() / n.min() < 4  # within bounded_weight's ratio: exact averaging
    target = [np.tensordot(n / n.sum(), w.astype(np.float64), axes=1) for w in result.initial_weights]  # type: ignore[union-attr]
    assert result.rows[-1]["consensus_distance"] < 1e-3 * result.rows[0]["consensus_distance"]
    for final, want in zip(result.final_weights, target, strict=True):  # type: ignore[arg-type]
        np.testing.assert_allclose(final, np.broadcast_to(want, final.shape), atol=2e-4)


def test_a_sim_run_is_deterministic_per_seed() -> None:
    cfg = _config(swarm={"codec": "int8"})
    a, b, c = sim.run(cfg, "gossip", 0), sim.run(cfg, "gossip", 0), sim.run(cfg, "gossip", 1)
    assert a.rows == b.rows and a.stats == b.stats
    for x, y in zip(a.final_weights, b.final_weights, strict=True):  # type: ignore[arg-type]
        np.testing.assert_array_equal(x, y)
    assert a.rows != c.rows


def test_frame_sizes_come_from_one_function() -> None:
    key = Ed25519PrivateKey.generate()
    shapes = [(784, 128), (128,), (128, 10), (10,)]
    for codec in CodecId:
        frame = build_frame(key, kind=FrameKind.EXCHANGE_REQUEST, swarm_id=bytes(16), model_id=bytes(32), receiver=bytes(32),
                            session=1, seq=1, exchange_id=1, sample_weight=1.0, step=0,
                            tensors=[np.zeros(s, np.float32) for s in shapes], codec=int(codec)).encode()  # fmt: skip
        assert frame_size(shapes, int(codec)) == len(frame)
        assert sim.frame_bytes(shapes, codec.name.lower()) == sum(len(c) for c in split_frame(frame, 1)) == \
            frame_size(shapes, int(codec), message_size=MAX_MESSAGE_SIZE)


def test_error_feedback_module_is_the_transport_arithmetic() -> None:
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(16, 8)).astype(np.float32)]
    ef = ErrorFeedback()
    sent = [ef.apply("peer", weights, CodecId.INT8) for _ in range(2)]
    assert not np.array_equal(sent[0][0], sent[1][0])  # the second send carries the first one's residual
    assert ef.apply("peer", weights, CodecId.FLOAT32) is weights


def test_fedavg_rounds_close_on_every_client_and_reach_the_mean() -> None:
    cfg = _config(model={"learning_rate": 0.0, "init_per_peer": True}, budget={"rounds": 1, "eval_every": 1})
    result = sim.run(cfg, "central", 0)
    assert result.stats["exchanges"][Outcome.MERGED.value] == 6
    n = result.sample_counts
    target = weighted_average([([w[p] for w in result.initial_weights], n[p]) for p in range(6)])  # type: ignore[index, union-attr]
    for final, want in zip(result.final_weights, target, strict=True):  # type: ignore[arg-type]
        np.testing.assert_allclose(final, np.broadcast_to(want, final.shape), atol=1e-6)
