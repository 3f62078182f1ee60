"""What a simulated swarm trains: the same publication (manifest, initial weights, shards) a live swarm uses.

``publication_for`` builds it as ``swarm publish`` would, from the experiment's ``model`` and
``data`` sections: the default no-code MLP on the built-in MNIST digits, or a Keras ``.h5`` file /
TF.js layers directory (``model.source``) with an ``.npz``/``.csv`` dataset (``data.source``); or
fetches it from a live swarm (``model.join``: a join link). Both backends use it, so sim and webrtc
runs train the same model on the same shards. Initial weights are made deterministic per seed
(``tf_keras.utils.set_random_seed``), so the same config and seed give the same run.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.publish import DataOptions, Publication, build_publication, parse_hidden
from peer.trainer import split_weights_blob
from protocols.dataset import decode_shard
from protocols.manifest import GossipConfig, Manifest, TrainingConfig

from .config import ExperimentConfig

Weights = list[np.ndarray]


@dataclass
class SwarmModel:
    manifest: Manifest
    initial_blob: bytes
    initial: Weights
    shards: list[tuple[np.ndarray, np.ndarray]]  # float32 features, int64 labels, per peer
    test: tuple[np.ndarray, np.ndarray]

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(w.shape) for w in self.manifest.model.weights]


def training_config(config: ExperimentConfig) -> TrainingConfig:
    """The manifest's training section for this experiment (sim and webrtc alike)."""
    m = config.model
    return TrainingConfig(optimizer=m.optimizer, learning_rate=max(m.learning_rate, 1e-9), batch_size=m.batch_size,
                          local_steps=config.swarm.local_steps, eval_every=config.swarm.local_steps * config.budget.eval_every,
                          clipnorm=m.clipnorm, l2=m.l2, warmup_steps=m.warmup_steps)  # fmt: skip


def gossip_config(config: ExperimentConfig, method: str, aggregator: str | None = None) -> GossipConfig:
    s = config.swarm
    return GossipConfig(method=method, aggregator=aggregator if method == "central" else None,  # type: ignore[arg-type]
                        degree=s.degree, codec=s.codec, robust=s.robust, clip_multiplier=s.clip_multiplier,
                        exchange_timeout_s=s.exchange_timeout_s, mixing=s.mixing, fanout=s.fanout)  # fmt: skip


def mixing_of(config: ExperimentConfig, manifest: Manifest) -> tuple[str, int]:
    """The label-skew remedy to simulate: ``swarm.mixing`` and ``swarm.fanout`` where the experiment
    sets them, else the manifest's ``gossip.mixing`` and ``gossip.fanout`` (a published swarm's, with
    ``model.join``; otherwise the manifest was made from the experiment, so the two agree)."""
    s, g = config.swarm, manifest.gossip
    return (s.mixing if "mixing" in s.model_fields_set else g.mixing,
            s.fanout if "fanout" in s.model_fields_set else g.fanout)  # fmt: skip


def publication_for(config: ExperimentConfig, seed: int, key: Ed25519PrivateKey, method: str = "gossip",
                    aggregator: str | None = None, shards: int | None = None) -> Publication:  # fmt: skip
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras

    tf_keras.utils.set_random_seed(seed)  # apps.publish seeds TensorFlow only; Keras initializers need this
    d, m = config.data, config.model
    data = DataOptions(str(d.source) if d.source else "mnist", label_column=d.label_column, test_fraction=d.test_fraction,
                       shards=shards or config.swarm.peers, partition=d.partition, alpha=d.alpha,
                       classes_per_shard=d.classes_per_shard)  # fmt: skip
    hidden = None if m.source else parse_hidden(",".join(f"{h}:{m.activation}" for h in m.hidden))
    return build_publication(key, model=m.source, hidden=hidden, data=data, name=f"{config.name}-{method}", seed=seed,
                             training=training_config(config), gossip=gossip_config(config, method, aggregator))  # fmt: skip


async def _fetch(join: str) -> tuple[Manifest, dict[str, bytes]]:
    import aiohttp

    from peer.config import parse_join_url
    from peer.fetch import fetch_blob, fetch_manifest

    server, swarm_id = parse_join_url(join)
    async with aiohttp.ClientSession() as http:
        _, manifest = await fetch_manifest(http, server, swarm_id)
        refs = [manifest.model.initial_weights]
        if manifest.dataset is not None:
            refs += [*manifest.dataset.train_shards, manifest.dataset.test]
        blobs = {r.digest: await fetch_blob(http, server, r) for r in refs}
    return manifest, blobs


def swarm_model(config: ExperimentConfig, seed: int, peers: int | None = None) -> SwarmModel:
    """The model and data of the experiment, one shard per peer (``peers`` overrides the count, e.g. 1 for pooled)."""
    if config.model.join:
        manifest, blobs = asyncio.run(_fetch(config.model.join))
        if manifest.dataset is None:
            raise ValueError(f"{config.model.join} publishes no dataset; the simulator needs the swarm's shards")
        shards = [decode_shard(blobs[s.digest]) for s in manifest.dataset.train_shards]
        if peers == 1:
            shards = [(np.concatenate([x for x, _ in shards]), np.concatenate([y for _, y in shards]))]
        elif len(shards) != config.swarm.peers:
            raise ValueError(f"{config.model.join} has {len(shards)} shards; set swarm.peers = {len(shards)} "
                             "(each simulated peer trains one published shard)")  # fmt: skip
    else:
        pub = publication_for(config, seed, Ed25519PrivateKey.from_private_bytes(bytes(32)), shards=peers)
        manifest, blobs = pub.manifest, pub.blobs
        assert manifest.dataset is not None
        shards = [decode_shard(blobs[s.digest]) for s in manifest.dataset.train_shards]
    assert manifest.dataset is not None
    blob = blobs[manifest.model.initial_weights.digest]
    x_test, y_test = decode_shard(blobs[manifest.dataset.test.digest])
    n = min(config.data.eval_examples, len(y_test))
    return SwarmModel(manifest, blob, split_weights_blob(manifest, blob), shards, (x_test[:n], y_test[:n]))


def source_label(config: ExperimentConfig) -> str:
    m = config.model
    if m.join:
        return f"join link {m.join}"
    return f"model {Path(m.source).name}" if m.source else f"MLP {m.hidden}"
