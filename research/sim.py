"""The ``sim`` backend: every peer in one process, a simulated clock and a modelled network.

Training is vectorized across peers (``stacked.StackedMLP``); exchanges call the same pure
averaging functions as the live peers (``peer.averaging.pair_average`` for gossip,
``weighted_average`` for FedAvg) and pass weights through the same wire codecs
(``protocols.codecs``), so quantization error is real. A round is: every online peer takes
``local_steps`` steps, then gossip pairs peers by a random matching on the topology (each
peer picks a free neighbor, as live peers do) or FedAvg averages every online model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from peer.averaging import ClippedPairAverage, consensus_distance, pair_average, weighted_average
from protocols.codecs import CodecId, codec_for
from protocols.frame import FIXED_HEADER_SIZE

from . import topology
from .config import AttackConfig, ExperimentConfig, Method
from .data import ExperimentData
from .stacked import DenseLayer, StackedMLP


@dataclass
class RunResult:
    method: str
    seed: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per evaluation
    peer_rows: list[dict[str, Any]] = field(default_factory=list)  # method, seed, round, peer, acc
    initial_weights: list[np.ndarray] | None = None  # stacked [peers, ...], for tests
    final_weights: list[np.ndarray] | None = None
    sample_counts: np.ndarray | None = None


def frame_bytes(shapes: list[tuple[int, ...]], codec: str) -> int:
    """Bytes on the wire for one update frame (header, layout, digest, signature, payload, chunk headers)."""
    payload = codec_for(CodecId[codec.upper()]).encoded_size(shapes)
    header = FIXED_HEADER_SIZE + sum(1 + 4 * len(s) for s in shapes) + 32 + 64
    chunks = math.ceil((header + payload) / (262144 - 18))
    return header + payload + 18 * chunks


def _initial(layers: list[DenseLayer], seed: int, inputs: int = 784) -> list[np.ndarray]:
    """Glorot-uniform kernels and zero biases, as Keras initializes Dense layers."""
    rng = np.random.default_rng(seed)
    out, fan_in = [], inputs
    for layer in layers:
        limit = math.sqrt(6 / (fan_in + layer.units))
        out += [rng.uniform(-limit, limit, (fan_in, layer.units)).astype(np.float32), np.zeros(layer.units, np.float32)]
        fan_in = layer.units
    return out


def _poison(weights: list[np.ndarray], attack: AttackConfig, rng: np.random.Generator) -> list[np.ndarray]:
    if attack.kind == "gaussian":
        return [(w + rng.normal(0, attack.noise_std, w.shape)).astype(np.float32) for w in weights]
    if attack.kind == "sign_flip":
        return [-w for w in weights]
    return [(w * attack.factor).astype(np.float32) for w in weights]


class Churn:
    def __init__(self, config: ExperimentConfig, peers: int, rng: np.random.Generator) -> None:
        self.cfg, self.peers, self.rng = config.churn, peers, rng
        self.trace: dict[tuple[int, int], bool] = {}
        if self.cfg.trace is not None:
            for line in self.cfg.trace.read_text().splitlines()[1:]:
                r, p, on = (int(v) for v in line.split(",")[:3])
                self.trace[(r, p)] = bool(on)
        self.online = np.ones(peers, bool)

    def at(self, round_: int) -> np.ndarray:
        if self.trace:
            self.online = np.array([self.trace.get((round_, p), self.online[p]) for p in range(self.peers)])
        elif self.cfg.offline_fraction > 0 and (round_ - 1) % self.cfg.period_rounds == 0:
            off = self.rng.choice(self.peers, int(round(self.peers * self.cfg.offline_fraction)), replace=False)
            self.online = np.ones(self.peers, bool)
            self.online[off] = False
        return self.online


def run(config: ExperimentConfig, data: ExperimentData, method: Method, seed: int,
        progress: Callable[[int], None] | None = None) -> RunResult:  # fmt: skip
    tf.random.set_seed(seed)
    rng = np.random.default_rng(seed)
    layers = [DenseLayer(h, "relu") for h in config.model.hidden] + [DenseLayer(10, "softmax")]
    shards = [np.arange(len(data.y_train))] if method == "pooled" else data.shards
    peers = len(shards)
    model = StackedMLP(layers, _initial(layers, seed), peers, config.model.optimizer, config.model.learning_rate)
    if config.model.init_per_peer:
        per_peer = [_initial(layers, seed * 100_003 + p + 1) for p in range(peers)]
        model.set([np.stack([w[i] for w in per_peer]) for i in range(len(per_peer[0]))])
    graph = topology.build(config.swarm.topology, peers, config.swarm.degree, rng)
    churn = Churn(config, peers, rng)
    sizes = np.array([len(s) for s in shards], dtype=np.float64)
    gossip_weight = sizes.copy()
    shapes = [tuple(v.shape[1:]) for v in model.vars]
    frame = frame_bytes(shapes, config.swarm.codec)
    codec = codec_for(CodecId[config.swarm.codec.upper()])
    net = config.network
    attackers = set(range(min(config.attack.peers, peers))) if config.attack.kind != "none" else set()
    honest = np.array([p not in attackers for p in range(peers)])
    averagers: list[Callable[..., tuple[list[np.ndarray], float]]] = [
        ClippedPairAverage(config.swarm.clip_multiplier) if config.swarm.robust == "clip" else pair_average
        for _ in range(peers)
    ]
    result = RunResult(method, seed, initial_weights=model.get(), sample_counts=sizes.copy())
    clock, sent = 0.0, 0

    def evaluate(round_: int) -> None:
        acc = model.accuracy(data.x_test, data.y_test)
        weights = model.get()
        per_peer = [[w[p] for w in weights] for p in range(peers)]
        result.rows.append({
            "method": method, "seed": seed, "round": round_, "time_s": round(clock, 6), "bytes_sent": sent,
            "mean_acc": float(acc.mean()), "min_acc": float(acc.min()), "max_acc": float(acc.max()),
            "consensus_distance": consensus_distance(per_peer) if peers > 1 else 0.0,
            "online": int(churn.online.sum()), "honest_mean_acc": float(acc[honest].mean()),
        })  # fmt: skip
        result.peer_rows += [{"method": method, "seed": seed, "round": round_, "peer": p, "acc": float(a)}
                             for p, a in enumerate(acc)]  # fmt: skip

    evaluate(0)
    for round_ in range(1, config.budget.rounds + 1):
        online = churn.at(round_) & (sizes > 0)
        mask = online.astype(np.float32)
        for _ in range(config.swarm.local_steps):
            idx = np.stack([s[rng.integers(len(s), size=config.model.batch_size)] if len(s) else
                            np.zeros(config.model.batch_size, np.int64) for s in shards])  # fmt: skip
            model.train_step(data.x_train[idx], data.y_train[idx], mask)
        clock += config.swarm.local_steps * net.step_time_ms / 1000
        transfer = frame / (net.bandwidth_mb_s * 1e6)
        if method == "gossip" and peers > 1:
            weights = model.get()
            pairs = topology.random_matching(graph, online, rng)

            def on_wire(p: int) -> list[np.ndarray]:
                """What peer p puts on the wire: its model through the codec, or poison."""
                own = [w[p] for w in weights]
                if p in attackers:
                    return _poison(own, config.attack, rng)
                return codec.decode(codec.encode(own), shapes)

            for i, j in pairs:
                from_i, from_j = on_wire(i), on_wire(j)
                updates = {}
                for me, other, received in ((i, j, from_j), (j, i, from_i)):
                    if me not in attackers:
                        updates[me] = averagers[me]([w[me] for w in weights], gossip_weight[me], received, gossip_weight[other])
                for me, (merged, n) in updates.items():
                    for w, m in zip(weights, merged, strict=True):
                        w[me] = m
                    gossip_weight[me] = n
            model.set(weights)
            sent += 2 * frame * len(pairs)
            clock += 2 * net.latency_ms / 1000 + transfer if pairs else 0.0
        elif method == "central" and online.any():
            weights = model.get()
            members = np.flatnonzero(online)
            received = [(codec.decode(codec.encode([w[p] for w in weights]), shapes), sizes[p]) for p in members]
            average = codec.decode(codec.encode(weighted_average(received)), shapes)
            for w, a in zip(weights, average, strict=True):
                w[members] = a
            model.set(weights)
            sent += 2 * frame * len(members)
            # the aggregator's link carries every upload and every download
            clock += 2 * net.latency_ms / 1000 + 2 * transfer * len(members)
        if round_ % config.budget.eval_every == 0 or round_ == config.budget.rounds:
            evaluate(round_)
        if progress:
            progress(1)
        if (config.budget.seconds and clock >= config.budget.seconds) or (config.budget.bytes and sent >= config.budget.bytes):
            if result.rows[-1]["round"] != round_:
                evaluate(round_)
            break
    result.final_weights = model.get()
    return result
