"""Payload codecs: float32 is exact; float16 and int8 stay within their stated error bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocols.codecs import CODECS, CodecId, codec_for
from protocols.errors import ProtocolError

FUZZ = settings(database=None, deadline=None, max_examples=300)
F16_MAX = 65504.0
F16_MIN_NORMAL = 2.0**-14


def _round_trip(codec_id: CodecId, tensors: list[np.ndarray]) -> list[np.ndarray]:
    codec = codec_for(codec_id)
    payload = codec.encode(tensors)
    assert len(payload) == codec.encoded_size([t.shape for t in tensors])
    return codec.decode(payload, [t.shape for t in tensors])


def _arrays(limit: float) -> st.SearchStrategy[np.ndarray]:
    limit = float(np.float32(limit))  # hypothesis wants float32-exact bounds
    return hnp.arrays(
        np.float32, hnp.array_shapes(min_dims=0, max_dims=3, max_side=6),
        elements=st.floats(-limit, limit, width=32, allow_subnormal=True),
    )  # fmt: skip


@FUZZ
@given(st.lists(_arrays(3.4e38), min_size=1, max_size=3))
def test_float32_is_exact(tensors: list[np.ndarray]) -> None:
    for got, want in zip(_round_trip(CodecId.FLOAT32, tensors), tensors, strict=True):
        assert got.dtype == np.float32 and got.shape == want.shape
        assert got.tobytes() == want.tobytes()  # bit for bit, -0.0 included


@FUZZ
@given(_arrays(F16_MAX))
def test_float16_error_is_at_most_half_an_ulp(tensor: np.ndarray) -> None:
    """Relative error <= 2**-11 for normal halves; absolute <= 2**-25 in the subnormal range."""
    (got,) = _round_trip(CodecId.FLOAT16, [tensor])
    x = tensor.astype(np.float64)
    bound = np.maximum(np.abs(x) * 2.0**-11, 2.0**-25)
    assert np.all(np.abs(got.astype(np.float64) - x) <= bound)
    assert np.all(np.abs(got[np.abs(tensor) >= F16_MIN_NORMAL]) >= F16_MIN_NORMAL)  # no flush to zero


def test_float16_rounds_ties_to_even_and_refuses_what_would_overflow() -> None:
    x = np.array([1 + 2**-11, 1 + 3 * 2**-11, 65519.0, -65519.0, 2.0**-25, 3 * 2.0**-25], np.float32)
    (got,) = _round_trip(CodecId.FLOAT16, [x])
    assert got.tolist() == [1.0, 1 + 2**-9, 65504.0, -65504.0, 0.0, 2.0**-23]
    for beyond in (65520.0, -65520.0, 3e38):  # would round to infinity: refused, never sent as inf
        with pytest.raises(ValueError, match="float16 codec turns into infinity"):
            codec_for(CodecId.FLOAT16).encode([np.array([0.0, beyond], np.float32)])


@FUZZ
@given(_arrays(1e30))
def test_int8_error_is_at_most_half_a_step(tensor: np.ndarray) -> None:
    """|decoded - x| <= scale / 2 with scale = max|x| / 127 (plus float32 rounding)."""
    (got,) = _round_trip(CodecId.INT8, [tensor])
    x = tensor.astype(np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    scale = peak / 127
    err = np.abs(got.astype(np.float64) - x)
    assert np.all(err <= scale / 2 + 1e-6 * peak + 2e-43)  # subnormal scales lose bits
    if peak > 1e-30:
        assert np.max(np.abs(got)) == pytest.approx(peak, rel=1e-6)  # the peak maps to +-127 exactly


def test_int8_layout_is_a_float32_scale_then_one_byte_per_value() -> None:
    tensors = [np.array([-127.0, 63.5, 0.0], np.float32), np.array([[0.25]], np.float32)]
    payload = codec_for(CodecId.INT8).encode(tensors)
    assert payload == (
        np.float32(1.0).astype("<f4").tobytes() + bytes([0x81, 64, 0])  # 63.5 ties to even: 64
        + np.float32(0.25 / 127).astype("<f4").tobytes() + bytes([127])
    )  # fmt: skip


def test_int8_all_zero_and_underflowing_tensors_use_scale_one() -> None:
    """max|x| / 127 can underflow to 0 in float32; dividing by it would make inf and garbage codes."""
    zeros, tiny = np.zeros(4, np.float32), np.array([1e-44, -1e-44, 0.0], np.float32)
    payload = codec_for(CodecId.INT8).encode([zeros, tiny])  # warnings are errors in this suite
    one = np.float32(1.0).astype("<f4").tobytes()
    assert payload == one + bytes(4) + one + bytes(3)
    got = codec_for(CodecId.INT8).decode(payload, [(4,), (3,)])
    assert [g.tolist() for g in got] == [[0.0] * 4, [0.0] * 3]


@pytest.mark.parametrize("codec_id", list(CodecId))
def test_a_payload_of_the_wrong_length_is_bad_shape(codec_id: CodecId) -> None:
    codec = CODECS[codec_id]
    payload = codec.encode([np.ones((2, 2), np.float32)])
    for bad in (payload[:-1], payload + b"\x00"):
        with pytest.raises(ProtocolError) as info:
            codec.decode(bad, [(2, 2)])
        assert info.value.reason == "bad_shape"


@pytest.mark.parametrize("codec_id", list(CodecId))
def test_encoded_size_is_exact_for_huge_layouts(codec_id: CodecId) -> None:
    """A 64-bit product would wrap (65536**4 == 2**64) and make a hostile layout look empty."""
    per_value = {CodecId.FLOAT32: 4, CodecId.FLOAT16: 2, CodecId.INT8: 1}[codec_id]
    overhead = 4 if codec_id == CodecId.INT8 else 0
    assert CODECS[codec_id].encoded_size([(65536,) * 4]) == 2**64 * per_value + overhead
    assert CODECS[codec_id].encoded_size([(), (0, 5)]) == per_value + 2 * overhead


def test_unknown_codec_id_is_bad_codec() -> None:
    with pytest.raises(ProtocolError) as info:
        codec_for(3)
    assert info.value.reason == "bad_codec"
    assert [int(c) for c in CodecId] == [0, 1, 2]
