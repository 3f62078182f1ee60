"""A headless peer, composed: fetch the swarm, join the mesh, train, gossip, report.

Only the wiring is here, built in one direction: the mesh first (its frame handlers are read at
call time, so the transport is made after it and handed to it), then the trainer, the engine of
this peer's role, the verifier and the transport, then the schedule. The pieces each have one
job: ``roles`` (links, engine and schedule of gossip, clipped gossip, FedAvg client and
aggregator), ``bootstrap`` (join, data, resume, pull first), ``schedule`` (training and
exchanges), ``reporting`` (metrics rows, board report), ``mesh``, ``transport``, ``gossip``,
``trainer``, ``checkpoint``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp

from protocols.codecs import CodecId
from protocols.crypto import peer_id_of, public_key_bytes
from protocols.frame import frame_size
from protocols.manifest import Manifest

from . import bootstrap, checkpoint
from .bootstrap import default_checkpoint_dir
from .config import PeerConfig, ws_url
from .fetch import fetch_blob, fetch_manifest
from .gossip import Engine, GossipEngine
from .ice import use_candidate_addresses
from .identity import load_or_create
from .link import quiet_closed_transport_errors
from .localdata import load_local_data
from .mesh import Mesh
from .metrics import PeerMetrics
from .reporting import Reporter
from .roles import Role, role_for
from .schedule import TRAIN_CHUNK, Exchanges, LastGood, Schedule
from .transport import MeshTransport
from .verifier import FrameVerifier

__all__ = ["PeerConfig", "PeerNode", "LastGood", "TRAIN_CHUNK", "default_checkpoint_dir", "load_local_data", "max_frame_size"]


def max_frame_size(manifest: Manifest) -> int:
    """Bytes of the largest frame this model's exchanges carry: a float32 frame (``protocols.frame.frame_size``)."""
    return frame_size([tuple(w.shape) for w in manifest.model.weights], int(CodecId.FLOAT32))


class PeerNode:
    """One peer of one swarm: ``await PeerNode(config).run()`` until ``stop`` is set or ``duration_s`` passed."""

    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.key = load_or_create(config.identity)
        self.stop = asyncio.Event()
        self.metrics: PeerMetrics | None = None
        self.summary: dict[str, Any] = {}  # the final metrics row, once the peer has left
        self._schedule: Schedule | None = None

    @property
    def own_key(self) -> str:
        return public_key_bytes(self.key).hex()

    @property
    def last_good(self) -> LastGood | None:
        """The model's last finite copy, once training runs."""
        return self._schedule.last_good if self._schedule is not None else None

    def _role(self, manifest: Manifest) -> Role:
        return role_for(manifest, self.own_key)

    def _engine(self, manifest: Manifest, trainer: Any, mesh: Mesh) -> Engine:
        """The engine of this peer's role (a hook: tests wrap it to record what the engine sees)."""
        return self._role(manifest).engine(trainer, mesh)

    async def run(self) -> dict[str, Any]:
        """Join, train and gossip; return the final metrics row (also in ``summary``)."""
        cfg = self.config
        use_candidate_addresses(cfg.ice_addresses)
        quiet_closed_transport_errors(asyncio.get_running_loop())
        async with aiohttp.ClientSession() as http:
            signed, manifest = await fetch_manifest(http, cfg.server, cfg.swarm_id)
            initial = await fetch_blob(http, cfg.server, manifest.model.initial_weights)
            role = self._role(manifest)
            self.metrics = PeerMetrics(peer_id_of(public_key_bytes(self.key)))
            mesh = Mesh(self.key, ws_url(cfg.server), cfg.swarm_id, role.mesh_config(cfg), max_frame_size=max_frame_size(manifest))
            ckpt_dir = cfg.checkpoint_dir or default_checkpoint_dir(cfg.swarm_id, mesh.peer_id)
            ckpt_lock = checkpoint.CheckpointLock(ckpt_dir)  # before joining: a second process stops here
            try:
                welcome = await bootstrap.join(mesh, cfg)
                train, test = await bootstrap.load_data(http, cfg, manifest, welcome.shard)
                trainer = await asyncio.to_thread(bootstrap.make_trainer, manifest, initial, train, test, cfg.seed)
                engine = self._engine(manifest, trainer, mesh)
                transport = self._transport(manifest, signed.model_id, trainer, engine, mesh)
                fresh = await bootstrap.resume(trainer, ckpt_dir, signed.model_id)
                mesh.accept_links()
                pulled_from = None
                if fresh and role.pulls_first and welcome.peers:
                    pulled_from = await bootstrap.pull_first(mesh, trainer, transport, manifest.gossip.exchange_timeout_s)
                    if pulled_from is not None:
                        self.summary["pulled_from"] = pulled_from
                reporter = Reporter(cfg, self.key, self.metrics, trainer, engine, transport, mesh, shard=welcome.shard,
                                    target_accuracy=manifest.training.target_accuracy)  # fmt: skip
                reporter.pulled_from = pulled_from
                mesh.report_source = reporter.board_report
                exchanges = Exchanges(mesh, engine, transport, random.Random(cfg.seed), mixing=mesh.config.mixing,
                                      fanout=manifest.gossip.fanout)  # mixing is the role's (FedAvg clients: random)
                reporter.exchanges = exchanges
                self._schedule = Schedule(role, cfg, manifest.training, trainer, exchanges, reporter,
                                          lambda: bootstrap.save_checkpoint(trainer, ckpt_dir, signed.model_id))  # fmt: skip
                try:
                    await self._schedule.run(self.stop)
                finally:
                    self.summary = self._schedule.summary
                    reporter.close()
            finally:
                await mesh.close()
                ckpt_lock.release()
        return self.summary

    def _transport(self, manifest: Manifest, model_id: str, trainer: Any, engine: Engine, mesh: Mesh) -> MeshTransport:
        """The verifier and transport over ``mesh``, installed as its frame and chunk-error handlers."""
        cfg, metrics = self.config, self.metrics
        assert metrics is not None
        verifier = FrameVerifier(
            swarm_id=bytes.fromhex(cfg.swarm_id), model_id=bytes.fromhex(model_id),
            own_key=public_key_bytes(self.key), shapes=trainer.shapes, max_frame_size=max_frame_size(manifest),
            is_known=lambda key: any(l.remote_key == key for l in mesh.links.values()),
        )  # fmt: skip
        transport = MeshTransport(
            self.key, swarm_id=bytes.fromhex(cfg.swarm_id), model_id=bytes.fromhex(model_id),
            verifier=verifier, engine=engine, metrics=metrics, links=lambda: mesh.links,
            codec=CodecId[manifest.gossip.codec.upper()], frame_bytes=max_frame_size(manifest),
            exchange_timeout_s=manifest.gossip.exchange_timeout_s,
        )  # fmt: skip
        if isinstance(engine, GossipEngine):
            engine.hold_s = transport.deadline  # how long an accepted proposal waits for its request
        transport.on_misbehaving = lambda peer, why: mesh.ban(peer)
        mesh.on_frame, mesh.on_chunk_error = transport.on_frame, transport.on_chunk_error
        return transport
