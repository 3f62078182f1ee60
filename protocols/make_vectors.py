"""Deterministic test vectors of the wire contract, for other implementations to check byte for byte.

    python -m protocols.make_vectors

rewrites ``protocols/vectors/*.json``, ``protocols/schema/*.schema.json`` and the browser's copy of
the schemas, ``browser_peer/src/protocol/schemas.js`` (``protocols/contract.py``). Every
input is in the files (seeds, fields, tensor values), so a JavaScript peer can rebuild each
frame, chunk, signature and digest and compare hex. Ed25519 (RFC 8032) is deterministic, so
signatures are reproducible. ``tests/test_vectors.py`` fails when the committed files differ
from what this module builds.

JSON conventions: bytes are lowercase hex; u64 fields are decimal *strings* (JavaScript
numbers lose precision above 2**53; use ``BigInt``); tensor values are float32 values written
as JSON numbers (exact: every float32 is a double). No file holds NaN or infinities.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import PROTOCOL_VERSION
from .chunking import MAX_MESSAGE_SIZE, split_frame
from .codecs import CodecId, codec_for
from .crypto import (
    ANSWER_CONTEXT,
    JOIN_CONTEXT,
    MANIFEST_CONTEXT,
    OFFER_CONTEXT,
    RECEIPT_CONTEXT,
    answer_message,
    join_message,
    manifest_message,
    offer_message,
    peer_id_of,
    private_key_from_seed,
    public_key_bytes,
    publisher_fingerprint,
    receipt_message,
    sha256,
    sign,
)
from .errors import ProtocolError
from .contract import contract_files
from .dataset import decode_shard, encode_shard
from .frame import FrameKind, build_frame
from .manifest import (
    BlobRef,
    DatasetSpec,
    Manifest,
    ModelSpec,
    ShardRef,
    WeightSpec,
    envelope_json,
    sign_manifest,
)
from .signaling import Answer, Challenge, Join, LinkAuth, Offer, Receipt, Report, dump, schema_text, sdp_fingerprints

PACKAGE = Path(__file__).resolve().parent
VECTORS_DIR = PACKAGE / "vectors"
SCHEMA_PATH = PACKAGE / "schema" / "signaling.schema.json"

SEEDS: dict[str, bytes] = {
    "alice": bytes(range(32)),
    "bob": bytes(range(32, 64)),
    "carol": bytes([0xC0] * 32),
    "publisher": bytes(range(0xE0, 0x100)),
    # RFC 8032 section 7.1, TEST 1: public key d75a9801..., signature of the empty message e5564300...
    "rfc8032_test1": bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
}
SWARM_ID = bytes.fromhex("5eed0000000000000000000000000001")
MODEL_ID = sha256(b"gossip-swarm test vector model")
TRANSFER_ID = 7
CHUNK_MESSAGE_SIZE = 64


def _f32(values: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(tuple(shape))


def _values(a: np.ndarray) -> list[float]:
    """float32 values as JSON numbers (float32 -> double is exact)."""
    out = [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]
    if not all(np.isfinite(out)):
        raise ValueError("test vectors must stay finite: JSON has no NaN or Infinity")
    return out


def _tensor_json(a: np.ndarray) -> dict[str, Any]:
    return {"shape": list(a.shape), "values": _values(a)}


def _key(name: str) -> Any:
    return private_key_from_seed(SEEDS[name])


# ---- keys ---------------------------------------------------------------------------------


def keys_vectors() -> dict[str, Any]:
    keys = []
    for name, seed in SEEDS.items():
        pub = public_key_bytes(private_key_from_seed(seed))
        keys.append({"name": name, "seed": seed.hex(), "public_key": pub.hex(), "peer_id": peer_id_of(pub)})
    messages = [b"", b"gossip-swarm", bytes(range(64))]
    signatures = [
        {"key": name, "message": m.hex(), "signature": sign(_key(name), m).hex()}
        for name in ("rfc8032_test1", "alice")
        for m in messages
    ]
    return {
        "description": "Ed25519 (RFC 8032) keys from 32-byte seeds; peer_id = hex(SHA-256(public_key)[:16]).",
        "protocol_version": PROTOCOL_VERSION,
        "keys": keys,
        "signatures": signatures,
    }


# ---- frames -------------------------------------------------------------------------------

_FRAME_CASES: list[dict[str, Any]] = [
    {
        "name": "exchange_request_float32",
        "sender": "alice", "receiver": "bob", "kind": FrameKind.EXCHANGE_REQUEST, "codec": CodecId.FLOAT32,
        "session": 0x0123456789ABCDEF, "seq": 1, "exchange_id": 1, "sample_weight": 1500.0, "step": 50,
        "tensors": [([2, 3], [0.5, -1.25, 3.0, 0.0, -0.0, 1e-3]), ([3], [1.0, 2.0, -3.5]), ([], [42.0])],
    },
    {
        "name": "exchange_response_float32",
        "sender": "bob", "receiver": "alice", "kind": FrameKind.EXCHANGE_RESPONSE, "codec": CodecId.FLOAT32,
        "session": 18446744073709551615, "seq": 9007199254740993, "exchange_id": 1, "sample_weight": 750.5,
        "step": 120,
        "tensors": [([2, 3], [0.25, 0.25, -0.75, 8.0, 1e-6, -1e6]), ([3], [0.0, 0.0, 0.0])],
    },
    {
        "name": "exchange_decline",
        "sender": "bob", "receiver": "alice", "kind": FrameKind.EXCHANGE_DECLINE, "codec": CodecId.FLOAT32,
        "session": 2, "seq": 3, "exchange_id": 77, "sample_weight": 0.0, "step": 0, "tensors": [],
    },
    {
        "name": "exchange_propose",
        "sender": "alice", "receiver": "bob", "kind": FrameKind.EXCHANGE_PROPOSE, "codec": CodecId.FLOAT32,
        "session": 2, "seq": 4, "exchange_id": 78, "sample_weight": 0.0, "step": 0, "tensors": [],
    },
    {
        "name": "exchange_accept",
        "sender": "bob", "receiver": "alice", "kind": FrameKind.EXCHANGE_ACCEPT, "codec": CodecId.FLOAT32,
        "session": 2, "seq": 5, "exchange_id": 78, "sample_weight": 0.0, "step": 0, "tensors": [],
    },
    {
        "name": "pull_request",
        "sender": "carol", "receiver": "alice", "kind": FrameKind.PULL_REQUEST, "codec": CodecId.FLOAT32,
        "session": 5, "seq": 1, "exchange_id": 1, "sample_weight": 0.0, "step": 0, "tensors": [],
    },
    {
        "name": "pull_response_float32",
        "sender": "alice", "receiver": "carol", "kind": FrameKind.PULL_RESPONSE, "codec": CodecId.FLOAT32,
        "session": 0x0123456789ABCDEF, "seq": 2, "exchange_id": 1, "sample_weight": 1500.0, "step": 50,
        "tensors": [([1, 2], [3.0, -4.0])],
    },
    {
        "name": "exchange_request_float16",
        "sender": "alice", "receiver": "bob", "kind": FrameKind.EXCHANGE_REQUEST, "codec": CodecId.FLOAT16,
        "session": 11, "seq": 4, "exchange_id": 2, "sample_weight": 60000.0, "step": 7,
        "tensors": [([2, 2], [0.1, -2.5, 65504.0, 1.00048828125]), ([2], [5.960464477539063e-08, -1e-3])],
    },
    {
        "name": "exchange_request_int8",
        "sender": "alice", "receiver": "bob", "kind": FrameKind.EXCHANGE_REQUEST, "codec": CodecId.INT8,
        "session": 11, "seq": 5, "exchange_id": 3, "sample_weight": 32.0, "step": 8,
        "tensors": [([2, 3], [0.5, -1.0, 0.25, 0.0, 0.75, -0.125]), ([2], [0.0, 0.0]), ([3], [-3.0, 1.0, 2.5])],
    },
]  # fmt: skip


def _frame_vector(case: dict[str, Any]) -> dict[str, Any]:
    tensors = [_f32(values, shape) for shape, values in case["tensors"]]
    key = _key(case["sender"])
    receiver = public_key_bytes(_key(case["receiver"]))
    frame = build_frame(
        key, kind=case["kind"], swarm_id=SWARM_ID, model_id=MODEL_ID, receiver=receiver,
        session=case["session"], seq=case["seq"], exchange_id=case["exchange_id"],
        sample_weight=case["sample_weight"], step=case["step"], tensors=tensors, codec=int(case["codec"]),
    )  # fmt: skip
    h = frame.header
    decoded = frame.tensors()
    return {
        "name": case["name"],
        "sender": case["sender"],
        "sender_seed": SEEDS[case["sender"]].hex(),
        "fields": {
            "version": h.version,
            "kind": int(h.kind),
            "kind_name": h.kind.name,
            "codec": int(h.codec),
            "flags": h.flags,
            "swarm_id": h.swarm_id.hex(),
            "model_id": h.model_id.hex(),
            "sender": h.sender.hex(),
            "receiver": h.receiver.hex(),
            "session": str(h.session),
            "seq": str(h.seq),
            "exchange_id": str(h.exchange_id),
            "sample_weight": h.sample_weight,
            "step": str(h.step),
            "payload_len": h.payload_len,
            "shapes": [list(s) for s in h.shapes],
        },
        "tensors": [_tensor_json(t) for t in tensors],
        "decoded": [_tensor_json(t) for t in decoded],
        "signed_header": h.signed_bytes().hex(),
        "header": h.encode().hex(),
        "payload": frame.payload.hex(),
        "digest": h.digest.hex(),
        "signature": h.signature.hex(),
        "frame": frame.encode().hex(),
    }


def frames_vectors() -> dict[str, Any]:
    return {
        "description": (
            "Signed update frames. Rebuild `frame` from sender_seed, fields and tensors (encode tensors "
            "with the codec, SHA-256 the payload, sign `signed_header` with Ed25519); decoding `frame` "
            "must give `fields` and `decoded`. u64 fields are decimal strings."
        ),
        "protocol_version": PROTOCOL_VERSION,
        "frames": [_frame_vector(c) for c in _FRAME_CASES],
    }


# ---- chunks -------------------------------------------------------------------------------


def chunks_vectors() -> dict[str, Any]:
    cases = []
    for name in ("exchange_request_float32", "exchange_decline"):
        case = next(c for c in _FRAME_CASES if c["name"] == name)
        data = bytes.fromhex(_frame_vector(case)["frame"])
        chunks = list(split_frame(data, TRANSFER_ID, CHUNK_MESSAGE_SIZE))
        cases.append({
            "name": name,
            "frame": data.hex(),
            "transfer_id": TRANSFER_ID,
            "message_size": CHUNK_MESSAGE_SIZE,
            "chunks": [c.hex() for c in chunks],
        })  # fmt: skip
    empty = list(split_frame(b"", TRANSFER_ID + 1, CHUNK_MESSAGE_SIZE))
    cases.append({"name": "empty", "frame": "", "transfer_id": TRANSFER_ID + 1,
                  "message_size": CHUNK_MESSAGE_SIZE, "chunks": [c.hex() for c in empty]})  # fmt: skip
    return {
        "description": (
            "Frames split into data-channel messages of at most message_size bytes: "
            "'GC' | transfer_id u32 | index u32 | count u32 | total_len u32 (big-endian) | data."
        ),
        "protocol_version": PROTOCOL_VERSION,
        "cases": cases,
    }


# ---- dataset shards -----------------------------------------------------------------------


def _shard_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    x_u8 = np.array([[[0, 1], [127, 255]], [[10, 20], [30, 40]], [[255, 254], [2, 3]]], dtype=np.uint8)
    x_f32 = _f32([0.5, -1.0, 2.25, 0.0, 1e-3, -7.5], [2, 3])
    return [
        ("uint8_images", x_u8, np.array([0, 1, 9], dtype=np.uint8)),
        ("float32_features", x_f32, np.array([3, 0], dtype=np.uint8)),
        ("float32_targets", x_u8[:2], _f32([0.5, -1.25, 3.0, 1e-3], [2, 2])),  # version 2: regression targets
    ]


def dataset_vectors() -> dict[str, Any]:
    shards = []
    for name, x, y in _shard_cases():
        blob = encode_shard(x, y)
        xd, yd = decode_shard(blob)
        shards.append({
            "name": name,
            "x_dtype": 0 if x.dtype == np.uint8 else 1,
            "x_shape": list(x.shape),
            "x": [int(v) for v in x.ravel()] if x.dtype == np.uint8 else _values(x),
            "y_dtype": 1 if y.dtype.kind == "f" else 0,
            "y_shape": list(y.shape),
            "y": _values(y) if y.dtype.kind == "f" else [int(v) for v in y],
            "encoded": blob.hex(),
            "sha256": sha256(blob).hex(),
            "decoded_x": _values(xd),
            "decoded_y": _values(yd) if yd.dtype.kind == "f" else [int(v) for v in yd],
        })  # fmt: skip
    return {
        "description": (
            "Dataset shard blobs. decoded_x is float32: uint8 features divided by 255 "
            "(float32(x / 255)), float32 features unchanged. Class labels (y_dtype 0) make a version-1 shard, "
            "float32 targets (y_dtype 1, y_shape [n, width]) a version-2 shard; decoded_y is flat, row-major."
        ),
        "protocol_version": PROTOCOL_VERSION,
        "shards": shards,
    }


# ---- manifest -----------------------------------------------------------------------------

_TOPOLOGY: dict[str, Any] = {
    "class_name": "Sequential",
    "config": {
        "name": "sequential",
        "layers": [
            {"class_name": "InputLayer",
             "config": {"batch_input_shape": [None, 4], "dtype": "float32", "sparse": False, "name": "input_1"}},
            {"class_name": "Dense",
             "config": {"name": "dense", "trainable": True, "dtype": "float32", "units": 3,
                        "activation": "softmax", "use_bias": True,
                        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
                        "bias_initializer": {"class_name": "Zeros", "config": {}},
                        "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
                        "kernel_constraint": None, "bias_constraint": None}},
        ],
    },
    "keras_version": "2.19.0",
    "backend": "tensorflow",
}  # fmt: skip
_WEIGHTS = [("dense/kernel", [4, 3]), ("dense/bias", [3])]


def _initial_weights() -> list[np.ndarray]:
    kernel = _f32([(i - 6) / 8 for i in range(12)], [4, 3])
    return [kernel, np.zeros(3, np.float32)]


def _test_shard_blob() -> bytes:
    x = _f32([0.1 * i for i in range(8)], [2, 4])
    return encode_shard(x, np.array([0, 2], dtype=np.uint8))


def _train_shard_blob() -> bytes:
    x = _f32([(-1) ** i * 0.25 * i for i in range(12)], [3, 4])
    return encode_shard(x, np.array([1, 2, 0], dtype=np.uint8))


def manifest_vectors() -> dict[str, Any]:
    key = _key("publisher")
    weights = _initial_weights()
    blob = codec_for(CodecId.FLOAT32).encode(weights)
    train, test = _train_shard_blob(), _test_shard_blob()
    manifest = Manifest(
        swarm_id=SWARM_ID.hex(),
        name="test-vector softmax regression",
        publisher_key=public_key_bytes(key).hex(),
        model=ModelSpec(
            topology=_TOPOLOGY,
            weights=[WeightSpec(name=n, shape=s) for n, s in _WEIGHTS],
            initial_weights=BlobRef(digest=sha256(blob).hex(), size=len(blob)),
        ),
        dataset=DatasetSpec(
            name="tiny", input_shape=[4], num_classes=3,
            train_shards=[ShardRef(digest=sha256(train).hex(), size=len(train), num_samples=3)],
            test=ShardRef(digest=sha256(test).hex(), size=len(test), num_samples=2),
        ),  # fmt: skip
    )
    signed = sign_manifest(key, manifest)
    text = signed.manifest.encode("utf-8")
    return {
        "description": (
            "A signed manifest envelope. signature = Ed25519(publisher, MANIFEST_CONTEXT || SHA-256(utf8("
            "manifest))); model_id = hex(SHA-256(utf8(manifest))). Blobs are content-addressed by SHA-256."
        ),
        "protocol_version": PROTOCOL_VERSION,
        "manifest_context": MANIFEST_CONTEXT.hex(),
        "publisher_seed": SEEDS["publisher"].hex(),
        "publisher_key": public_key_bytes(key).hex(),
        "publisher_fingerprint": publisher_fingerprint(public_key_bytes(key)),
        "pinned_join_url": f"https://swarm.example/s/{SWARM_ID.hex()}#pk={publisher_fingerprint(public_key_bytes(key))}",
        "manifest": signed.manifest,
        "manifest_sha256": sha256(text).hex(),
        "signed_message": manifest_message(text).hex(),
        "signature": signed.signature,
        "model_id": signed.model_id,
        "envelope": envelope_json(signed),
        "initial_weights": [{"name": n, **_tensor_json(w)} for (n, _), w in zip(_WEIGHTS, weights, strict=True)],
        "blobs": {sha256(b).hex(): b.hex() for b in (blob, train, test)},
    }


# ---- join ---------------------------------------------------------------------------------


def join_vectors() -> dict[str, Any]:
    nonce = sha256(b"gossip-swarm test vector nonce")
    cases = []
    for name in ("alice", "bob"):
        key = _key(name)
        message = join_message(nonce, SWARM_ID.hex())
        signature = sign(key, message)
        join = Join(swarm_id=SWARM_ID.hex(), public_key=public_key_bytes(key).hex(), signature=signature.hex(),
                    client="browser")  # fmt: skip
        cases.append({
            "key": name,
            "seed": SEEDS[name].hex(),
            "public_key": public_key_bytes(key).hex(),
            "peer_id": peer_id_of(public_key_bytes(key)),
            "message": message.hex(),
            "signature": signature.hex(),
            "join_json": dump(join),
        })  # fmt: skip
    return {
        "description": (
            "Join proof: Ed25519 over JOIN_CONTEXT || nonce (32 raw bytes, hex-decoded from the challenge) "
            "|| swarm_id (its 32 ASCII hex characters)."
        ),
        "protocol_version": PROTOCOL_VERSION,
        "join_context": JOIN_CONTEXT.hex(),
        "nonce": nonce.hex(),
        "swarm_id": SWARM_ID.hex(),
        "challenge_json": dump(Challenge(nonce=nonce.hex())),
        "cases": cases,
    }


# ---- link authentication ------------------------------------------------------------------


def _fingerprint(algorithm: str, data: bytes) -> str:
    digest = {"sha-256": hashlib.sha256, "sha-384": hashlib.sha384, "sha-512": hashlib.sha512}[algorithm](data)
    return ":".join(f"{b:02X}" for b in digest.digest())


_CERT = b"gossip-swarm test vector DTLS certificate"  # stands in for a DER certificate: only its digests matter
_MITM_CERT = b"a man in the middle's certificate"
_SHA256 = _fingerprint("sha-256", _CERT)


def _aiortc_offer(cert: bytes) -> str:
    """An offer as aiortc writes it: one data channel section, fingerprints of three algorithms."""
    return (
        "v=0\r\no=- 4005150920 4005150920 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        "a=msid-semantic:WMS *\r\nm=application 42190 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\n"
        "a=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
        "a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 127.0.0.1 42190 typ host\r\n"
        "a=end-of-candidates\r\na=ice-ufrag:L6no\r\na=ice-pwd:rp68QPBSMwiJoRM7e1QE1i\r\n"
        + "".join(f"a=fingerprint:{a} {_fingerprint(a, cert)}\r\n" for a in ("sha-256", "sha-384", "sha-512"))
        + "a=setup:actpass\r\n"
    )


_CHROMIUM_ANSWER = (
    "v=0\r\no=- 6215430651937853871 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "a=extmap-allow-mixed\r\na=msid-semantic: WMS\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\na=ice-ufrag:7Qm/\r\na=ice-pwd:0yZ6UyM2lBzO0CgWkM+ZeS3d\r\na=ice-options:trickle\r\n"
    f"a=fingerprint:sha-256 {_fingerprint('sha-256', b'chromium answer certificate')}\r\n"
    "a=setup:active\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
)

_FINGERPRINT_CASES: list[tuple[str, str]] = [
    ("aiortc_offer", _aiortc_offer(_CERT)),
    ("chromium_answer", _CHROMIUM_ANSWER),
    ("no_fingerprint", "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=setup:actpass\r\n"),
    # session and media level, letter case of algorithm and value, LF line ends: one canonical fingerprint
    ("case_duplicates_and_lf", (f"v=0\na=fingerprint:SHA-256 {_SHA256.lower()}\nm=application 9 UDP/DTLS/SCTP x\n"
                                f"a=fingerprint:sha-256 {_SHA256}\n")),
    # any line that looks like the attribute counts: indented, upper-case name, tab separator, trailing blanks
    ("attribute_case_and_blanks", (f"v=0\r\n \tA=FINGERPRINT:sha-384\t{_fingerprint('sha-384', _CERT)} \r\n"
                                   f"a=fingerprint:sha-1 {_fingerprint('sha-256', _CERT)[:59]}\r\n")),
    ("bare_cr", f"v=0\ra=fingerprint:sha-256 {_SHA256}\r\n"),
    ("line_separator", f"v=0\r\na=ice-pwd:x\u2028a=fingerprint:sha-256 {_SHA256}\r\n"),
    ("next_line", f"v=0\r\na=ice-pwd:x\x85a=fingerprint:sha-256 {_SHA256}\r\n"),
    ("form_feed", f"v=0\r\na=ice-pwd:x\x0ca=fingerprint:sha-256 {_SHA256}\r\n"),
    ("missing_value", "v=0\r\na=fingerprint:sha-256\r\n"),
    ("odd_hex", "v=0\r\na=fingerprint:sha-256 AB:C\r\n"),
    ("no_colons", "v=0\r\na=fingerprint:sha-256 ABCD\r\n"),
    ("no_break_space", f"v=0\r\na=fingerprint:sha-256\u00a0{_SHA256}\r\n"),
    ("three_fields", f"v=0\r\na=fingerprint:sha-256 {_SHA256} extra\r\n"),
    ("seventeen", "v=0\r\n" + "".join(f"a=fingerprint:sha-256 {i:02X}:00\r\n" for i in range(17))),
]  # fmt: skip


def _fingerprint_case(name: str, sdp: str) -> dict[str, Any]:
    try:
        return {"name": name, "sdp": sdp, "fingerprints": sdp_fingerprints(sdp)}
    except ProtocolError as exc:
        return {"name": name, "sdp": sdp, "reason": exc.reason}


def link_vectors() -> dict[str, Any]:
    alice, bob = _key("alice"), _key("bob")
    a_id, b_id = peer_id_of(public_key_bytes(alice)), peer_id_of(public_key_bytes(bob))
    swarm = SWARM_ID.hex()
    offer_nonce = sha256(b"gossip-swarm test vector offer nonce")
    answer_nonce = sha256(b"gossip-swarm test vector answer nonce")
    offer_sdp, answer_sdp = _aiortc_offer(_CERT), _CHROMIUM_ANSWER
    offer_fps, answer_fps = sdp_fingerprints(offer_sdp), sdp_fingerprints(answer_sdp)
    offer_msg = offer_message(swarm, a_id, b_id, offer_nonce, offer_fps)
    answer_msg = answer_message(swarm, b_id, a_id, answer_nonce, offer_nonce, answer_fps)
    offer_sig, answer_sig = sign(alice, offer_msg), sign(bob, answer_msg)
    offer = Offer(to=b_id, sdp=offer_sdp, auth=LinkAuth(nonce=offer_nonce.hex(), signature=offer_sig.hex()))
    answer = Answer(to=a_id, sdp=answer_sdp, auth=LinkAuth(nonce=answer_nonce.hex(), signature=answer_sig.hex()))
    mitm_sdp = _aiortc_offer(_MITM_CERT)
    return {
        "description": (
            "Link authentication. Canonical fingerprints of an SDP: every a=fingerprint line, '<algorithm "
            "lowercase> <VALUE UPPERCASE>', unique, sorted (cases with `reason` must be refused). "
            "offer message = OFFER_CONTEXT || swarm_id || sender || receiver (ASCII hex) || nonce || "
            "join('\\n', fingerprints); answer message = ANSWER_CONTEXT || swarm_id || sender || receiver || "
            "nonce || offer nonce || join('\\n', fingerprints). The offer's signature must not verify over "
            "mitm_offer_sdp's fingerprints."
        ),
        "protocol_version": PROTOCOL_VERSION,
        "offer_context": OFFER_CONTEXT.hex(),
        "answer_context": ANSWER_CONTEXT.hex(),
        "swarm_id": swarm,
        "offerer": {"key": "alice", "seed": SEEDS["alice"].hex(), "public_key": public_key_bytes(alice).hex(), "peer_id": a_id},
        "answerer": {"key": "bob", "seed": SEEDS["bob"].hex(), "public_key": public_key_bytes(bob).hex(), "peer_id": b_id},
        "offer": {"sdp": offer_sdp, "fingerprints": offer_fps, "nonce": offer_nonce.hex(), "message": offer_msg.hex(),
                  "signature": offer_sig.hex(), "offer_json": dump(offer)},
        "answer": {"sdp": answer_sdp, "fingerprints": answer_fps, "nonce": answer_nonce.hex(),
                   "offer_nonce": offer_nonce.hex(), "message": answer_msg.hex(), "signature": answer_sig.hex(),
                   "answer_json": dump(answer)},
        "mitm_offer_sdp": mitm_sdp,
        "mitm_offer_message": offer_message(swarm, a_id, b_id, offer_nonce, sdp_fingerprints(mitm_sdp)).hex(),
        "fingerprint_cases": [_fingerprint_case(name, sdp) for name, sdp in _FINGERPRINT_CASES],
    }  # fmt: skip


# ---- contribution board receipts ----------------------------------------------------------

_RECEIPT_CASES = [("first", "alice", "bob", 1), ("near_the_limit", "bob", "alice", 10**12 - 1), ("carol_vouches", "carol", "alice", 4097)]


def receipt_vectors() -> dict[str, Any]:
    swarm = SWARM_ID.hex()
    session = sha256(b"gossip-swarm test vector receipt session")[:8]
    cases = []
    for name, signer, credited, frames in _RECEIPT_CASES:
        key = _key(signer)
        voucher, peer = peer_id_of(public_key_bytes(key)), peer_id_of(public_key_bytes(_key(credited)))
        message = receipt_message(swarm, voucher, peer, session, frames)
        receipt = Receipt(peer_id=peer, session=session.hex(), frames=frames, signature=sign(key, message).hex())
        cases.append({
            "name": name, "key": signer, "seed": SEEDS[signer].hex(), "voucher": voucher, "peer_id": peer,
            "frames": frames, "message": message.hex(), "signature": receipt.signature,
            # the same signature over one frame more: what an over-claiming copy would need, must not verify
            "inflated_message": receipt_message(swarm, voucher, peer, session, frames + 1).hex(),
            "report_json": dump(Report(step=frames, test_acc=0.5, receipts=[receipt])),
        })  # fmt: skip
    return {
        "description": (
            "Contribution board receipts: message = RECEIPT_CONTEXT || swarm_id || voucher || peer_id (ASCII "
            "hex peer ids) || session (8 raw bytes) || frames (u64 big-endian), signed by the voucher's key; "
            "sent in a report. The signature must not verify over inflated_message."
        ),
        "protocol_version": PROTOCOL_VERSION,
        "receipt_context": RECEIPT_CONTEXT.hex(),
        "swarm_id": swarm,
        "session": session.hex(),
        "cases": cases,
    }


# ---- codecs -------------------------------------------------------------------------------

_CODEC_CASES: dict[CodecId, list[tuple[str, list[tuple[list[int], list[float]]]]]] = {
    CodecId.FLOAT32: [
        ("mixed", [([2, 3], [0.0, -1.5, 3.25, 0.1, -0.0, 100.0])]),
        ("zeros_and_scalar", [([4], [0.0, 0.0, 0.0, 0.0]), ([], [7.0])]),
        ("large_and_tiny", [([4], [3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -1.1754943508222875e-38])]),
    ],
    CodecId.FLOAT16: [
        ("mixed", [([2, 3], [0.0, -1.5, 3.25, 0.1, -0.0, 100.0])]),
        ("zeros", [([3], [0.0, 0.0, 0.0])]),
        # ties round to even: 1 + 2**-11 -> 1.0, 1 + 3 * 2**-11 -> 1 + 2**-9; 65519 -> 65504 (largest)
        ("rounding", [([5], [1.00048828125, 1.00146484375, 65504.0, 65519.0, -2049.0])]),
        # subnormals: 2**-24 (smallest), 2**-25 ties to 0, 3 * 2**-25 ties to 2**-23, 1e-8 underflows to 0
        ("subnormal", [([4], [5.960464477539063e-08, 2.9802322387695312e-08, 8.940696716308594e-08, 1e-8])]),
    ],
    CodecId.INT8: [
        ("mixed", [([2, 3], [0.0, -1.5, 3.25, 0.1, -0.0, 100.0])]),
        ("zeros", [([3], [0.0, 0.0, 0.0])]),
        # scale 1.0: halves round to even (2.5 -> 2, -2.5 -> -2, 0.5 -> 0, 1.5 -> 2)
        ("ties", [([7], [127.0, 2.5, -2.5, 0.5, 1.5, -0.5, -127.0])]),
        ("negative_peak_and_two_tensors", [([3], [-3.0, 1.0, 0.5]), ([2], [1e30, -1e30])]),
        # max|x| / 127 underflows to 0 in float32: scale is 1.0 and everything rounds to 0
        ("underflowing_scale", [([3], [1e-44, -1e-44, 0.0])]),
    ],
}


def codecs_vectors() -> dict[str, Any]:
    cases = []
    for codec_id, items in _CODEC_CASES.items():
        codec = codec_for(codec_id)
        for name, specs in items:
            tensors = [_f32(values, shape) for shape, values in specs]
            encoded = codec.encode(tensors)
            decoded = codec.decode(encoded, [t.shape for t in tensors])
            cases.append({
                "codec": int(codec_id),
                "codec_name": codec_id.name.lower(),
                "name": name,
                "tensors": [_tensor_json(t) for t in tensors],
                "encoded": encoded.hex(),
                "decoded": [_tensor_json(t) for t in decoded],
            })  # fmt: skip
    return {
        "description": (
            "Payload codecs over float32 inputs. float32/float16: little-endian IEEE values, "
            "round-to-nearest-even. int8: per tensor float32 LE scale = float32(max|x| / 127) (1.0 if that "
            "is 0), then int8 q = roundHalfEven(float32(x / scale)) clipped to [-127, 127]; decoded = "
            "float32(q * scale)."
        ),
        "protocol_version": PROTOCOL_VERSION,
        "cases": cases,
    }


def frame_size_vectors() -> dict[str, Any]:
    """Encoded lengths of real frames (``frame_size``), for every codec and a few layouts."""
    key = _key("alice")
    layouts = {"empty": [], "scalar": [()], "small": [(3, 2), (4,), ()], "default_mlp": [(784, 128), (128,), (128, 10), (10,)],
               "conv": [(3, 3, 1, 8), (8,), (1352, 10), (10,)]}  # fmt: skip
    cases = []
    for name, shapes in layouts.items():
        for codec_id in CodecId:
            tensors = [np.zeros(s, np.float32) for s in shapes]
            frame = build_frame(key, kind=FrameKind.EXCHANGE_REQUEST if shapes else FrameKind.EXCHANGE_DECLINE,
                                swarm_id=bytes(16), model_id=bytes(32), receiver=bytes(32), session=1, seq=1,
                                exchange_id=1, sample_weight=1.0, step=0, tensors=tensors, codec=int(codec_id))  # fmt: skip
            size = len(frame.encode())
            chunks = list(split_frame(frame.encode(), 1))
            cases.append({"name": f"{name}/{codec_id.name.lower()}", "shapes": [list(s) for s in shapes],
                          "codec": int(codec_id), "frame_size": size, "message_size": MAX_MESSAGE_SIZE,
                          "wire_size": sum(len(c) for c in chunks)})  # fmt: skip
    return {
        "description": ("Bytes of one encoded frame (header, layout, digest, signature, payload) for tensors of "
                        "these shapes under this codec, and with chunk headers at this message size (wire_size). "
                        "protocols.frame.frame_size and frame.js frameSize must give exactly these."),  # fmt: skip
        "protocol_version": PROTOCOL_VERSION,
        "cases": cases,
    }


# ---- files --------------------------------------------------------------------------------


def build_vectors() -> dict[str, Any]:
    """File name -> content of every vectors file."""
    return {
        "keys.json": keys_vectors(),
        "frames.json": frames_vectors(),
        "chunks.json": chunks_vectors(),
        "manifest.json": manifest_vectors(),
        "join.json": join_vectors(),
        "link.json": link_vectors(),
        "receipt.json": receipt_vectors(),
        "dataset.json": dataset_vectors(),
        "codecs.json": codecs_vectors(),
        "frame_size.json": frame_size_vectors(),
    }


def render(content: Any) -> str:
    return json.dumps(content, indent=2, allow_nan=False, ensure_ascii=True) + "\n"


def expected_files() -> dict[Path, str]:
    """Every generated file and its exact text."""
    files = {VECTORS_DIR / name: render(content) for name, content in build_vectors().items()}
    files[SCHEMA_PATH] = schema_text()
    files.update(contract_files(render))  # manifest schema, the browser's schema module, contract.json
    return files


def main() -> None:
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {path.relative_to(PACKAGE.parent)}")


if __name__ == "__main__":
    main()
