"""Payload codecs: how a list of float tensors becomes the bytes after a frame header.

Each codec has a one-byte id carried in the frame header, so new codecs (float16, int8 with
scales) slot in without changing the header. Tensor values are little-endian, which is the
byte order of JavaScript typed arrays on every platform browsers run on.

Encoders refuse what they cannot carry faithfully: NaN and infinities (receivers refuse them as
``non_finite``, and int8 would turn them into finite numbers an honest peer merges), and for
float16 values that would round to infinity (|x| >= 65520). Decoders keep whatever arrives;
the frame checks (``Frame.tensors``) refuse non-finite values there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import IntEnum
from typing import Protocol

import numpy as np

from .errors import ProtocolError


class CodecId(IntEnum):
    FLOAT32 = 0
    FLOAT16 = 1
    INT8 = 2


Shape = tuple[int, ...]


class Codec(Protocol):
    codec_id: CodecId

    def encoded_size(self, shapes: Sequence[Shape]) -> int: ...

    def encode(self, tensors: Sequence[np.ndarray]) -> bytes: ...

    def decode(self, payload: bytes, shapes: Sequence[Shape]) -> list[np.ndarray]: ...


FLOAT16_OVERFLOW = 65520.0  # float16 rounds |x| >= this to infinity (round to nearest even)


def _count(shape: Shape) -> int:
    """Element count in exact integers: numpy's int64 product wraps for hostile layouts."""
    return math.prod(shape)


def check_finite(tensors: Sequence[np.ndarray], codec: str, limit: float = math.inf) -> None:
    """Raise ValueError naming the first tensor that holds NaN, an infinity, or |x| >= ``limit``."""
    for i, t in enumerate(tensors):
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: refused below
            a = np.asarray(t, dtype=np.float32)
        finite = np.isfinite(a)
        if not finite.all():
            raise ValueError(f"tensor {i} (shape {a.shape}) holds {int(a.size - finite.sum())} non-finite values "
                             f"(NaN or infinity); the {codec} codec refuses to encode them: receivers refuse "
                             "non-finite weights, and int8 would turn them into finite numbers")  # fmt: skip
        if limit < math.inf and a.size and float(np.max(np.abs(a))) >= limit:
            raise ValueError(f"tensor {i} (shape {a.shape}) holds values of magnitude >= {limit:g}, which the "
                             f"{codec} codec turns into infinity; use float32 or int8 for this model")  # fmt: skip


class _PlainCodec:
    """Tensors concatenated in layout order as little-endian IEEE floats of one width."""

    def __init__(self, codec_id: CodecId, dtype: str) -> None:
        self.codec_id = codec_id
        self._dtype = np.dtype(dtype)

    def encoded_size(self, shapes: Sequence[Shape]) -> int:
        return sum(_count(s) for s in shapes) * self._dtype.itemsize

    def encode(self, tensors: Sequence[np.ndarray]) -> bytes:
        limit = FLOAT16_OVERFLOW if self.codec_id == CodecId.FLOAT16 else math.inf
        check_finite(tensors, self.codec_id.name.lower(), limit)
        return b"".join(np.ascontiguousarray(t, dtype=self._dtype).tobytes() for t in tensors)

    def decode(self, payload: bytes, shapes: Sequence[Shape]) -> list[np.ndarray]:
        if len(payload) != self.encoded_size(shapes):
            raise ProtocolError(
                f"payload is {len(payload)} bytes, layout needs {self.encoded_size(shapes)}",
                reason="bad_shape",
            )
        flat = np.frombuffer(payload, dtype=self._dtype)
        out, offset = [], 0
        for shape in shapes:
            n = _count(shape)
            out.append(flat[offset : offset + n].astype(np.float32).reshape(shape))
            offset += n
        return out


class Int8Codec:
    """Per tensor: a little-endian float32 scale, then int8 values q = round(x / scale).

    scale = float32(max|x| / 127), or 1.0 when that is 0 (an all-zero tensor, or one so small
    that the scale underflows). q = round-half-to-even(float32(x / scale)) clipped to
    [-127, 127]. Decoding gives float32(q * scale).
    """

    codec_id = CodecId.INT8

    def encoded_size(self, shapes: Sequence[Shape]) -> int:
        return sum(4 + _count(s) for s in shapes)

    def encode(self, tensors: Sequence[np.ndarray]) -> bytes:
        check_finite(tensors, "int8")
        parts = []
        for t in tensors:
            t = np.asarray(t, dtype=np.float32)
            peak = float(np.max(np.abs(t))) if t.size else 0.0
            scale = np.float32(peak / 127.0)
            if not scale > 0:
                scale = np.float32(1.0)
            q = np.clip(np.rint(t / scale), -127, 127).astype(np.int8)
            parts += [scale.astype("<f4").tobytes(), q.tobytes()]
        return b"".join(parts)

    def decode(self, payload: bytes, shapes: Sequence[Shape]) -> list[np.ndarray]:
        if len(payload) != self.encoded_size(shapes):
            raise ProtocolError(
                f"payload is {len(payload)} bytes, layout needs {self.encoded_size(shapes)}",
                reason="bad_shape",
            )
        out, offset = [], 0
        for shape in shapes:
            n = _count(shape)
            scale = np.frombuffer(payload, dtype="<f4", count=1, offset=offset)[0]
            q = np.frombuffer(payload, dtype=np.int8, count=n, offset=offset + 4)
            out.append((q.astype(np.float32) * scale).reshape(shape))
            offset += 4 + n
        return out


CODECS: dict[CodecId, Codec] = {
    CodecId.FLOAT32: _PlainCodec(CodecId.FLOAT32, "<f4"),
    CodecId.FLOAT16: _PlainCodec(CodecId.FLOAT16, "<f2"),
    CodecId.INT8: Int8Codec(),
}


def codec_for(codec_id: int) -> Codec:
    try:
        return CODECS[CodecId(codec_id)]
    except ValueError:
        raise ProtocolError(f"unknown codec id {codec_id}", reason="bad_codec") from None
