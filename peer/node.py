"""A headless peer, composed: fetch the swarm, join the mesh, train, gossip, report.

The pieces each have one job (``mesh``, ``transport``, ``gossip``, ``trainer``,
``checkpoint``, ``metrics``); this module wires them and owns the training loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from rich.console import Console

from protocols.codecs import CodecId
from protocols.crypto import peer_id_of, public_key_bytes
from protocols.dataset import decode_shard, shard_x_dtype
from protocols.frame import frame_size
from protocols.manifest import Manifest
from protocols.signaling import ErrorCode, Report, Welcome

from . import checkpoint
from .config import PeerConfig, ws_url
from .fetch import fetch_blob, fetch_manifest
from .averaging import ClippedPairAverage, bounded_pair_average
from .fedavg import FedAvgAggregator, adopt
from .gossip import GossipEngine, Outcome
from .ice import use_candidate_addresses
from .identity import default_identity_path, load_or_create
from .receipts import ReceiptBook
from .link import quiet_closed_transport_errors
from .localdata import load_local_data, load_local_split
from .mesh import Mesh, MeshConfig
from .metrics import JsonLines, PeerMetrics
from .transport import FrameSink, MeshTransport
from .verifier import FrameVerifier

log = logging.getLogger("peer.node")
_console = Console(stderr=True)

TRAIN_CHUNK = 10  # steps per lock hold: a responder waits at most this long to merge
PULL_LINK_WAIT_S = 10.0  # a joining peer waits this long for a first neighbor to pull from
JOIN_TIMEOUT_S = 30.0
STALE_CHECKPOINT_S = 120.0
SILENT_AFTER_TIMEOUTS = 2  # exchange timeouts in a row before a neighbor is dropped  # a returning peer whose checkpoint is older pulls the swarm's model


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


def default_checkpoint_dir(swarm_id: str, peer_id: str) -> Path:
    return Path.home() / ".local" / "share" / "gossip-swarm" / swarm_id / peer_id


def _log_failure(task: asyncio.Task[None]) -> None:
    """A background exchange that raised: say so (the next one starts anyway)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("exchange failed: %r", task.exception())


def max_frame_size(manifest: Manifest) -> int:
    """Bytes of the largest frame this model's exchanges carry: a float32 frame (``protocols.frame.frame_size``)."""
    return frame_size([tuple(w.shape) for w in manifest.model.weights], int(CodecId.FLOAT32))


class PeerNode:
    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.key = load_or_create(config.identity)
        self.stop = asyncio.Event()
        self.metrics: PeerMetrics | None = None
        self._timeouts: dict[str, int] = {}  # neighbor -> exchange timeouts in a row
        self.summary: dict[str, Any] = {}
        self.last_good: LastGood | None = None  # the model's last finite copy, once training runs

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        use_candidate_addresses(cfg.ice_addresses)
        quiet_closed_transport_errors(asyncio.get_running_loop())
        async with aiohttp.ClientSession() as http:
            signed, manifest = await fetch_manifest(http, cfg.server, cfg.swarm_id)
            initial = await fetch_blob(http, cfg.server, manifest.model.initial_weights)
            mesh_cfg = self._mesh_config(manifest)
            self.metrics = PeerMetrics(peer_id_of(public_key_bytes(self.key)))
            sink = FrameSink(self.metrics)  # frames, and strikes for junk chunks, go to the transport once it exists
            mesh = Mesh(self.key, ws_url(cfg.server), cfg.swarm_id, mesh_cfg,
                        max_frame_size=max_frame_size(manifest), on_frame=sink)  # fmt: skip
            mesh.on_chunk_error = sink.chunk_error
            ckpt_dir = cfg.checkpoint_dir or default_checkpoint_dir(cfg.swarm_id, mesh.peer_id)
            ckpt_lock = checkpoint.CheckpointLock(ckpt_dir)  # before joining: a second process stops here
            try:
                welcome = await self._join(mesh)
                train, test = await self._data(http, manifest, welcome.shard)
                trainer = await asyncio.to_thread(self._make_trainer, manifest, initial, train, test)
                engine = self._engine(manifest, trainer, mesh)
                verifier = FrameVerifier(
                    swarm_id=bytes.fromhex(cfg.swarm_id), model_id=bytes.fromhex(signed.model_id),
                    own_key=public_key_bytes(self.key), shapes=trainer.shapes, max_frame_size=max_frame_size(manifest),
                    is_known=lambda key: any(l.remote_key == key for l in mesh.links.values()),
                )  # fmt: skip
                sink.transport = transport = MeshTransport(
                    self.key, swarm_id=bytes.fromhex(cfg.swarm_id), model_id=bytes.fromhex(signed.model_id),
                    verifier=verifier, engine=engine, metrics=self.metrics, links=lambda: mesh.links,
                    codec=CodecId[manifest.gossip.codec.upper()], frame_bytes=max_frame_size(manifest),
                    exchange_timeout_s=manifest.gossip.exchange_timeout_s,
                )  # fmt: skip
                if isinstance(engine, GossipEngine):
                    engine.hold_s = transport.deadline  # how long an accepted proposal waits for its request
                transport.on_misbehaving = lambda peer, why: mesh.ban(peer)
                fresh = await self._resume(trainer, ckpt_dir, signed.model_id)
                mesh.accept_links()
                if fresh and self._role(manifest) == "gossip" and welcome.peers:
                    await self._pull_first(mesh, trainer, transport, manifest.gossip.exchange_timeout_s)
                await self._train_loop(manifest, trainer, engine, transport, mesh, ckpt_dir, signed.model_id, welcome.shard)
            finally:
                await mesh.close()
                ckpt_lock.release()
        return self.summary

    async def _join(self, mesh: Mesh) -> Welcome:
        """The server's welcome; RuntimeError saying what to do if another process holds this identity.

        The server refuses a second live connection with one key (``already_joined``); the mesh
        would retry it forever, so the refusal ends this peer here.
        """
        welcome = asyncio.ensure_future(mesh.start())
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_S):
                while not welcome.done():
                    if ErrorCode.ALREADY_JOINED in mesh.stats.signaling_errors:
                        path = self.config.identity or default_identity_path()
                        raise RuntimeError(
                            f"another process is already in swarm {self.config.swarm_id[:8]} with the identity {path} "
                            f"(peer id {mesh.peer_id[:8]}), and the server refuses a second one. To run a second peer on "
                            "this machine give it its own key: swarm join URL --identity ~/.config/gossip-swarm/second.key "
                            "(created if missing)"
                        )  # fmt: skip
                    await asyncio.wait({welcome}, timeout=0.1)
            return welcome.result()
        finally:
            welcome.cancel()

    @property
    def own_key(self) -> str:
        return public_key_bytes(self.key).hex()

    def _role(self, manifest: Manifest) -> str:
        """``gossip``, or for FedAvg swarms ``aggregator`` / ``client``."""
        if manifest.gossip.method == "gossip":
            return "gossip"
        return "aggregator" if manifest.gossip.aggregator == self.own_key else "client"

    def _mesh_config(self, manifest: Manifest) -> MeshConfig:
        g, role = manifest.gossip, self._role(manifest)
        if role == "aggregator":  # clients connect to it; it makes no connections itself
            return MeshConfig(degree=0, max_degree=1024, ice_servers=self.config.ice_servers)
        if role == "client":
            assert g.aggregator is not None
            only = {peer_id_of(bytes.fromhex(g.aggregator))}
            return MeshConfig(degree=1, max_degree=1, ice_servers=self.config.ice_servers, only_peers=only)
        return MeshConfig(degree=self.config.degree or g.degree, max_degree=g.max_degree, ice_servers=self.config.ice_servers,
                          relay_only=self.config.ice_relay_only)  # fmt: skip

    def _engine(self, manifest: Manifest, trainer: Any, mesh: Mesh) -> Any:
        role = self._role(manifest)
        if role == "aggregator":
            return FedAvgAggregator(trainer, expected=lambda: len(mesh.open_links()),
                                    round_timeout=manifest.gossip.exchange_timeout_s / 2)  # fmt: skip
        if role == "client":
            return GossipEngine(trainer, average=adopt)
        if manifest.gossip.robust == "clip":
            return GossipEngine(trainer, average=ClippedPairAverage(manifest.gossip.clip_multiplier), peer_id=mesh.peer_id)
        return GossipEngine(trainer, average=bounded_pair_average, peer_id=mesh.peer_id)

    def _make_trainer(self, manifest: Manifest, initial: bytes, train: Any, test: Any) -> Any:
        from .trainer import Trainer  # TensorFlow is imported only once the swarm is known

        return Trainer(manifest, initial, train, test, seed=self.config.seed)

    async def _data(self, http: aiohttp.ClientSession, manifest: Manifest, shard: int) -> tuple[Any, Any]:
        ds = manifest.dataset
        if ds is None and self.config.data is None:
            raise ValueError("this swarm publishes no dataset: pass --data FILE (.npz with x and y, or .csv with a label column)")
        if ds is None:
            assert self.config.data is not None
            train, own_test = load_local_split(self.config.data, manifest)
            if own_test is not None:  # a Keras-style file's x_test/y_test
                return train, own_test
            cut = max(1, len(train[0]) // 5)
            return (train[0][cut:], train[1][cut:]), (train[0][:cut], train[1][:cut])
        test_blob = await fetch_blob(http, self.config.server, ds.test)
        test = decode_shard(test_blob)
        # a contributor's 0..255 values are scaled as the swarm's shards are (uint8 shards: by 1/255)
        train = load_local_data(self.config.data, manifest, pixels=shard_x_dtype(test_blob) == np.uint8) if self.config.data else None
        if train is None:
            train = decode_shard(await fetch_blob(http, self.config.server, ds.train_shards[shard % len(ds.train_shards)]))
        return train, test

    async def _resume(self, trainer: Any, directory: Path, model_id: str) -> bool:
        """Load the checkpoint if there is one; return True if the peer should pull the swarm's model.

        A recent checkpoint is this peer's own progress and is kept (crash recovery); none, or
        one older than ``STALE_CHECKPOINT_S``, means the swarm has moved on without us.
        """
        state = checkpoint.load_state(directory, model_id)
        if state is None:
            return True
        weights = await asyncio.to_thread(checkpoint.load_weights, directory)
        trainer.assign(weights, state.gossip_weight)
        trainer.step = state.step
        log.info("resumed from checkpoint at step %d", state.step)
        return checkpoint.age_s(directory) > STALE_CHECKPOINT_S

    async def _pull_first(self, mesh: Mesh, trainer: Any, transport: MeshTransport, timeout: float) -> None:
        """Start from the most trained neighbor's current model instead of the initial weights.

        Pulls from up to three neighbors at once and keeps the one with the highest step (the
        frame header carries it), so a newcomer does not adopt another newcomer's fresh model.
        """
        deadline = time.monotonic() + PULL_LINK_WAIT_S
        while not mesh.open_links() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if mesh.open_links():
            await asyncio.sleep(1.0)  # links to the other neighbors usually open within a second

        async def pull(peer: str) -> tuple[str, Any]:
            try:
                return peer, await asyncio.wait_for(transport.pull(peer), timeout)
            except (TimeoutError, ConnectionError) as exc:
                log.info("could not pull from %s: %s", peer[:8], exc)
                return peer, None

        replies = await asyncio.gather(*(pull(link.peer_id) for link in mesh.open_links()[:3]))
        got = [(peer, update) for peer, update in replies if update is not None]
        if not got:
            log.info("no neighbor to pull from: training from the published initial weights")
            return
        peer, update = max(got, key=lambda item: item[1].step)
        async with trainer.lock:
            trainer.assign(update.weights, trainer.gossip_weight)  # our sample count stays ours
        self.summary["pulled_from"] = peer
        log.info("pulled the current model of %s (step %d) before training", peer[:8], update.step)

    async def _checkpoint(self, trainer: Any, directory: Path, model_id: str) -> None:
        async with trainer.lock:
            state = checkpoint.CheckpointState(model_id, trainer.step, trainer.gossip_weight)
            await asyncio.to_thread(checkpoint.save, directory, trainer.model, state)

    async def _train_loop(self, manifest: Manifest, trainer: Any, engine: GossipEngine | FedAvgAggregator, transport: MeshTransport,
                          mesh: Mesh, ckpt_dir: Path, model_id: str, shard: int) -> None:  # fmt: skip
        cfg, tcfg, metrics = self.config, manifest.training, self.metrics
        role = self._role(manifest)
        assert metrics is not None
        out = JsonLines(cfg.metrics_out)
        rng = random.Random(cfg.seed)
        started = time.monotonic()
        last_ckpt = last_report = started
        since_exchange = 0
        loss = float("nan")

        last_acc: list[float] = []

        receipts = ReceiptBook(self.key, cfg.swarm_id, metrics.accepted_from)
        sessions = [mesh.stats.sessions]

        def board_report() -> Report:
            if mesh.stats.sessions != sessions[0]:  # a new signaling session: the server may have forgotten them
                sessions[0] = mesh.stats.sessions
                receipts.resend_all()
            return Report(step=trainer.step, test_acc=last_acc[-1] if last_acc else None, receipts=receipts.due())

        mesh.report_source = board_report

        target = tcfg.target_accuracy  # the publisher's, signed into the manifest
        reached: list[int] = []  # the step at which this peer first evaluated at the target

        def report(final: bool = False) -> dict[str, Any]:
            test_loss, acc = trainer.evaluate(cfg.eval_limit)
            last_acc[:] = [acc]
            if not reached and isinstance(acc, float) and acc >= target:
                reached.append(trainer.step)
                log.info("reached the publisher's target accuracy %.2f at step %d (test accuracy %.3f)", target, trainer.step, acc)
            links = mesh.links.values()
            row = metrics.record(
                step=trainer.step, shard=shard, train_loss=loss, test_loss=test_loss, test_acc=acc,
                neighbors=len(mesh.open_links()), neighbor_ids=[l.peer_id for l in mesh.open_links()], exchanges={o.value: n for o, n in engine.outcomes.items()},
                served=engine.served, declined=engine.declined_requests, neighbor_distance=transport.last_distance,
                bytes_sent=sum(l.bytes_sent for l in links), bytes_received=sum(l.bytes_received for l in links),
                signaling=mesh.connected.is_set(), final=final, pulled_from=self.summary.get("pulled_from"),
                gossip_weight=trainer.gossip_weight, links=mesh.link_report(),
                target_accuracy=target, target_reached_step=reached[0] if reached else None,
                metrics={k: float(v) for k, v in trainer.last_metrics.items()},  # the task's: accuracy, or mae/mse/r2
            )  # fmt: skip
            out.write(row)
            if cfg.progress:
                _console.log(f"step {row['step']:>6}  test acc {acc:.3f}  loss {loss:.3f}  neighbors {row['neighbors']}  "
                             f"exchanges {engine.outcomes[Outcome.MERGED] + engine.served}  "
                             f"rejected {sum(metrics.rejected.values())}")  # fmt: skip
            return row

        background: list[asyncio.Task[None]] = []  # the exchange in flight beside training, if any

        def in_flight() -> bool:
            return bool(background) and not background[0].done()

        async def work() -> None:
            nonlocal loss, since_exchange, last_report, last_ckpt
            async with trainer.lock:
                row = await asyncio.to_thread(report)
                good = self.last_good = LastGood(trainer)
            log.info("%s start: step %d, test accuracy %.3f", role, trainer.step, row["test_acc"])
            while cfg.duration_s is None or time.monotonic() - started < cfg.duration_s:
                training = role != "aggregator" and (cfg.max_steps is None or trainer.step < cfg.max_steps)
                if training:
                    left = tcfg.local_steps - since_exchange  # below 0 while an exchange is still in flight
                    n = min(TRAIN_CHUNK, left) if left > 0 else TRAIN_CHUNK
                    async with trainer.lock:
                        loss = await asyncio.to_thread(trainer.train_steps, n)
                        good.check()  # non-finite: rolled back before the lock lets a neighbor read it
                    since_exchange += n
                    if trainer.step % tcfg.eval_every < n:
                        async with trainer.lock:
                            await asyncio.to_thread(report)
                            good.save()
                else:
                    await asyncio.sleep(0.2)  # done training: keep gossiping towards consensus
                    since_exchange = tcfg.local_steps
                    if time.monotonic() - last_report > 2.0:
                        async with trainer.lock:
                            await asyncio.to_thread(report)
                        last_report = time.monotonic()
                if since_exchange >= tcfg.local_steps and role != "aggregator" and not in_flight():
                    async with trainer.lock:
                        good.save()  # the weights this exchange sends
                    exchange = self._exchange(mesh, engine, transport, rng)
                    if training and role == "gossip":  # beside training: the merge lands when the reply does
                        background[:] = [asyncio.create_task(exchange)]
                        background[0].add_done_callback(_log_failure)
                    else:  # a FedAvg client waits for its round's average (synchronous FedAvg); an idle peer just gossips
                        await exchange
                    since_exchange = 0
                if time.monotonic() - last_ckpt > cfg.checkpoint_interval_s:
                    await self._checkpoint(trainer, ckpt_dir, model_id)
                    last_ckpt = time.monotonic()
                await asyncio.sleep(0)

        # a stop request (SIGTERM/SIGINT) cancels whatever the loop awaits, an exchange included
        body, stopper = asyncio.create_task(work()), asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({body, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (body, stopper, *background):
                task.cancel()
            await asyncio.gather(body, stopper, *background, return_exceptions=True)
            if body.done() and not body.cancelled() and body.exception() is not None:
                log.error("training loop failed: %r", body.exception())
            async with trainer.lock:
                self.summary = await asyncio.to_thread(report, True)
            await self._checkpoint(trainer, ckpt_dir, model_id)
            out.close()
        if not body.cancelled() and body.exception() is not None:
            raise body.exception()  # type: ignore[misc]

    async def _exchange(self, mesh: Mesh, engine: GossipEngine | FedAvgAggregator, transport: MeshTransport,
                        rng: random.Random) -> None:  # fmt: skip
        """One exchange with a random open link; its deadline comes from the frame size and that link."""
        open_links = mesh.open_links()
        if not open_links or not isinstance(engine, GossipEngine):
            return
        peer = rng.choice(open_links).peer_id
        outcome = await engine.initiate(peer, transport, transport.deadline(peer))
        if outcome == Outcome.TIMEOUT:
            # a neighbor that stops answering is dropped, not waited for; one miss can be a busy
            # machine (6 TensorFlow peers starting on 2 cores), two in a row is a silent peer
            self._timeouts[peer] = self._timeouts.get(peer, 0) + 1
            while len(self._timeouts) > 1024:  # neighbors long gone
                self._timeouts.pop(next(iter(self._timeouts)))
            link = mesh.links.get(peer)
            if link is not None and self._timeouts[peer] >= SILENT_AFTER_TIMEOUTS:
                log.info("dropping %s: no answer to %d requests in a row", peer[:8], self._timeouts[peer])
                self._timeouts.pop(peer, None)
                await link.close()
        elif outcome in (Outcome.MERGED, Outcome.DECLINED, Outcome.CROSSED):
            self._timeouts.pop(peer, None)
        if outcome != Outcome.MERGED:
            await asyncio.sleep(rng.uniform(0.0, 0.05))  # desynchronize retries after a decline
