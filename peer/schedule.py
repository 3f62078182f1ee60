"""When a peer trains, exchanges, evaluates and saves: the loop between joining and leaving.

Training runs in chunks of at most ``TRAIN_CHUNK`` steps, each under the trainer's lock in a
worker thread, so a merge never interleaves with a step and a responder waits at most one chunk.
After ``training.local_steps`` steps the peer starts a round of exchanges with the open links
``gossip.mixing`` and ``gossip.fanout`` choose (``Exchanges``; one random link by default): a
gossip peer as a background task beside training (the merges land when the replies do; a
fanout's exchanges run one after another in that task), a FedAvg client awaiting its round's
average (and training no further until a round merged: with no aggregator linked it waits), an idle peer (done training) between short sleeps. Every ``training.eval_every`` steps the model is evaluated (``reporting.Reporter``)
and ``LastGood`` copies it; a chunk that leaves it non-finite is rolled back before the lock is
released. A stop request cancels whatever the loop awaits, an exchange included, and the loop
ends with a final row and a checkpoint.

``research.engine`` mirrors this loop on a virtual clock (it keeps exchanges between chunks).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from protocols.manifest import TrainingConfig

from .config import PeerConfig
from .gossip import Engine, GossipEngine, Outcome
from .mesh import Mesh
from .reporting import Reporter
from .roles import Role
from .skew import choose_partners, exponential_partner
from .transport import MeshTransport

log = logging.getLogger("peer.node")

TRAIN_CHUNK = 10  # steps per lock hold: a responder waits at most this long to merge
SILENT_AFTER_TIMEOUTS = 2  # exchange timeouts in a row before a neighbor is dropped
IDLE_SLEEP_S = 0.2  # a peer done training sleeps this long between exchanges
IDLE_REPORT_S = 2.0  # and evaluates at most this often
BACKOFF_S = 0.05  # random back-off after anything but a merge: desynchronizes retries
MAX_TIMEOUT_COUNTS = 1024  # neighbors whose timeouts in a row are remembered


class LastGood:
    """The last finite state of the local model: weights, gossip weight, step and optimizer state.

    Copied at every evaluation and before every exchange; a training chunk that leaves the model
    non-finite (a learning rate too high, an overflow) is rolled back to it while the trainer's
    lock is still held, so no neighbor is ever sent those weights (int8 would even turn them into
    finite garbage that honest peers merge). Call every method with the trainer's lock held.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.rollbacks = 0
        self._copy: tuple[list[np.ndarray], float, int, dict[str, np.ndarray]] | None = None
        self.save()

    def save(self) -> None:
        """Copy the model if it is finite (a non-finite one keeps the previous copy)."""
        t = self.trainer
        weights = t.get_weights()
        if all(np.isfinite(w).all() for w in weights):
            optimizer = {v.name: v.numpy() for v in t.optimizer.variables()}
            self._copy = ([np.array(w) for w in weights], t.gossip_weight, t.step, optimizer)

    def check(self) -> bool:
        """True if the model is finite; otherwise roll back to the last good copy and return False."""
        t = self.trainer
        if all(np.isfinite(w).all() for w in t.get_weights()):
            return True
        if self._copy is None:
            raise RuntimeError("the model's weights are not finite and no finite copy exists: the resumed checkpoint or "
                               "the published initial weights hold NaN or infinity; remove the checkpoint directory")  # fmt: skip
        weights, gossip_weight, step, optimizer = self._copy
        t.assign([w.copy() for w in weights], gossip_weight)
        for v in t.optimizer.variables():  # Adam's moments went non-finite too; ones made since start from zero
            v.assign(optimizer[v.name] if v.name in optimizer else np.zeros(v.shape, v.dtype.as_numpy_dtype))
        lost, t.step = t.step - step, step
        self.rollbacks += 1
        log.warning("the local model went non-finite (NaN or infinity) after training; rolled back %d steps to the last "
                    "finite weights (rollback %d). If this repeats, the learning rate is too high for this data", lost, self.rollbacks)  # fmt: skip
        return False


class Exchanges:
    """The exchanges of each round, with the partners ``gossip.mixing`` and ``gossip.fanout`` choose
    (``peer.skew.choose_partners``, as the simulator); a neighbor silent ``SILENT_AFTER_TIMEOUTS``
    times in a row is dropped.

    ``random``: one random open link a round. ``exponential``: the member ``i + 2**(r mod
    ceil(log2 n))`` of the swarm as this peer knows it (``Mesh.members``, sorted by peer id) at its
    round ``r``, or a random open link when that one is not open. ``fanout`` k: k distinct open
    links, one pairwise exchange after another (each still propose/accept).
    """

    def __init__(self, mesh: Mesh, engine: Engine, transport: MeshTransport, rng: random.Random, *,
                 mixing: str = "random", fanout: int = 1) -> None:  # fmt: skip
        self.mesh, self.engine, self.transport, self.rng = mesh, engine, transport, rng
        self.mixing, self.fanout = mixing, fanout
        self.rounds = 0  # rounds started: the exponential graph's r
        self.partners: dict[str, int] = {}  # neighbor -> exchanges this peer started with it
        self.on_schedule = 0  # exponential mixing: exchanges with the round's exponential partner (else a fallback)
        self._timeouts: dict[str, int] = {}  # neighbor -> exchange timeouts in a row

    def round_partners(self) -> list[str]:
        """The partners of the next round among the open links, in exchange order (advances the round)."""
        open_ids = [link.peer_id for link in self.mesh.open_links()]
        if not open_ids:
            return []
        members = self.mesh.members()
        chosen = choose_partners(self.mesh.peer_id, open_ids, members, self.rounds, self.rng, self.mixing, self.fanout)
        if self.mixing == "exponential" and chosen[0] == exponential_partner(self.mesh.peer_id, members, self.rounds):
            self.on_schedule += 1
        self.rounds += 1
        return chosen

    async def one(self) -> int:
        """One round: an exchange with each of its partners in turn; each deadline comes from the frame size and that link.

        Returns how many of the round's exchanges merged (0 with no open link).
        """
        if not isinstance(self.engine, GossipEngine):  # only gossip engines initiate
            return 0
        merged = 0
        for peer in self.round_partners():
            if self.mesh.links.get(peer) is None:
                continue  # closed while an earlier partner of this round was exchanging
            self.partners[peer] = self.partners.get(peer, 0) + 1
            merged += await self._exchange(peer) == Outcome.MERGED
        return merged

    async def _exchange(self, peer: str) -> Outcome:
        outcome = await self.engine.initiate(peer, self.transport, self.transport.deadline(peer))
        if outcome == Outcome.TIMEOUT:
            await self._timed_out(peer)
        elif outcome in (Outcome.MERGED, Outcome.DECLINED, Outcome.CROSSED):
            self._timeouts.pop(peer, None)
        if outcome != Outcome.MERGED:
            await asyncio.sleep(self.rng.uniform(0.0, BACKOFF_S))  # desynchronize retries after a decline
        return outcome

    async def _timed_out(self, peer: str) -> None:
        """A neighbor that stops answering is dropped, not waited for; one miss can be a busy machine
        (6 TensorFlow peers starting on 2 cores), two in a row is a silent peer."""
        self._timeouts[peer] = self._timeouts.get(peer, 0) + 1
        while len(self._timeouts) > MAX_TIMEOUT_COUNTS:  # neighbors long gone
            self._timeouts.pop(next(iter(self._timeouts)))
        link = self.mesh.links.get(peer)
        if link is not None and self._timeouts[peer] >= SILENT_AFTER_TIMEOUTS:
            log.info("dropping %s: no answer to %d requests in a row", peer[:8], self._timeouts[peer])
            self._timeouts.pop(peer, None)
            await link.close()


def _log_failure(task: asyncio.Task[int]) -> None:
    """A background exchange that raised: say so (the next one starts anyway)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("exchange failed: %r", task.exception())


class Schedule:
    """The training and exchange loop of one peer, from its first evaluation to its final row."""

    def __init__(self, role: Role, config: PeerConfig, training: TrainingConfig, trainer: Any, exchanges: Exchanges,
                 reporter: Reporter, save_checkpoint: Callable[[], Awaitable[None]]) -> None:  # fmt: skip
        self.role, self.config, self.training, self.trainer = role, config, training, trainer
        self.exchanges, self.reporter, self.save_checkpoint = exchanges, reporter, save_checkpoint
        self.loss = float("nan")  # the last chunk's mean training loss
        self.last_good: LastGood | None = None  # the model's last finite copy, once training runs
        self.summary: dict[str, Any] = {}  # the final row
        self._since_exchange = 0  # local steps since the last exchange started
        self._started = self._last_ckpt = self._last_report = time.monotonic()
        self._background: asyncio.Task[int] | None = None  # the exchange in flight beside training, if any

    async def run(self, stop: asyncio.Event) -> None:
        """Train and exchange until ``config.duration_s`` passed or ``stop`` is set; then a final row and a checkpoint.

        Re-raises what ended the loop otherwise (after the final row and checkpoint).
        """
        self._started = self._last_ckpt = self._last_report = time.monotonic()
        # a stop request (SIGTERM/SIGINT) cancels whatever the loop awaits, an exchange included
        body, stopper = asyncio.create_task(self._work()), asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({body, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            background = [self._background] if self._background is not None else []
            for task in (body, stopper, *background):
                task.cancel()
            await asyncio.gather(body, stopper, *background, return_exceptions=True)
            if body.done() and not body.cancelled() and body.exception() is not None:
                log.error("training loop failed: %r", body.exception())
            async with self.trainer.lock:
                self.summary = await asyncio.to_thread(self.reporter.evaluate, self.loss, True)
            await self.save_checkpoint()
        if not body.cancelled() and body.exception() is not None:
            raise body.exception()  # type: ignore[misc]

    async def _work(self) -> None:
        trainer = self.trainer
        async with trainer.lock:
            row = await asyncio.to_thread(self.reporter.evaluate, self.loss)
            good = self.last_good = LastGood(trainer)
        log.info("%s start: step %d, test accuracy %.3f", self.role.name, trainer.step, row["test_acc"])
        while self.config.duration_s is None or time.monotonic() - self._started < self.config.duration_s:
            training = self.role.trains and (self.config.max_steps is None or trainer.step < self.config.max_steps)
            if self.role.synchronous and self._since_exchange >= self.training.local_steps:
                training = False  # the round's average first (no aggregator link yet: wait for one)
            if training:
                await self._train_chunk(good)
            else:
                await self._idle()
            if self._since_exchange >= self.training.local_steps and self.role.initiates and not self._in_flight():
                await self._exchange(good, beside_training=training and self.role.overlaps_training)
            if time.monotonic() - self._last_ckpt > self.config.checkpoint_interval_s:
                await self.save_checkpoint()
                self._last_ckpt = time.monotonic()
            await asyncio.sleep(0)

    async def _train_chunk(self, good: LastGood) -> None:
        """Up to ``TRAIN_CHUNK`` steps, no more than the exchange schedule has left; evaluate when one is due."""
        left = self.training.local_steps - self._since_exchange  # below 0 while an exchange is still in flight
        n = min(TRAIN_CHUNK, left) if left > 0 else TRAIN_CHUNK
        async with self.trainer.lock:
            self.loss = await asyncio.to_thread(self.trainer.train_steps, n)
            good.check()  # non-finite: rolled back before the lock lets a neighbor read it
        self._since_exchange += n
        if self.trainer.step % self.training.eval_every < n:
            async with self.trainer.lock:
                await asyncio.to_thread(self.reporter.evaluate, self.loss)
                good.save()

    async def _idle(self) -> None:
        """Done training (or an aggregator): keep gossiping towards consensus, evaluating now and then."""
        await asyncio.sleep(IDLE_SLEEP_S)
        self._since_exchange = self.training.local_steps
        if time.monotonic() - self._last_report > IDLE_REPORT_S:
            async with self.trainer.lock:
                await asyncio.to_thread(self.reporter.evaluate, self.loss)
            self._last_report = time.monotonic()

    def _in_flight(self) -> bool:
        return self._background is not None and not self._background.done()

    async def _exchange(self, good: LastGood, *, beside_training: bool) -> None:
        async with self.trainer.lock:
            good.save()  # the weights this exchange sends
        exchange = self.exchanges.one()
        if beside_training:  # the merge lands when the reply does
            self._background = asyncio.create_task(exchange)
            self._background.add_done_callback(_log_failure)
        elif not await exchange and self.role.synchronous:
            return  # no round's average (the aggregator is not linked, or timed out): no steps past the round
        # (a FedAvg client waited for its round's average: synchronous FedAvg; an idle peer just gossips)
        self._since_exchange = 0
