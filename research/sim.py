"""The ``sim`` backend: the live gossip and FedAvg code on a virtual clock, tensors computed in batches.

One run = two passes over one experiment (method, seed):

1. control (``research.engine``): every peer's ``GossipEngine`` (or FedAvg client and
   aggregator) on ``research.clock.VirtualClockLoop``, exchanges over the modelled links of
   ``research.timing`` (measured profiles), recording the schedule of operations;
2. data (``research.replay``): the schedule computed with the live arithmetic (averaging rules,
   error feedback, codecs, ``weighted_average``) and the live training step, vectorized across
   every peer whose training is ready (``research.models``).

Frame sizes come from ``protocols.frame.frame_size``. Deterministic: same config and seed, same
schedule, same tensors, identical CSVs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocols.chunking import MAX_MESSAGE_SIZE
from protocols.codecs import CodecId
from protocols.frame import frame_size

from . import clock, topology
from .config import AttackConfig, ExperimentConfig, Method
from .engine import SimSwarm, SwarmSpec, make_rule
from .models import Evaluator, make_block
from .published import SwarmModel, mixing_of, swarm_model
from .replay import Blocks, DataPlane, Replay
from .timing import TimeModel, time_model


@dataclass
class RunResult:
    method: str
    seed: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per evaluation
    peer_rows: list[dict[str, Any]] = field(default_factory=list)  # method, seed, round, peer, acc
    initial_weights: list[np.ndarray] | None = None  # stacked [peers, ...], for tests
    final_weights: list[np.ndarray] | None = None
    sample_counts: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # exchange outcomes, operations, train batches


def frame_bytes(shapes: list[tuple[int, ...]], codec: str) -> int:
    """Bytes on the data channel for one update frame (``protocols.frame.frame_size`` with chunk headers)."""
    return frame_size(shapes, int(CodecId[codec.upper()]), message_size=MAX_MESSAGE_SIZE)


def _poisoner(attack: AttackConfig, seed: int) -> Callable[[list[np.ndarray], int], list[np.ndarray]]:
    rng = np.random.default_rng(seed + 0xBAD)

    def poison(weights: list[np.ndarray], sender: int) -> list[np.ndarray]:
        if attack.kind == "gaussian":
            return [(w + rng.normal(0, attack.noise_std, w.shape)).astype(np.float32) for w in weights]
        if attack.kind == "sign_flip":
            return [-w for w in weights]
        return [(w * attack.factor).astype(np.float32) for w in weights]

    return poison


def nominal_round_s(config: ExperimentConfig, time: TimeModel, frame: int) -> float:
    """One round without contention: local steps, then one exchange (the grid for evaluations and churn)."""
    return config.swarm.local_steps * time.step_s + time.link.exchange_s(frame)


def churn_events(config: ExperimentConfig, peers: int, round_s: float, rng: np.random.Generator) -> list[tuple[float, list[bool]]]:
    """Who is online when: round ``r`` of a trace or of ``period_rounds`` starts at ``(r - 1) * round_s``."""
    c = config.churn
    if c.trace is not None:
        changes: dict[int, dict[int, bool]] = {}
        for line in c.trace.read_text().splitlines()[1:]:
            r, p, on = (int(v) for v in line.split(",")[:3])
            changes.setdefault(r, {})[p] = bool(on)
        online, events = [True] * peers, []
        for r in sorted(changes):
            for p, on in changes[r].items():
                online[p] = on
            events.append(((r - 1) * round_s, list(online)))
        return events
    if c.offline_fraction <= 0:
        return []
    events = []
    for r in range(1, config.budget.rounds + 1, c.period_rounds):
        off = set(rng.choice(peers, int(round(peers * c.offline_fraction)), replace=False).tolist())
        events.append(((r - 1) * round_s, [p not in off for p in range(peers)]))
    return events


def spec_for(config: ExperimentConfig, model: SwarmModel, method: str, seed: int) -> tuple[SwarmSpec, TimeModel]:
    peers = len(model.shards)
    rng = np.random.default_rng(seed)
    time = time_model(config.network, peers)
    frame = frame_bytes(model.shapes, config.swarm.codec)
    decline = frame_size([], 0, message_size=MAX_MESSAGE_SIZE)
    round_s = nominal_round_s(config, time, frame)
    graph = topology.build(config.swarm.topology, peers, config.swarm.degree, rng)
    mixing, fanout = mixing_of(config, model.manifest)  # a published swarm's gossip.mixing / fanout unless set here
    spec = SwarmSpec(
        method="gossip" if method == "gossip" else "central" if method == "central" else "local",
        peers=peers, sizes=[len(y) for _, y in model.shards], graph=graph, local_steps=config.swarm.local_steps,
        max_steps=config.budget.rounds * config.swarm.local_steps, frame_bytes=frame, decline_bytes=decline, time=time,
        robust=config.swarm.robust, clip_multiplier=config.swarm.clip_multiplier,
        exchange_timeout_s=config.swarm.exchange_timeout_s, resolve_crossing=config.swarm.resolve_crossing,
        mixing=mixing, fanout=fanout, eval_every_s=config.budget.eval_every * round_s, seed=seed,
        step_jitter=config.network.step_jitter,
        budget_bytes=config.budget.bytes, budget_seconds=config.budget.seconds,
        churn=churn_events(config, peers, round_s, rng) if method in ("gossip", "central", "local") else [],
    )  # fmt: skip
    return spec, time


def initial_models(config: ExperimentConfig, model: SwarmModel, seed: int) -> list[list[np.ndarray]]:
    """Every peer starts from the published initial weights (consensus tests: each its own perturbation)."""
    peers = len(model.shards)
    if not config.model.init_per_peer:
        return [model.initial] * peers
    rng = np.random.default_rng(seed * 100_003 + 1)
    return [[(w + rng.normal(0, 0.1, w.shape)).astype(np.float32) for w in model.initial] for _ in range(peers)]


def run(config: ExperimentConfig, method: Method, seed: int, model: SwarmModel | None = None,
        blocks_factory: Callable[[SwarmModel, int, int], Blocks] | None = None,
        progress: Callable[[int], None] | None = None) -> RunResult:  # fmt: skip
    """One method and seed; ``blocks_factory`` (model, seed, blocks) places the training (Ray: on actors)."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()  # as on the Ray actors: one result per config and seed
    model = model or swarm_model(config, seed, peers=1 if method == "pooled" else None)
    spec, time = spec_for(config, model, method, seed)
    swarm = SimSwarm(spec)
    schedule = clock.run(swarm.run())
    peers = len(model.shards)
    blocks = (blocks_factory or local_blocks)(model, seed, config.sim.blocks)
    attackers = set(range(min(config.attack.peers, peers))) if config.attack.kind != "none" else set()
    initial = initial_models(config, model, seed)
    plane = DataPlane(initial=initial, blocks=blocks, rules=[make_rule(config.swarm.robust, config.swarm.clip_multiplier)
                                                             for _ in range(peers)],
                      codec=CodecId[config.swarm.codec.upper()], evaluate=Evaluator(model), attackers=attackers,
                      poison=_poisoner(config.attack, seed) if attackers else None)  # fmt: skip
    replay = Replay(schedule, plane)
    evaluations = replay.run()
    result = RunResult(method, seed, sample_counts=np.array(spec.sizes, np.float64),
                       initial_weights=[np.stack([w[i] for w in initial]) for i in range(len(model.initial))])  # fmt: skip
    honest = np.array([p not in attackers for p in range(peers)])
    for e in evaluations:
        acc = e.accuracy
        result.rows.append({"method": method, "seed": seed, **{k: e.row[k] for k in ("round", "time_s", "bytes_sent", "snapshot")},
                            "mean_acc": float(acc.mean()), "min_acc": float(acc.min()), "max_acc": float(acc.max()),
                            "consensus_distance": e.consensus_distance, "online": e.row["online"],
                            "honest_mean_acc": float(acc[honest].mean())})  # fmt: skip
        result.peer_rows += [{"method": method, "seed": seed, "round": e.row["round"], "peer": p, "acc": float(a)}
                             for p, a in enumerate(acc)]  # fmt: skip
    final = evaluations[-1].weights
    assert final is not None
    result.final_weights = [np.stack([w[i] for w in final]) for i in range(len(final[0]))]
    result.stats = {"operations": len(schedule.ops), "train_batches": replay.train_batches, "block_calls": blocks.calls,
                    "exchanges": swarm.outcomes(), "time_model": time.describe(), "frame_bytes": spec.frame_bytes}  # fmt: skip
    if progress:
        progress(config.budget.rounds)
    return result


def local_blocks(model: SwarmModel, seed: int, blocks: int) -> Blocks:
    kind = make_block(model, seed)
    return Blocks(len(model.shards), blocks, lambda ids: kind(model, ids, seed))
