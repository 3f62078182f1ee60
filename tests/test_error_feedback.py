"""Lossy codecs with error feedback: what a neighbor receives stays within one residual of our model."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.gossip import GossipEngine
from peer.metrics import PeerMetrics
from peer.transport import MeshTransport
from protocols.codecs import CodecId, codec_for


class _Model:
    lock = None


def _transport() -> MeshTransport:
    return MeshTransport(Ed25519PrivateKey.generate(), swarm_id=b"\0" * 16, model_id=b"\0" * 32, verifier=None,  # type: ignore[arg-type]
                         engine=GossipEngine(_Model()), metrics=PeerMetrics("x"), links=dict, codec=CodecId.INT8)  # type: ignore[arg-type]  # fmt: skip


def test_error_feedback_keeps_the_running_mean_of_what_was_sent_on_the_model() -> None:
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(64, 32)).astype(np.float32), rng.normal(size=(32,)).astype(np.float32)]
    codec = codec_for(CodecId.INT8)
    shapes = [w.shape for w in weights]
    transport = _transport()
    with_feedback, without = [], []
    for _ in range(200):
        sent = transport._with_error_feedback("peer", weights, CodecId.INT8)
        with_feedback.append(codec.decode(codec.encode(sent), shapes))
        without.append(codec.decode(codec.encode(weights), shapes))

    def bias(received: list[list[np.ndarray]]) -> float:
        return max(float(np.abs(np.mean([r[i] for r in received], axis=0) - w).max()) for i, w in enumerate(weights))

    one_step = max(float(np.abs(q - w).max()) for q, w in zip(without[0], weights, strict=True))
    assert bias(without) > 0.5 * one_step  # plain int8 repeats the same rounding error forever
    assert bias(with_feedback) < 0.05 * one_step  # error feedback cancels it over exchanges


def test_float32_sends_the_weights_unchanged() -> None:
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3)]
    assert _transport()._with_error_feedback("peer", weights, CodecId.FLOAT32) is weights
