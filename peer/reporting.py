"""What a peer tells: a metrics row per evaluation, a progress line, and its contribution-board report.

A row (``PeerMetrics.record``) is written as a JSON line to ``--metrics-out`` and is what tests,
the demo and the dashboard read; its fields are listed in ``Reporter.evaluate``. The board report
(``protocols.signaling.Report``) carries the step, the last test accuracy and the receipts this
peer signed for frames it accepted (``receipts.ReceiptBook``), never weights.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from protocols.signaling import Report

from .config import PeerConfig
from .gossip import Engine, Outcome
from .mesh import Mesh
from .metrics import JsonLines, PeerMetrics
from .receipts import ReceiptBook
from .transport import MeshTransport

log = logging.getLogger("peer.node")
_console = Console(stderr=True)


class Reporter:
    """Evaluates the model into metrics rows, and answers the mesh's request for a board report."""

    def __init__(self, config: PeerConfig, key: Ed25519PrivateKey, metrics: PeerMetrics, trainer: Any, engine: Engine,
                 transport: MeshTransport, mesh: Mesh, *, shard: int, target_accuracy: float) -> None:  # fmt: skip
        self.config, self.metrics, self.trainer, self.engine = config, metrics, trainer, engine
        self.transport, self.mesh, self.shard = transport, mesh, shard
        self.target = target_accuracy  # the publisher's, signed into the manifest
        self.reached_step: int | None = None  # the step at which this peer first evaluated at the target
        self.last_acc: float | None = None
        self.pulled_from: str | None = None  # the neighbor whose model this peer started from
        self.exchanges: Any = None  # peer.schedule.Exchanges once made: rows say its mixing and partners
        self._out = JsonLines(config.metrics_out)
        self._receipts = ReceiptBook(key, config.swarm_id, metrics.accepted_from)
        self._sessions = mesh.stats.sessions

    def board_report(self) -> Report:
        """The mesh's ``report_source``: step, last accuracy, and the receipts due."""
        if self.mesh.stats.sessions != self._sessions:  # a new signaling session: the server may have forgotten them
            self._sessions = self.mesh.stats.sessions
            self._receipts.resend_all()
        return Report(step=self.trainer.step, test_acc=self.last_acc, receipts=self._receipts.due())

    def evaluate(self, loss: float, final: bool = False) -> dict[str, Any]:
        """Evaluate, record and write one row; ``loss`` is the last training chunk's mean loss.

        Blocking (TensorFlow): call it in a worker thread with the trainer's lock held.
        """
        trainer, mesh, engine, metrics = self.trainer, self.mesh, self.engine, self.metrics
        test_loss, acc = trainer.evaluate(self.config.eval_limit)
        self.last_acc = acc
        if self.reached_step is None and isinstance(acc, float) and acc >= self.target:
            self.reached_step = trainer.step
            log.info("reached the publisher's target accuracy %.2f at step %d (test accuracy %.3f)", self.target, trainer.step, acc)
        links = mesh.links.values()
        row = metrics.record(
            step=trainer.step, shard=self.shard, train_loss=loss, test_loss=test_loss, test_acc=acc,
            neighbors=len(mesh.open_links()), neighbor_ids=[l.peer_id for l in mesh.open_links()], exchanges={o.value: n for o, n in engine.outcomes.items()},
            served=engine.served, declined=engine.declined_requests, neighbor_distance=self.transport.last_distance,
            bytes_sent=sum(l.bytes_sent for l in links), bytes_received=sum(l.bytes_received for l in links),
            signaling=mesh.connected.is_set(), final=final, pulled_from=self.pulled_from,
            gossip_weight=trainer.gossip_weight, links=mesh.link_report(),
            target_accuracy=self.target, target_reached_step=self.reached_step,
            metrics={k: float(v) for k, v in trainer.last_metrics.items()},  # the task's: accuracy, or mae/mse/r2
            **self._mixing(),
        )  # fmt: skip
        self._out.write(row)
        if self.config.progress:
            _console.log(f"step {row['step']:>6}  test acc {acc:.3f}  loss {loss:.3f}  neighbors {row['neighbors']}  "
                         f"exchanges {engine.outcomes[Outcome.MERGED] + engine.served}  "
                         f"rejected {sum(metrics.rejected.values())}")  # fmt: skip
        return row

    def _mixing(self) -> dict[str, Any]:
        """Whom this peer exchanges with: ``gossip.mixing`` and ``fanout``, the rounds started, how many
        began with the round's exponential partner, exchanges started per neighbor, and the current
        exponential partners (empty under random mixing)."""
        ex = self.exchanges
        if ex is None:
            return {}
        return {"mixing": ex.mixing, "fanout": ex.fanout, "exchange_rounds": ex.rounds, "on_schedule": ex.on_schedule,
                "exchange_partners": dict(ex.partners), "exponential_partners": self.mesh.exponential_partners()}  # fmt: skip

    def close(self) -> None:
        self._out.close()
