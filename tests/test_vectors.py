"""The committed test vectors are what the code builds, and each one checks out from its inputs alone.

The second group re-derives every vector from the inputs written in the JSON files, as a
JavaScript implementation would, so a vector that the generator got wrong fails here too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from protocols.chunking import Reassembler, split_frame
from protocols.codecs import codec_for
from protocols.crypto import (
    ANSWER_CONTEXT,
    JOIN_CONTEXT,
    MANIFEST_CONTEXT,
    OFFER_CONTEXT,
    peer_id_of,
    private_key_from_seed,
    public_key_bytes,
    sha256,
    verify,
)
from protocols.errors import ProtocolError, SignatureError
from protocols.dataset import decode_shard, encode_shard
from protocols.frame import FrameKind, build_frame, decode_frame
from protocols.make_vectors import SCHEMA_PATH, VECTORS_DIR, expected_files
from protocols.manifest import parse_envelope
from protocols.signaling import (
    Answer,
    Join,
    Offer,
    parse_client_message,
    parse_server_message,
    schema_text,
    sdp_fingerprints,
)

REGENERATE = "regenerate with `python -m protocols.make_vectors` and commit the result"


def _load(name: str) -> Any:
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))


def _tensors(items: list[dict[str, Any]]) -> list[np.ndarray]:
    return [np.asarray(t["values"], dtype=np.float32).reshape(t["shape"]) for t in items]


def _assert_tensors_equal(got: list[np.ndarray], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, _tensors(want), strict=True):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)
        assert np.array_equal(np.signbit(g), np.signbit(w))  # -0.0 stays -0.0


# ---- committed files = generator ---------------------------------------------------------


@pytest.mark.parametrize("path", sorted(expected_files()), ids=lambda p: p.name)
def test_committed_file_equals_the_generator_output(path: Path) -> None:
    assert path.is_file(), f"{path} is missing; {REGENERATE}"
    assert path.read_text(encoding="utf-8") == expected_files()[path], f"{path.name} is stale; {REGENERATE}"


def test_the_schema_file_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), REGENERATE
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert set(schema) == {"client_to_server", "server_to_client"}


def test_the_vector_files_are_strict_json() -> None:
    """No NaN/Infinity tokens: JavaScript's JSON.parse rejects them."""
    for path in VECTORS_DIR.glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(f"{path.name}: {c}"))


# ---- each vector checks out from its inputs -----------------------------------------------


def test_keys_derive_from_their_seeds_and_signatures_verify() -> None:
    data = _load("keys.json")
    by_name = {}
    for k in data["keys"]:
        pub = public_key_bytes(private_key_from_seed(bytes.fromhex(k["seed"])))
        assert pub.hex() == k["public_key"]
        assert peer_id_of(pub) == k["peer_id"] == sha256(pub)[:16].hex()
        by_name[k["name"]] = pub
    assert by_name["rfc8032_test1"].hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    for s in data["signatures"]:
        verify(by_name[s["key"]], bytes.fromhex(s["signature"]), bytes.fromhex(s["message"]))


FRAMES = _load("frames.json")["frames"]


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["name"])
def test_committed_frame_decodes_and_verifies(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["frame"])
    frame = decode_frame(data)
    h, f = frame.header, vector["fields"]
    assert (h.version, int(h.kind), h.kind.name, h.codec, h.flags) == (
        f["version"], f["kind"], f["kind_name"], f["codec"], f["flags"])  # fmt: skip
    assert [h.swarm_id.hex(), h.model_id.hex(), h.sender.hex(), h.receiver.hex()] == [
        f["swarm_id"], f["model_id"], f["sender"], f["receiver"]]  # fmt: skip
    assert [str(h.session), str(h.seq), str(h.exchange_id), str(h.step)] == [
        f["session"], f["seq"], f["exchange_id"], f["step"]]  # fmt: skip
    assert h.sample_weight == f["sample_weight"] and h.payload_len == f["payload_len"]
    assert [list(s) for s in h.shapes] == f["shapes"]
    # the pieces fit together as docs/PROTOCOL.md says
    signed, sig = bytes.fromhex(vector["signed_header"]), bytes.fromhex(vector["signature"])
    payload = bytes.fromhex(vector["payload"])
    assert bytes.fromhex(vector["header"]) == signed + sig and data == signed + sig + payload
    assert signed[-32:].hex() == vector["digest"] == sha256(payload).hex()
    verify(h.sender, sig, signed)
    assert public_key_bytes(private_key_from_seed(bytes.fromhex(vector["sender_seed"]))) == h.sender
    _assert_tensors_equal(frame.tensors(), vector["decoded"])


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["name"])
def test_committed_frame_rebuilds_from_its_inputs(vector: dict[str, Any]) -> None:
    f = vector["fields"]
    frame = build_frame(
        private_key_from_seed(bytes.fromhex(vector["sender_seed"])), kind=FrameKind(f["kind"]),
        swarm_id=bytes.fromhex(f["swarm_id"]), model_id=bytes.fromhex(f["model_id"]),
        receiver=bytes.fromhex(f["receiver"]), session=int(f["session"]), seq=int(f["seq"]),
        exchange_id=int(f["exchange_id"]), sample_weight=f["sample_weight"], step=int(f["step"]),
        tensors=_tensors(vector["tensors"]), codec=f["codec"],
    )  # fmt: skip
    assert frame.encode().hex() == vector["frame"]


def test_frames_cover_every_kind_and_codec() -> None:
    assert {v["fields"]["kind"] for v in FRAMES} == {int(k) for k in FrameKind}
    assert {v["fields"]["codec"] for v in FRAMES} == {0, 1, 2}


@pytest.mark.parametrize("case", _load("chunks.json")["cases"], ids=lambda c: c["name"])
def test_chunks_split_and_reassemble(case: dict[str, Any]) -> None:
    frame = bytes.fromhex(case["frame"])
    chunks = [bytes.fromhex(c) for c in case["chunks"]]
    assert list(split_frame(frame, case["transfer_id"], case["message_size"])) == chunks
    assert all(len(c) <= case["message_size"] for c in chunks)
    r = Reassembler(max_frame_size=max(1, len(frame)))
    results = [r.feed(c) for c in chunks]
    assert results[:-1] == [None] * (len(chunks) - 1) and results[-1] == frame


def test_manifest_envelope_verifies_and_names_its_model() -> None:
    data = _load("manifest.json")
    signed = parse_envelope(data["envelope"])
    manifest = signed.verify()
    text = data["manifest"].encode("utf-8")
    assert signed.manifest == data["manifest"] and signed.signature == data["signature"]
    assert data["model_id"] == signed.model_id == sha256(text).hex() == data["manifest_sha256"]
    assert bytes.fromhex(data["signed_message"]) == MANIFEST_CONTEXT + sha256(text)
    assert bytes.fromhex(data["manifest_context"]) == MANIFEST_CONTEXT
    verify(bytes.fromhex(data["publisher_key"]), bytes.fromhex(data["signature"]), bytes.fromhex(data["signed_message"]))
    seed_key = public_key_bytes(private_key_from_seed(bytes.fromhex(data["publisher_seed"])))
    assert manifest.publisher_key == data["publisher_key"] == seed_key.hex()
    blobs = {d: bytes.fromhex(b) for d, b in data["blobs"].items()}
    for ref in manifest.blobs():
        assert sha256(blobs[ref.digest]).hex() == ref.digest and len(blobs[ref.digest]) == ref.size
    assert data["publisher_fingerprint"] == sha256(seed_key)[:16].hex()
    assert data["pinned_join_url"].endswith(f"/s/{manifest.swarm_id}#pk={data['publisher_fingerprint']}")
    weights = blobs[manifest.model.initial_weights.digest]
    assert weights == b"".join(t.astype("<f4").tobytes() for t in _tensors(data["initial_weights"]))
    assert [w.name for w in manifest.model.weights] == [t["name"] for t in data["initial_weights"]]


def test_join_proof_verifies() -> None:
    data = _load("join.json")
    nonce, swarm_id = bytes.fromhex(data["nonce"]), data["swarm_id"]
    assert bytes.fromhex(data["join_context"]) == JOIN_CONTEXT
    assert parse_server_message(data["challenge_json"]).nonce == data["nonce"]
    for case in data["cases"]:
        message = bytes.fromhex(case["message"])
        assert message == JOIN_CONTEXT + nonce + swarm_id.encode("ascii")
        pub = public_key_bytes(private_key_from_seed(bytes.fromhex(case["seed"])))
        assert pub.hex() == case["public_key"] and peer_id_of(pub) == case["peer_id"]
        verify(pub, bytes.fromhex(case["signature"]), message)
        join = parse_client_message(case["join_json"])
        assert isinstance(join, Join)
        assert (join.public_key, join.signature, join.swarm_id) == (case["public_key"], case["signature"], swarm_id)


LINK = _load("link.json")


@pytest.mark.parametrize("case", LINK["fingerprint_cases"], ids=lambda c: c["name"])
def test_sdp_fingerprints_are_canonical_or_refused(case: dict[str, Any]) -> None:
    if "reason" in case:
        with pytest.raises(ProtocolError) as exc:
            sdp_fingerprints(case["sdp"])
        assert exc.value.reason == case["reason"] == "bad_sdp"
    else:
        assert sdp_fingerprints(case["sdp"]) == case["fingerprints"]


def test_link_offer_and_answer_signatures_verify_from_their_inputs() -> None:
    swarm, offerer, answerer = LINK["swarm_id"], LINK["offerer"], LINK["answerer"]
    assert bytes.fromhex(LINK["offer_context"]) == OFFER_CONTEXT and bytes.fromhex(LINK["answer_context"]) == ANSWER_CONTEXT
    keys = {}
    for who in (offerer, answerer):
        pub = public_key_bytes(private_key_from_seed(bytes.fromhex(who["seed"])))
        assert pub.hex() == who["public_key"] and peer_id_of(pub) == who["peer_id"]
        keys[who["peer_id"]] = pub
    o, a = LINK["offer"], LINK["answer"]
    ids = (swarm + offerer["peer_id"] + answerer["peer_id"]).encode("ascii")
    assert sdp_fingerprints(o["sdp"]) == o["fingerprints"] and len(o["fingerprints"]) == 3
    assert bytes.fromhex(o["message"]) == OFFER_CONTEXT + ids + bytes.fromhex(o["nonce"]) + "\n".join(o["fingerprints"]).encode()
    verify(keys[offerer["peer_id"]], bytes.fromhex(o["signature"]), bytes.fromhex(o["message"]))
    back = (swarm + answerer["peer_id"] + offerer["peer_id"]).encode("ascii")
    assert bytes.fromhex(a["message"]) == (ANSWER_CONTEXT + back + bytes.fromhex(a["nonce"]) + bytes.fromhex(o["nonce"])
                                           + "\n".join(a["fingerprints"]).encode())  # fmt: skip
    assert a["offer_nonce"] == o["nonce"]
    verify(keys[answerer["peer_id"]], bytes.fromhex(a["signature"]), bytes.fromhex(a["message"]))
    offer, answer = parse_client_message(o["offer_json"]), parse_client_message(a["answer_json"])
    assert isinstance(offer, Offer) and isinstance(answer, Answer)
    assert (offer.sdp, offer.auth.nonce, offer.auth.signature) == (o["sdp"], o["nonce"], o["signature"])
    assert (answer.sdp, answer.auth.nonce, answer.auth.signature) == (a["sdp"], a["nonce"], a["signature"])
    # a man in the middle's SDP: the offerer's signature does not cover its fingerprints
    mitm = bytes.fromhex(LINK["mitm_offer_message"])
    assert mitm.startswith(OFFER_CONTEXT + ids + bytes.fromhex(o["nonce"])) and mitm != bytes.fromhex(o["message"])
    assert sdp_fingerprints(LINK["mitm_offer_sdp"]) != o["fingerprints"]
    with pytest.raises(SignatureError):
        verify(keys[offerer["peer_id"]], bytes.fromhex(o["signature"]), mitm)


RECEIPT = _load("receipt.json")


@pytest.mark.parametrize("case", RECEIPT["cases"], ids=lambda c: c["name"])
def test_receipt_signatures_verify_from_their_inputs(case: dict[str, Any]) -> None:
    from protocols.crypto import RECEIPT_CONTEXT, receipt_message
    from protocols.signaling import Report

    pub = public_key_bytes(private_key_from_seed(bytes.fromhex(case["seed"])))
    assert peer_id_of(pub) == case["voucher"] and bytes.fromhex(RECEIPT["receipt_context"]) == RECEIPT_CONTEXT
    session = bytes.fromhex(RECEIPT["session"])
    message = receipt_message(RECEIPT["swarm_id"], case["voucher"], case["peer_id"], session, case["frames"])
    assert message.hex() == case["message"] and len(message) == 24 + 96 + 8 + 8
    assert message.endswith(session + case["frames"].to_bytes(8, "big"))
    verify(pub, bytes.fromhex(case["signature"]), message)
    with pytest.raises(SignatureError):
        verify(pub, bytes.fromhex(case["signature"]), bytes.fromhex(case["inflated_message"]))
    report = parse_client_message(case["report_json"])
    assert isinstance(report, Report)
    (receipt,) = report.receipts
    assert (receipt.peer_id, receipt.session, receipt.frames, receipt.signature) == (
        case["peer_id"], RECEIPT["session"], case["frames"], case["signature"])  # fmt: skip


@pytest.mark.parametrize("shard", _load("dataset.json")["shards"], ids=lambda s: s["name"])
def test_dataset_shard_encodes_and_decodes(shard: dict[str, Any]) -> None:
    dtype = np.uint8 if shard["x_dtype"] == 0 else np.float32
    x = np.asarray(shard["x"], dtype=dtype).reshape(shard["x_shape"])
    y = np.asarray(shard["y"], dtype=np.float32 if shard["y_dtype"] else np.uint8).reshape(shard["y_shape"])
    blob = bytes.fromhex(shard["encoded"])
    assert encode_shard(x, y) == blob and sha256(blob).hex() == shard["sha256"]
    assert blob[4] == (2 if shard["y_dtype"] else 1)  # float targets: version 2; class labels: version 1
    xd, yd = decode_shard(blob)
    np.testing.assert_array_equal(xd.ravel(), np.asarray(shard["decoded_x"], dtype=np.float32))
    assert yd.ravel().tolist() == shard["decoded_y"] == shard["y"]


@pytest.mark.parametrize("case", _load("codecs.json")["cases"], ids=lambda c: f"{c['codec_name']}-{c['name']}")
def test_codec_vector_encodes_and_decodes(case: dict[str, Any]) -> None:
    codec = codec_for(case["codec"])
    tensors = _tensors(case["tensors"])
    encoded = bytes.fromhex(case["encoded"])
    assert codec.encode(tensors) == encoded
    assert codec.encoded_size([t.shape for t in tensors]) == len(encoded)
    _assert_tensors_equal(codec.decode(encoded, [t.shape for t in tensors]), case["decoded"])
