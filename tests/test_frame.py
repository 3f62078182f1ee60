"""Update frames: exact layout, round trips, and every way a frame must be refused.

decode_frame is fed bytes from any peer, so besides the named cases a fuzzer checks that
nothing but ProtocolError ever escapes it, including for frames an attacker signed itself.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import PROTOCOL_VERSION
from protocols.codecs import CodecId, codec_for
from protocols.crypto import private_key_from_seed, public_key_bytes, sha256, sign, verify
from protocols.errors import ProtocolError, SignatureError
from protocols.frame import (
    FIXED_HEADER_SIZE,
    MAX_NDIM,
    MAX_TENSORS,
    Frame,
    FrameHeader,
    FrameKind,
    build_frame,
    decode_frame,
    parse_header,
)

from rogue import hostile_frame

FUZZ = settings(database=None, deadline=None, max_examples=300)
SENDER = private_key_from_seed(b"\x11" * 32)
STRANGER = private_key_from_seed(b"\x33" * 32)
RECEIVER = public_key_bytes(private_key_from_seed(b"\x22" * 32))
SWARM, MODEL = b"\x01" * 16, b"\x02" * 32
SHAPES = [(3, 2), (4,), ()]
# offsets of the fixed header, as tabled in docs/PROTOCOL.md
OFFSETS = {
    "magic": (0, 4), "version": (4, 5), "kind": (5, 6), "codec": (6, 7), "flags": (7, 8),
    "swarm_id": (8, 24), "model_id": (24, 56), "sender": (56, 88), "receiver": (88, 120),
    "session": (120, 128), "seq": (128, 136), "exchange_id": (136, 144), "sample_weight": (144, 152),
    "step": (152, 160), "payload_len": (160, 164), "n_tensors": (164, 166),
}  # fmt: skip


def _tensors(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def _frame(key=SENDER, **over: object) -> Frame:  # type: ignore[no-untyped-def]
    fields: dict[str, object] = dict(
        kind=FrameKind.EXCHANGE_REQUEST, swarm_id=SWARM, model_id=MODEL, receiver=RECEIVER,
        session=0xDEADBEEF, seq=5, exchange_id=9, sample_weight=1234.5, step=77, tensors=_tensors(),
    )  # fmt: skip
    fields.update(over)
    return build_frame(key, **fields)  # type: ignore[arg-type]


def _signed(header: FrameHeader, payload: bytes, key=SENDER) -> bytes:  # type: ignore[no-untyped-def]
    """Sign an arbitrary header, as a hostile but key-holding peer could."""
    header = replace(header, sender=public_key_bytes(key), signature=b"")
    return header.signed_bytes() + sign(key, header.signed_bytes()) + payload


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def _reason(data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        frame = decode_frame(data)
        frame.tensors()
    return info.value.reason


# ---- layout and round trips --------------------------------------------------------------


def test_fixed_header_fields_sit_at_their_documented_offsets() -> None:
    frame = _frame()
    data = frame.encode()
    field = {name: data[a:b] for name, (a, b) in OFFSETS.items()}
    assert FIXED_HEADER_SIZE == 166
    assert field["magic"] == b"GSWF" and field["version"] == bytes([PROTOCOL_VERSION])
    assert field["kind"] == b"\x01" and field["codec"] == b"\x00" and field["flags"] == b"\x00"
    assert (field["swarm_id"], field["model_id"]) == (SWARM, MODEL)
    assert (field["sender"], field["receiver"]) == (public_key_bytes(SENDER), RECEIVER)
    assert struct.unpack(">QQQdQ", b"".join(field[k] for k in ("session", "seq", "exchange_id", "sample_weight", "step"))) == (
        0xDEADBEEF, 5, 9, 1234.5, 77)  # fmt: skip
    assert struct.unpack(">IH", field["payload_len"] + field["n_tensors"]) == (len(frame.payload), 3)
    # layout: (ndim u8, ndim x u32) per tensor, then the digest, then the signature, then the payload
    layout = b"\x02" + struct.pack(">II", 3, 2) + b"\x01" + struct.pack(">I", 4) + b"\x00"
    end = FIXED_HEADER_SIZE + len(layout)
    assert data[FIXED_HEADER_SIZE:end] == layout
    assert data[end : end + 32] == sha256(frame.payload)
    assert data[end + 32 : end + 96] == frame.header.signature
    assert data[end + 96 :] == frame.payload == b"".join(t.astype("<f4").tobytes() for t in _tensors())


@pytest.mark.parametrize("kind", list(FrameKind))
@pytest.mark.parametrize("codec", list(CodecId))
def test_round_trip_every_kind_and_codec(kind: FrameKind, codec: CodecId) -> None:
    tensors = [] if kind in (FrameKind.EXCHANGE_DECLINE, FrameKind.PULL_REQUEST) else _tensors(1)
    sent = _frame(kind=kind, codec=int(codec), tensors=tensors)
    got = decode_frame(sent.encode())
    assert got.header == sent.header and got.payload == sent.payload
    assert got.header.shapes == tuple(t.shape for t in tensors)
    tolerance = {CodecId.FLOAT32: 0.0, CodecId.FLOAT16: 2e-3, CodecId.INT8: 0.03}[codec]
    for a, b in zip(got.tensors(), tensors, strict=True):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance * max(1.0, float(np.abs(b).max())))


def test_parse_header_returns_the_payload_offset() -> None:
    frame = _frame()
    header, offset = parse_header(frame.encode())
    assert header == frame.header and offset == len(frame.header.encode())


# ---- signatures ------------------------------------------------------------------------


def test_signature_is_ed25519_over_every_header_byte_before_it() -> None:
    frame = _frame()
    verify(public_key_bytes(SENDER), frame.header.signature, frame.encode()[: len(frame.header.signed_bytes())])
    assert decode_frame(frame.encode()).header.signature == frame.header.signature


def _header_bytes_after_structure() -> list[int]:
    """Header bytes whose change keeps the frame parseable: only the signature can catch it."""
    n = len(_frame().header.signed_bytes())
    structural = set(range(0, 7)) | {144, 164, 165} | set(range(166, n - 32))  # magic..codec, weight sign, layout
    return [i for i in range(n) if i not in structural]


@pytest.mark.parametrize("index", _header_bytes_after_structure())
def test_a_tampered_header_byte_breaks_the_signature(index: int) -> None:
    assert _reason(_flip(_frame().encode(), index)) == "bad_signature"


def test_any_tampered_header_byte_is_refused() -> None:
    data = _frame().encode()
    for index in range(len(_frame().header.encode())):
        for mask in (0x01, 0x80):
            with pytest.raises(ProtocolError):
                decode_frame(_flip(data, index, mask))


def test_a_tampered_payload_is_a_bad_digest() -> None:
    data = _frame().encode()
    for index in (-1, len(data) - len(_frame().payload)):
        with pytest.raises(SignatureError) as info:
            decode_frame(_flip(data, index))
        assert info.value.reason == "bad_digest"


def test_another_key_cannot_claim_to_be_the_sender() -> None:
    """A stranger signs with its own key but writes the sender's key into the header."""
    forged = bytearray(_frame(key=STRANGER).encode())
    forged[56:88] = public_key_bytes(SENDER)
    assert _reason(bytes(forged)) == "bad_signature"
    # and the genuine sender's signature moved onto the stranger's frame does not verify either
    mine, theirs = _frame(), _frame(key=STRANGER, seq=6)
    sig_at = len(mine.header.signed_bytes())
    spliced = theirs.header.signed_bytes() + mine.header.signature + theirs.payload
    assert sig_at == len(theirs.header.signed_bytes())
    assert _reason(spliced) == "bad_signature"


def test_a_frame_signed_by_its_claimed_key_decodes() -> None:
    """decode_frame proves who signed; membership is the receiver's check (unknown_sender)."""
    frame = decode_frame(_frame(key=STRANGER).encode())
    assert frame.header.sender == public_key_bytes(STRANGER)


# ---- values and layout -----------------------------------------------------------------


def _hostile(tensors: list[np.ndarray], codec: int = int(CodecId.FLOAT32)) -> bytes:
    """A frame whose signed payload holds ``tensors`` as they are (our encoders refuse non-finite values)."""
    fields = dict(kind=FrameKind.EXCHANGE_REQUEST, swarm_id=SWARM, model_id=MODEL, receiver=RECEIVER,
                  session=0xDEADBEEF, seq=5, exchange_id=9, sample_weight=1234.5, step=77)  # fmt: skip
    return hostile_frame(SENDER, tensors, codec, **fields)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad: float) -> None:
    tensors = _tensors()
    tensors[0][1, 1] = bad
    with pytest.raises(ValueError, match="non-finite"):
        _frame(tensors=tensors)  # our own encoder refuses to send them
    frame = decode_frame(_hostile(tensors))  # the bytes are genuine, signed by a sender that skips that check
    with pytest.raises(ProtocolError) as info:
        frame.tensors()
    assert info.value.reason == "non_finite"


def test_float16_overflow_arrives_as_non_finite() -> None:
    """A sender's weights beyond 65504 become inf in float16: our encoder refuses, a receiver must too."""
    tensors = _tensors()
    tensors[1][0] = 1e5
    with pytest.raises(ValueError, match="float16"):
        _frame(tensors=tensors, codec=int(CodecId.FLOAT16))
    assert _reason(_hostile(tensors, int(CodecId.FLOAT16))) == "non_finite"


def test_an_int8_scale_that_is_not_finite_is_rejected() -> None:
    payload = struct.pack("<f", np.inf) + bytes([1, 2, 3, 4])
    header = replace(_frame(codec=int(CodecId.INT8), tensors=[np.ones(4, np.float32)]).header,
                     payload_len=len(payload), digest=sha256(payload))  # fmt: skip
    assert _reason(_signed(header, payload)) == "non_finite"


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -1.0, 2e9])
def test_a_sample_weight_outside_its_range_is_rejected(weight: float) -> None:
    assert _reason(_frame(sample_weight=weight).encode()) == "non_finite"


def _with_shapes(shapes: tuple[tuple[int, ...], ...], payload: bytes, codec: int = 0) -> bytes:
    header = replace(_frame().header, shapes=shapes, payload_len=len(payload), digest=sha256(payload), codec=codec)
    return _signed(header, payload)


@pytest.mark.parametrize(
    ("shapes", "payload_len"),
    [
        (((3, 2), (4,), ()), 4 * 10),  # one value short
        (((3, 2),), 4 * 7),  # one value too many
        (((65536, 65536, 65536, 65536),), 0),  # 2**64 values: must not wrap to 0
        (((0, 2**31, 2**31),), 0),  # no values, yet no array can have this shape
        (((4294967295,) * 8,), 4),
    ],
)
def test_a_layout_that_does_not_match_the_payload_is_bad_shape(shapes: tuple, payload_len: int) -> None:
    assert _reason(_with_shapes(shapes, b"\x00" * payload_len)) == "bad_shape"


@pytest.mark.parametrize("kind", [FrameKind.EXCHANGE_DECLINE, FrameKind.PULL_REQUEST, FrameKind.EXCHANGE_REQUEST])
def test_a_frame_without_tensors_carries_no_payload(kind: FrameKind) -> None:
    """Declines are never decoded into tensors, so decode_frame itself must refuse stray bytes."""
    data = replace(_frame().header, kind=kind, shapes=(), payload_len=8, digest=sha256(b"\x00" * 8))
    with pytest.raises(ProtocolError) as info:
        decode_frame(_signed(data, b"\x00" * 8))
    assert info.value.reason == "bad_shape"


def test_too_many_dimensions_or_tensors_is_bad_shape() -> None:
    assert _reason(_with_shapes(((1,) * (MAX_NDIM + 1),), b"\x00" * 4)) == "bad_shape"
    assert _reason(_with_shapes(((),) * (MAX_TENSORS + 1), b"\x00" * 4 * (MAX_TENSORS + 1))) == "bad_shape"


def test_unknown_codec_kind_and_version_are_refused_by_reason() -> None:
    data = _frame().encode()
    assert _reason(_flip(data, 6, 0x08)) == "bad_codec"  # codec 8
    assert _reason(_flip(data, 5, 0x40)) == "malformed"  # kind 0x41
    assert _reason(_flip(data, 4, 0x02)) == "bad_version"
    assert _reason(b"XSWF" + data[4:]) == "malformed"


def test_payload_longer_or_shorter_than_declared_is_refused() -> None:
    data = _frame().encode()
    assert _reason(data + b"\x00") == "bad_length"
    assert _reason(data[:-1]) == "bad_length"


def test_every_truncation_raises_protocol_error() -> None:
    data = _frame().encode()
    for n in range(len(data)):
        with pytest.raises(ProtocolError):
            decode_frame(data[:n])


# ---- fuzzing: nothing but ProtocolError escapes ---------------------------------------------

VALID = _frame().encode()


def _decode_fully(data: bytes) -> None:
    try:
        decode_frame(data).tensors()
    except ProtocolError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda b: b"GSWF\x01" + b)))
def test_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _decode_fully(data)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, len(VALID) + 8),
)
def test_mutations_of_a_valid_frame_are_refused(edits: list[tuple[int, int]], length: int) -> None:
    mutated = bytearray(VALID)
    for index, value in edits:
        mutated[index] = value
    data = (bytes(mutated) + b"\x00" * 8)[:length]
    if data == VALID:
        decode_frame(data)
        return
    with pytest.raises(ProtocolError):
        decode_frame(data)


@settings(FUZZ, max_examples=1000)
@given(
    kind=st.sampled_from(list(FrameKind)),
    codec=st.integers(0, 2),
    shapes=st.lists(st.lists(st.sampled_from([0, 1, 2, 3, 255, 65536, 2**31, 2**32 - 1]), max_size=9), max_size=5),
    fit=st.booleans(),
    noise=st.binary(max_size=64),
    declared=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    weight=st.one_of(st.floats(0, 1e9), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_self_signed_hostile_frames_only_raise_protocol_error(
    kind: FrameKind, codec: int, shapes: list[list[int]], fit: bool, noise: bytes, declared: int | None, weight: float
) -> None:
    """A member signs whatever it likes: the signature verifies, so every later check must hold."""
    layout = tuple(tuple(s) for s in shapes)
    need = codec_for(codec).encoded_size(layout) if all(len(s) <= MAX_NDIM for s in layout) else -1
    payload = (noise * (need // max(1, len(noise)) + 1))[:need] if fit and 0 <= need <= 4096 and noise else noise
    header = replace(_frame().header, kind=kind, codec=codec, shapes=layout,
                     payload_len=len(payload) if declared is None else declared, digest=sha256(payload),
                     sample_weight=weight)  # fmt: skip
    _decode_fully(_signed(header, payload))
