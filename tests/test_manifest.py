"""Manifests: the publisher's signature binds the exact manifest text, which names the model."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.crypto import manifest_message, public_key_bytes, sign
from protocols.errors import ManifestError
from protocols.manifest import (
    MAX_MANIFEST_BYTES,
    BlobRef,
    DatasetSpec,
    Manifest,
    ModelSpec,
    ShardRef,
    SignedManifest,
    WeightSpec,
    envelope_json,
    parse_envelope,
    parse_manifest,
    sign_manifest,
)

PUBLISHER = Ed25519PrivateKey.from_private_bytes(b"\x44" * 32)
OTHER = Ed25519PrivateKey.from_private_bytes(b"\x55" * 32)
DIGEST = "ab" * 32


def _model(shapes: tuple[list[int], ...] = ([4, 3], [3]), size: int | None = None) -> dict:
    count = sum(_prod(s) for s in shapes)
    return {
        "topology": {"class_name": "Sequential", "config": {"layers": []}},
        "weights": [{"name": f"w{i}", "shape": s} for i, s in enumerate(shapes)],
        "initial_weights": {"digest": DIGEST, "size": 4 * count if size is None else size},
    }


def _prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _manifest(key: Ed25519PrivateKey = PUBLISHER, **over: object) -> Manifest:
    fields: dict[str, object] = {
        "swarm_id": "5eed" * 8, "name": "unit", "publisher_key": public_key_bytes(key).hex(), "model": _model(),
    }  # fmt: skip
    fields.update(over)
    return Manifest.model_validate(fields)


def test_sign_and_verify_round_trip_through_the_envelope() -> None:
    manifest = _manifest()
    signed = sign_manifest(PUBLISHER, manifest)
    received = parse_envelope(envelope_json(signed))
    assert received == signed
    assert received.verify() == manifest


def test_model_id_is_the_sha256_of_the_manifest_string() -> None:
    signed = sign_manifest(PUBLISHER, _manifest())
    assert signed.model_id == hashlib.sha256(signed.manifest.encode("utf-8")).hexdigest()
    other = sign_manifest(PUBLISHER, _manifest(name="another"))
    assert other.model_id != signed.model_id


def test_the_signature_covers_the_context_and_the_manifest_hash() -> None:
    signed = sign_manifest(PUBLISHER, _manifest())
    text = signed.manifest.encode("utf-8")
    assert manifest_message(text) == b"gossip-swarm/manifest/v1\x00" + hashlib.sha256(text).digest()
    plain = SignedManifest(manifest=signed.manifest, signature=sign(PUBLISHER, text).hex())  # no context
    with pytest.raises(ManifestError):
        plain.verify()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace('"name":"unit"', '"name":"evil"'),
        lambda t: json.dumps(json.loads(t)),  # same JSON value, other bytes: still not what was signed
        lambda t: t + " ",
    ],
    ids=["changed field", "reformatted", "trailing space"],
)
def test_a_tampered_manifest_text_is_rejected(tamper) -> None:  # type: ignore[no-untyped-def]
    signed = sign_manifest(PUBLISHER, _manifest())
    text = tamper(signed.manifest)
    assert text != signed.manifest
    forged = parse_envelope(json.dumps({"manifest": text, "signature": signed.signature}))
    with pytest.raises(ManifestError, match="signature"):
        forged.verify()


def test_a_signature_by_another_key_is_rejected() -> None:
    manifest = _manifest()  # names PUBLISHER as its publisher
    with pytest.raises(ManifestError, match="publisher_key"):
        sign_manifest(OTHER, manifest)
    text = manifest.model_dump_json()
    forged = SignedManifest(manifest=text, signature=sign(OTHER, manifest_message(text.encode())).hex())
    with pytest.raises(ManifestError, match="signature"):
        forged.verify()


def test_a_manifest_naming_the_signer_as_publisher_verifies_only_for_that_key() -> None:
    """Anyone can publish under their own key; the key is what peers must trust, not the text."""
    signed = sign_manifest(OTHER, _manifest(key=OTHER))
    assert signed.verify().publisher_key == public_key_bytes(OTHER).hex()


@pytest.mark.parametrize("size", [4 * 15 - 4, 4 * 15 + 4, 0])
def test_initial_weights_of_the_wrong_size_are_rejected(size: int) -> None:
    with pytest.raises(ManifestError, match="initial_weights.size"):
        parse_manifest(json.dumps({**json.loads(_manifest().model_dump_json()), "model": _model(size=size)}))


def test_negative_dimensions_are_rejected() -> None:
    """[-1, -4] has the element count of [1, 4]: the size check alone would let it through."""
    with pytest.raises(ManifestError):
        parse_manifest(json.dumps({**json.loads(_manifest().model_dump_json()), "model": _model(([-1, -4],))}))


def test_unknown_fields_and_garbage_are_manifest_errors() -> None:
    text = _manifest().model_dump_json()
    with pytest.raises(ManifestError):
        parse_manifest(json.dumps({**json.loads(text), "surprise": 1}))
    for bad in ("", "{", "[]", '{"manifest": 1, "signature": "00"}', json.dumps({"manifest": text})):
        with pytest.raises(ManifestError):
            parse_envelope(bad).verify()
    with pytest.raises(ManifestError, match="size limit"):
        parse_envelope(" " * (MAX_MANIFEST_BYTES + 2048))


def test_blobs_lists_the_weights_and_every_shard() -> None:
    shard = ShardRef(digest="cd" * 32, size=10, num_samples=1)
    test = ShardRef(digest="ef" * 32, size=12, num_samples=2)
    dataset = DatasetSpec(name="d", input_shape=[4], num_classes=3, train_shards=[shard], test=test)
    manifest = _manifest(dataset=dataset)
    assert [b.digest for b in manifest.blobs()] == [DIGEST, shard.digest, test.digest]
    assert isinstance(manifest.model, ModelSpec) and isinstance(manifest.model.initial_weights, BlobRef)
    assert [w.shape for w in manifest.model.weights] == [[4, 3], [3]] and isinstance(manifest.model.weights[0], WeightSpec)
