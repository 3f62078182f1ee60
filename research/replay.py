"""The simulated swarm's data plane: the recorded schedule computed with the live arithmetic.

``research.engine`` records what happened (train, send, merge, aggregate, evaluate, in order);
this module computes every token's tensors. An operation runs once its inputs exist and the
previous operation of the same state has run (a peer's optimizer and batch stream for train, its
averaging rule's history for merge, the sender's error-feedback residual for that receiver for
send), so the result is the schedule's, whatever the batching. Cheap operations run at once, in
record order; then every train operation that is ready runs in one batched call per block of
peers (``Blocks``: in this process, or on Ray actors, ``research.ray_backend``). Arithmetic:

* send: ``peer.error_feedback.ErrorFeedback`` and the wire codec (``protocols.codecs``); a
  Byzantine sender puts its poison on the wire instead;
* merge: the live rule of the peer (``bounded_pair_average`` or ``ClippedPairAverage``), whose
  returned gossip weight must equal the one the control plane recorded;
* aggregate: ``peer.averaging.weighted_average`` (FedAvg).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from peer.averaging import weighted_average
from peer.gossip import interleaved_merge
from peer.error_feedback import ErrorFeedback
from protocols.codecs import CodecId, codec_for

from .engine import Op, Schedule

Weights = list[np.ndarray]


class BlockTrainer(Protocol):
    def train(self, peers: Sequence[int], weights: Sequence[Weights], steps: Sequence[int]) -> list[Weights]: ...


class Blocks:
    """Peers cut into contiguous blocks; each block trains its ready peers in one call.

    Results depend on the blocks (the batched computation of a block is what it is), never on
    where a block runs; ``train_async`` lets the Ray backend run blocks in parallel.
    """

    def __init__(self, peers: int, blocks: int, make: Callable[[list[int]], Any]) -> None:
        bounds = np.linspace(0, peers, min(blocks, peers) + 1).round().astype(int)
        self.members = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        self.block_of = np.zeros(peers, np.int64)
        for b, ids in enumerate(self.members):
            self.block_of[ids] = b
        self.trainers = [make(ids) for ids in self.members]
        self.calls = 0

    def train(self, peers: Sequence[int], weights: Sequence[Weights], steps: Sequence[int]) -> list[Weights]:
        groups: dict[int, list[int]] = {}
        for k, p in enumerate(peers):
            groups.setdefault(int(self.block_of[p]), []).append(k)
        out: list[Weights | None] = [None] * len(peers)
        pending = [(b, ks, self._start(b, [peers[k] for k in ks], [weights[k] for k in ks], [steps[k] for k in ks]))
                   for b, ks in sorted(groups.items())]  # fmt: skip
        for b, ks, handle in pending:
            for k, w in zip(ks, self._finish(b, handle), strict=True):
                out[k] = w
        self.calls += len(pending)
        return out  # type: ignore[return-value]

    def _start(self, block: int, peers: list[int], weights: list[Weights], steps: list[int]) -> Any:
        return self.trainers[block].train(peers, weights, steps)

    def _finish(self, block: int, handle: Any) -> list[Weights]:
        return handle  # type: ignore[no-any-return]


@dataclass
class DataPlane:
    """Everything the arithmetic needs besides the schedule."""

    initial: list[Weights]  # per peer
    blocks: Blocks
    rules: list[Callable[..., tuple[Weights, float]]]  # per peer, the live averaging rule
    codec: CodecId
    evaluate: Callable[[list[Weights]], np.ndarray]  # models -> test accuracy per model
    attackers: set[int] = field(default_factory=set)
    poison: Callable[[Weights, int], Weights] | None = None  # (model, sender) -> what a Byzantine peer sends


@dataclass
class Evaluation:
    row: dict[str, Any]
    accuracy: np.ndarray
    consensus_distance: float
    weights: list[Weights] | None = None  # the last evaluation's models, kept for tests


def consensus_distance(models: Sequence[Weights]) -> float:
    """``peer.averaging.consensus_distance`` one model at a time (float64), so 1,024 peers fit in memory."""
    if len(models) < 2:
        return 0.0
    mean = [np.zeros(t.shape, np.float64) for t in models[0]]
    for m in models:
        for acc, t in zip(mean, m, strict=True):
            acc += t
    for acc in mean:
        acc /= len(models)
    dists = [np.sqrt(sum(float(np.sum(np.square(t - a))) for t, a in zip(m, mean, strict=True))) for m in models]
    return float(np.mean(dists))


class Replay:
    def __init__(self, schedule: Schedule, plane: DataPlane) -> None:
        self.schedule, self.plane = schedule, plane
        self.values: dict[int, Weights] = dict(enumerate(plane.initial))
        self.feedback = [ErrorFeedback() for _ in range(schedule.peers + 1)]
        self.train_batches = 0
        self.evaluations: list[Evaluation] = []
        self._evaluated: list[tuple[int, Evaluation]] = []

    def _dependencies(self) -> tuple[list[int], list[list[int]], dict[int, int]]:
        ops = self.schedule.ops
        producer: dict[int, int] = {}
        last_of: dict[tuple[Any, ...], int] = {}
        waiting = [0] * len(ops)
        dependents: list[list[int]] = [[] for _ in ops]
        uses: dict[int, int] = {}
        for i, op in enumerate(ops):
            deps = {producer[t] for t in op.inputs if t in producer}
            stream = {"train": ("train", op.peer), "merge": ("merge", op.peer), "interleave": ("merge", op.peer), "send": ("send", op.peer, op.dst)}.get(op.kind)
            if stream is not None:
                if stream in last_of:
                    deps.add(last_of[stream])
                last_of[stream] = i
            for d in deps:
                dependents[d].append(i)
            waiting[i] = len(deps)
            for t in op.inputs:
                uses[t] = uses.get(t, 0) + 1
            if op.out >= 0:
                producer[op.out] = i
        return waiting, dependents, uses

    def run(self) -> list[Evaluation]:
        ops = self.schedule.ops
        waiting, dependents, self._uses = self._dependencies()
        cheap = [i for i, op in enumerate(ops) if waiting[i] == 0 and op.kind != "train"]
        heapq.heapify(cheap)
        trains = {i for i, op in enumerate(ops) if waiting[i] == 0 and op.kind == "train"}
        done = 0

        def finished(i: int) -> None:
            for j in dependents[i]:
                waiting[j] -= 1
                if waiting[j] == 0:
                    (trains.add(j) if ops[j].kind == "train" else heapq.heappush(cheap, j))

        while cheap or trains:
            while cheap:
                i = heapq.heappop(cheap)
                self._cheap(ops[i], index=i, last=i == len(ops) - 1)
                done += 1
                finished(i)
            if trains:
                batch = sorted(trains)
                trains.clear()
                self._train([ops[i] for i in batch])
                self.train_batches += 1
                done += len(batch)
                for i in batch:
                    finished(i)
        if done != len(ops):
            raise RuntimeError(f"replay ran {done} of {len(ops)} operations: the schedule has a cycle")
        self.evaluations = [e for _, e in sorted(self._evaluated, key=lambda item: item[0])]  # in record order
        return self.evaluations

    # ---- values -----------------------------------------------------------------------------
    def _take(self, token: int) -> Weights:
        value = self.values[token]
        self._uses[token] -= 1
        if self._uses[token] == 0:
            del self.values[token]
        return value

    def _put(self, token: int, value: Weights) -> None:
        if self._uses.get(token, 0) > 0:  # a frame nobody reads (its exchange timed out) is not kept
            self.values[token] = value

    def _train(self, ops: list[Op]) -> None:
        inputs = [self._take(op.inputs[0]) for op in ops]
        outputs = self.plane.blocks.train([op.peer for op in ops], inputs, [op.steps for op in ops])
        for op, w in zip(ops, outputs, strict=True):
            self._put(op.out, w)

    def _cheap(self, op: Op, index: int, last: bool) -> None:
        if op.kind == "send":
            self._put(op.out, self._send(op.peer, op.dst, self._take(op.inputs[0])))
        elif op.kind == "merge":
            mine, theirs = self._take(op.inputs[0]), self._take(op.inputs[1])
            if op.peer in self.plane.attackers:  # a Byzantine peer keeps its own model
                self._put(op.out, mine)
                return
            merged, weight = self.plane.rules[op.peer](mine, op.scalars[0], theirs, op.scalars[1])
            if not np.isclose(weight, op.scalars[2], rtol=1e-12, atol=1e-12):
                raise AssertionError(f"peer {op.peer}: the rule gave weight {weight} on tensors, {op.scalars[2]} on placeholders")
            self._put(op.out, merged)
        elif op.kind == "interleave":  # a merge that landed after the peer served another exchange
            now, merged, sent = (self._take(t) for t in op.inputs)
            if op.peer in self.plane.attackers:
                self._put(op.out, now)
                return
            self._put(op.out, interleaved_merge(now, op.scalars[0], merged, op.scalars[1], sent, op.scalars[2])[0])
        elif op.kind == "aggregate":
            models = [self._take(t) for t in op.inputs]
            self._put(op.out, weighted_average(list(zip(models, op.scalars, strict=True))))
        elif op.kind == "evaluate":
            models = [self._take(t) for t in op.inputs]
            acc = self.plane.evaluate(models)
            self._evaluated.append((index, Evaluation(dict(op.row or {}), acc, consensus_distance(models), models if last else None)))
        else:
            raise ValueError(f"unknown operation {op.kind!r}")

    def _send(self, src: int, dst: int, weights: Weights) -> Weights:
        """What ``dst`` decodes from ``src``'s frame: error feedback, then the codec (or the poison)."""
        if src in self.plane.attackers and self.plane.poison is not None:
            return self.plane.poison(weights, src)
        if self.plane.codec == CodecId.FLOAT32:
            return weights  # float32 frames carry the tensors bit for bit
        target = self.feedback[src].apply(dst, weights, self.plane.codec)
        codec = codec_for(self.plane.codec)
        return codec.decode(codec.encode(target), [t.shape for t in target])
