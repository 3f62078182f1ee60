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

from protocols.codecs import CodecId, codec_for
from protocols.crypto import peer_id_of, public_key_bytes
from protocols.dataset import decode_shard
from protocols.frame import FIXED_HEADER_SIZE
from protocols.manifest import Manifest
from protocols.signaling import Report

from . import checkpoint
from .config import PeerConfig, ws_url
from .fetch import fetch_blob, fetch_manifest
from .averaging import ClippedPairAverage, bounded_pair_average
from .fedavg import FedAvgAggregator, adopt
from .gossip import GossipEngine, Outcome
from .ice import use_candidate_addresses
from .identity import load_or_create
from .link import quiet_closed_transport_errors
from .mesh import Mesh, MeshConfig
from .metrics import JsonLines, PeerMetrics
from .transport import MeshTransport
from .verifier import FrameVerifier

log = logging.getLogger("peer.node")
_console = Console(stderr=True)

TRAIN_CHUNK = 10  # steps per lock hold: a responder waits at most this long to merge
PULL_LINK_WAIT_S = 10.0  # a joining peer waits this long for a first neighbor to pull from
STALE_CHECKPOINT_S = 120.0
SILENT_AFTER_TIMEOUTS = 2  # exchange timeouts in a row before a neighbor is dropped  # a returning peer whose checkpoint is older pulls the swarm's model


def default_checkpoint_dir(swarm_id: str, peer_id: str) -> Path:
    return Path.home() / ".local" / "share" / "gossip-swarm" / swarm_id / peer_id


def load_local_data(path: Path, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """A contributor's own .npz (arrays x, y), checked against the model's input and classes."""
    with np.load(path) as npz:
        if "x" not in npz or "y" not in npz:
            raise ValueError(f"{path} must hold arrays named x and y")
        x, y = npz["x"].astype(np.float32), npz["y"].astype(np.int64)
    ds = manifest.dataset
    if ds is not None and (list(x.shape[1:]) != ds.input_shape or y.min() < 0 or y.max() >= ds.num_classes):
        raise ValueError(f"{path}: examples of shape {x.shape[1:]} with labels in [{y.min()}, {y.max()}] "
                         f"do not fit input {ds.input_shape} and {ds.num_classes} classes")  # fmt: skip
    return x, y


def max_frame_size(manifest: Manifest) -> int:
    shapes = [tuple(w.shape) for w in manifest.model.weights]
    layout = sum(1 + 4 * len(s) for s in shapes)
    return FIXED_HEADER_SIZE + layout + 96 + codec_for(CodecId.FLOAT32).encoded_size(shapes)


class PeerNode:
    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.key = load_or_create(config.identity)
        self.stop = asyncio.Event()
        self.metrics: PeerMetrics | None = None
        self._timeouts: dict[str, int] = {}  # neighbor -> exchange timeouts in a row
        self.summary: dict[str, Any] = {}

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        use_candidate_addresses(cfg.ice_addresses)
        quiet_closed_transport_errors(asyncio.get_running_loop())
        async with aiohttp.ClientSession() as http:
            signed, manifest = await fetch_manifest(http, cfg.server, cfg.swarm_id)
            initial = await fetch_blob(http, cfg.server, manifest.model.initial_weights)
            mesh_cfg = self._mesh_config(manifest)
            transport_box: list[MeshTransport] = []

            async def on_frame(link: Any, data: bytes) -> None:
                if transport_box:  # links open only after accept_links(); this guards the invariant
                    await transport_box[0].on_frame(link, data)

            mesh = Mesh(self.key, ws_url(cfg.server), cfg.swarm_id, mesh_cfg,
                        max_frame_size=max_frame_size(manifest), on_frame=on_frame)  # fmt: skip
            self.metrics = PeerMetrics(mesh.peer_id)
            mesh.on_chunk_error = lambda reason: self.metrics.rejected.update([reason])  # type: ignore[union-attr]
            try:
                welcome = await asyncio.wait_for(mesh.start(), timeout=30)
                train, test = await self._data(http, manifest, welcome.shard)
                trainer = await asyncio.to_thread(self._make_trainer, manifest, initial, train, test)
                engine = self._engine(manifest, trainer, mesh)
                verifier = FrameVerifier(
                    swarm_id=bytes.fromhex(cfg.swarm_id), model_id=bytes.fromhex(signed.model_id),
                    own_key=public_key_bytes(self.key), shapes=trainer.shapes, max_frame_size=max_frame_size(manifest),
                    is_known=lambda key: any(l.remote_key == key for l in mesh.links.values()),
                )  # fmt: skip
                transport_box.append(MeshTransport(
                    self.key, swarm_id=bytes.fromhex(cfg.swarm_id), model_id=bytes.fromhex(signed.model_id),
                    verifier=verifier, engine=engine, metrics=self.metrics, links=lambda: mesh.links,
                    codec=CodecId[manifest.gossip.codec.upper()],
                ))  # fmt: skip
                transport_box[0].on_misbehaving = lambda peer, why: mesh.ban(peer)
                ckpt_dir = cfg.checkpoint_dir or default_checkpoint_dir(cfg.swarm_id, mesh.peer_id)
                fresh = await self._resume(trainer, ckpt_dir, signed.model_id)
                mesh.accept_links()
                if fresh and self._role(manifest) == "gossip" and welcome.peers:
                    await self._pull_first(mesh, trainer, transport_box[0], manifest.gossip.exchange_timeout_s)
                await self._train_loop(manifest, trainer, engine, transport_box[0], mesh, ckpt_dir, signed.model_id, welcome.shard)
            finally:
                await mesh.close()
        return self.summary

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
            return GossipEngine(trainer, average=ClippedPairAverage(manifest.gossip.clip_multiplier))
        return GossipEngine(trainer, average=bounded_pair_average)

    def _make_trainer(self, manifest: Manifest, initial: bytes, train: Any, test: Any) -> Any:
        from .trainer import Trainer  # TensorFlow is imported only once the swarm is known

        return Trainer(manifest, initial, train, test, seed=self.config.seed)

    async def _data(self, http: aiohttp.ClientSession, manifest: Manifest, shard: int) -> tuple[Any, Any]:
        ds = manifest.dataset
        if ds is None and self.config.data is None:
            raise ValueError("this swarm publishes no dataset: pass --data FILE.npz with arrays x and y")
        train = load_local_data(self.config.data, manifest) if self.config.data else None
        if ds is None:
            assert train is not None
            cut = max(1, len(train[0]) // 5)
            return (train[0][cut:], train[1][cut:]), (train[0][:cut], train[1][:cut])
        test = decode_shard(await fetch_blob(http, self.config.server, ds.test))
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

        def board_report() -> Report:
            top = dict(metrics.accepted_from.most_common(256))
            return Report(step=trainer.step, test_acc=last_acc[-1] if last_acc else None, accepted_from=top)

        mesh.report_source = board_report

        def report(final: bool = False) -> dict[str, Any]:
            test_loss, acc = trainer.evaluate(cfg.eval_limit)
            last_acc[:] = [acc]
            links = mesh.links.values()
            row = metrics.record(
                step=trainer.step, shard=shard, train_loss=loss, test_loss=test_loss, test_acc=acc,
                neighbors=len(mesh.open_links()), neighbor_ids=[l.peer_id for l in mesh.open_links()], exchanges={o.value: n for o, n in engine.outcomes.items()},
                served=engine.served, declined=engine.declined_requests, neighbor_distance=transport.last_distance,
                bytes_sent=sum(l.bytes_sent for l in links), bytes_received=sum(l.bytes_received for l in links),
                signaling=mesh.connected.is_set(), final=final, pulled_from=self.summary.get("pulled_from"),
                gossip_weight=trainer.gossip_weight, links=mesh.link_report(),
            )  # fmt: skip
            out.write(row)
            if cfg.progress:
                _console.log(f"step {row['step']:>6}  test acc {acc:.3f}  loss {loss:.3f}  neighbors {row['neighbors']}  "
                             f"exchanges {engine.outcomes[Outcome.MERGED] + engine.served}  "
                             f"rejected {sum(metrics.rejected.values())}")  # fmt: skip
            return row

        async def work() -> None:
            nonlocal loss, since_exchange, last_report, last_ckpt
            async with trainer.lock:
                row = await asyncio.to_thread(report)
            log.info("%s start: step %d, test accuracy %.3f", role, trainer.step, row["test_acc"])
            while cfg.duration_s is None or time.monotonic() - started < cfg.duration_s:
                training = role != "aggregator" and (cfg.max_steps is None or trainer.step < cfg.max_steps)
                if training:
                    n = min(TRAIN_CHUNK, tcfg.local_steps - since_exchange) or 1
                    async with trainer.lock:
                        loss = await asyncio.to_thread(trainer.train_steps, n)
                    since_exchange += n
                    if trainer.step % tcfg.eval_every < n:
                        async with trainer.lock:
                            await asyncio.to_thread(report)
                else:
                    await asyncio.sleep(0.2)  # done training: keep gossiping towards consensus
                    since_exchange = tcfg.local_steps
                    if time.monotonic() - last_report > 2.0:
                        async with trainer.lock:
                            await asyncio.to_thread(report)
                        last_report = time.monotonic()
                if since_exchange >= tcfg.local_steps and role != "aggregator":
                    await self._exchange(mesh, engine, transport, rng, manifest.gossip.exchange_timeout_s)
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
            for task in (body, stopper):
                task.cancel()
            await asyncio.gather(body, stopper, return_exceptions=True)
            if body.done() and not body.cancelled() and body.exception() is not None:
                log.error("training loop failed: %r", body.exception())
            async with trainer.lock:
                self.summary = await asyncio.to_thread(report, True)
            await self._checkpoint(trainer, ckpt_dir, model_id)
            out.close()
        if not body.cancelled() and body.exception() is not None:
            raise body.exception()  # type: ignore[misc]

    async def _exchange(self, mesh: Mesh, engine: GossipEngine | FedAvgAggregator, transport: MeshTransport,
                        rng: random.Random, timeout: float) -> None:  # fmt: skip
        open_links = mesh.open_links()
        if not open_links or not isinstance(engine, GossipEngine):
            return
        peer = rng.choice(open_links).peer_id
        outcome = await engine.initiate(peer, transport, timeout)
        if outcome == Outcome.MERGED:
            transport.check_clipping(peer)
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
        elif outcome in (Outcome.MERGED, Outcome.DECLINED):
            self._timeouts.pop(peer, None)
        if outcome != Outcome.MERGED:
            await asyncio.sleep(rng.uniform(0.0, 0.05))  # desynchronize retries after a decline
