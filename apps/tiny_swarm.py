"""A tiny signed swarm for tests that need a published manifest but not TensorFlow."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.crypto import public_key_bytes, sha256
from protocols.dataset import encode_shard
from protocols.manifest import (
    BlobRef,
    DatasetSpec,
    Manifest,
    ModelSpec,
    ShardRef,
    SignedManifest,
    WeightSpec,
    sign_manifest,
)


@dataclass
class Publication:
    signed: SignedManifest
    manifest: Manifest
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def swarm_id(self) -> str:
        return self.manifest.swarm_id

    def parts(self) -> list[tuple[str, bytes]]:
        return list(self.blobs.items())


def tiny_publication(key: Ed25519PrivateKey, *, swarm_id: str | None = None, shards: int = 3, seed: int = 0) -> Publication:
    """A 4-3 dense layer and ``shards`` small uint8 shards: a few hundred bytes in all."""
    rng = np.random.default_rng(seed)
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> str:
        blobs[sha256(data).hex()] = data
        return sha256(data).hex()

    def shard(n: int) -> ShardRef:
        data = encode_shard(rng.integers(0, 256, (n, 4), dtype=np.uint8), rng.integers(0, 3, n, dtype=np.uint8))
        return ShardRef(digest=add(data), size=len(data), num_samples=n)

    weights = rng.standard_normal(15).astype("<f4").tobytes()
    manifest = Manifest(
        swarm_id=swarm_id or secrets.token_hex(16), name="tiny", publisher_key=public_key_bytes(key).hex(),
        model=ModelSpec(topology={"class_name": "Sequential", "config": {"layers": []}},
                        weights=[WeightSpec(name="dense/kernel", shape=[4, 3]), WeightSpec(name="dense/bias", shape=[3])],
                        initial_weights=BlobRef(digest=add(weights), size=len(weights))),
        dataset=DatasetSpec(name="tiny", input_shape=[4], num_classes=3,
                            train_shards=[shard(5 + i) for i in range(shards)], test=shard(3)),
    )  # fmt: skip
    return Publication(sign_manifest(key, manifest), manifest, blobs)


def publish_form(envelope: str | None, blobs: Iterable[tuple[str, bytes]]) -> aiohttp.FormData:
    """The multipart body of POST /api/publish: ``manifest`` then one ``blob`` part per digest."""
    form = aiohttp.FormData()
    if envelope is not None:
        form.add_field("manifest", envelope, content_type="application/json")
    for name, data in blobs:
        form.add_field("blob", data, filename=name, content_type="application/octet-stream")
    return form
