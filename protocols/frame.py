"""Update frames: a signed binary header followed by an encoded weights payload.

Layout (all integers big-endian; see docs/PROTOCOL.md for the normative table)::

    magic "GSWF" | version u8 | kind u8 | codec u8 | flags u8
    swarm_id 16 | model_id 32 | sender 32 | receiver 32
    session u64 | seq u64 | exchange_id u64 | sample_weight f64 | step u64
    payload_len u32 | n_tensors u16 | n_tensors x (ndim u8, ndim x u32)
    payload_digest 32 (SHA-256 of payload)
    signature 64 (Ed25519 by sender over every header byte before it)
    payload

The signature covers the digest, so a receiver verifies the header signature first (cheap,
before touching the payload) and then the payload hash.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import PROTOCOL_VERSION
from .chunking import CHUNK_HEADER_SIZE
from .codecs import Shape, codec_for
from .crypto import SIGNATURE_SIZE, public_key_bytes, sha256, sign, verify
from .errors import ProtocolError, SignatureError

MAGIC = b"GSWF"
_FIXED = struct.Struct(">4sBBBB16s32s32s32sQQQdQIH")
FIXED_HEADER_SIZE = _FIXED.size  # 166
DIGEST_SIZE = 32
MAX_TENSORS = 1024
MAX_NDIM = 8
MAX_TENSOR_ELEMENTS = 2**31 - 1  # per tensor, zero dimensions counted as 1
MAX_SAMPLE_WEIGHT = 1e9


class FrameKind(IntEnum):
    EXCHANGE_REQUEST = 1  # carries the sender's weights; asks for the receiver's
    EXCHANGE_RESPONSE = 2  # carries the responder's pre-merge weights
    EXCHANGE_DECLINE = 3  # no payload: the responder is busy, try another neighbor
    PULL_REQUEST = 4  # no payload: send me your current model (joining peers)
    PULL_RESPONSE = 5  # carries weights; the receiver adopts them instead of averaging
    EXCHANGE_PROPOSE = 6  # no payload: may we exchange? (weights move only once accepted)
    EXCHANGE_ACCEPT = 7  # no payload: yes, I hold myself for you; send the request


@dataclass(frozen=True)
class FrameHeader:
    kind: FrameKind
    codec: int
    swarm_id: bytes
    model_id: bytes
    sender: bytes
    receiver: bytes
    session: int
    seq: int
    exchange_id: int
    sample_weight: float
    step: int
    payload_len: int
    shapes: tuple[Shape, ...]
    digest: bytes
    signature: bytes = b""
    version: int = PROTOCOL_VERSION
    flags: int = 0

    def signed_bytes(self) -> bytes:
        """Every header byte the signature covers (all but the signature)."""
        fixed = _FIXED.pack(
            MAGIC, self.version, int(self.kind), self.codec, self.flags,
            self.swarm_id, self.model_id, self.sender, self.receiver,
            self.session, self.seq, self.exchange_id, self.sample_weight, self.step,
            self.payload_len, len(self.shapes),
        )  # fmt: skip
        layout = b"".join(
            struct.pack(">B", len(s)) + struct.pack(f">{len(s)}I", *s) for s in self.shapes
        )
        return fixed + layout + self.digest

    def encode(self) -> bytes:
        return self.signed_bytes() + self.signature


@dataclass(frozen=True)
class Frame:
    header: FrameHeader
    payload: bytes

    def encode(self) -> bytes:
        return self.header.encode() + self.payload

    def tensors(self) -> list[np.ndarray]:
        """Decode the payload with the header's codec and layout; rejects non-finite values."""
        arrays = codec_for(self.header.codec).decode(self.payload, self.header.shapes)
        for a in arrays:
            if not np.isfinite(a).all():
                raise ProtocolError("payload holds NaN or infinite values", reason="non_finite")
        return arrays


def frame_size(shapes: Sequence[Shape], codec: int = 0, *, message_size: int | None = None) -> int:
    """Bytes of one encoded frame with tensors of ``shapes`` under ``codec`` (header, layout, digest,
    signature, payload): ``len(build_frame(...).encode())`` without building it.

    With ``message_size`` (e.g. ``chunking.MAX_MESSAGE_SIZE``), the bytes the data channel carries:
    the frame plus one chunk header per message (``chunking.split_frame``). Every size in the peers,
    the browser (``frame.js`` ``frameSize``), the simulator and the benchmarks comes from here.
    """
    layout = sum(1 + 4 * len(s) for s in shapes)
    size = FIXED_HEADER_SIZE + layout + DIGEST_SIZE + SIGNATURE_SIZE + (codec_for(codec).encoded_size(shapes) if shapes else 0)
    if message_size is None:
        return size
    return size + CHUNK_HEADER_SIZE * max(1, -(-size // (message_size - CHUNK_HEADER_SIZE)))


def build_frame(
    key: Ed25519PrivateKey,
    *,
    kind: FrameKind,
    swarm_id: bytes,
    model_id: bytes,
    receiver: bytes,
    session: int,
    seq: int,
    exchange_id: int,
    sample_weight: float,
    step: int,
    tensors: Sequence[np.ndarray] = (),
    codec: int = 0,
) -> Frame:
    """Encode ``tensors`` with ``codec`` and sign the header with ``key``."""
    shapes = tuple(tuple(int(d) for d in np.shape(t)) for t in tensors)
    payload = codec_for(codec).encode(tensors) if tensors else b""
    header = FrameHeader(
        kind=kind, codec=codec, swarm_id=swarm_id, model_id=model_id,
        sender=public_key_bytes(key), receiver=receiver, session=session, seq=seq,
        exchange_id=exchange_id, sample_weight=float(sample_weight), step=step,
        payload_len=len(payload), shapes=shapes, digest=sha256(payload),
    )  # fmt: skip
    signature = sign(key, header.signed_bytes())
    return Frame(_replace_signature(header, signature), payload)


def _replace_signature(header: FrameHeader, signature: bytes) -> FrameHeader:
    return FrameHeader(**{**header.__dict__, "signature": signature})


def parse_header(data: bytes) -> tuple[FrameHeader, int]:
    """Parse the header at the start of ``data``; return it and the payload offset.

    Checks structure only (sizes, magic, version, kind, layout bounds), not the signature.
    """
    if len(data) < FIXED_HEADER_SIZE:
        raise ProtocolError(f"frame of {len(data)} bytes is shorter than a header")
    (magic, version, kind, codec, flags, swarm_id, model_id, sender, receiver,
     session, seq, exchange_id, sample_weight, step, payload_len, n_tensors) = _FIXED.unpack_from(data)  # fmt: skip
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"frame version {version}, this peer speaks {PROTOCOL_VERSION}", reason="bad_version")
    try:
        frame_kind = FrameKind(kind)
    except ValueError:
        raise ProtocolError(f"unknown frame kind {kind}") from None
    codec_for(codec)
    if n_tensors > MAX_TENSORS:
        raise ProtocolError(f"{n_tensors} tensors exceeds the limit of {MAX_TENSORS}", reason="bad_shape")
    if not (math.isfinite(sample_weight) and 0.0 <= sample_weight <= MAX_SAMPLE_WEIGHT):
        raise ProtocolError(f"sample weight {sample_weight} outside [0, {MAX_SAMPLE_WEIGHT:g}]", reason="non_finite")
    offset, shapes = FIXED_HEADER_SIZE, []
    for _ in range(n_tensors):
        if offset + 1 > len(data):
            raise ProtocolError("frame ends inside the tensor layout")
        ndim = data[offset]
        if ndim > MAX_NDIM:
            raise ProtocolError(f"tensor with {ndim} dimensions exceeds {MAX_NDIM}", reason="bad_shape")
        end = offset + 1 + 4 * ndim
        if end > len(data):
            raise ProtocolError("frame ends inside the tensor layout")
        shape = struct.unpack_from(f">{ndim}I", data, offset + 1)
        if math.prod(d or 1 for d in shape) > MAX_TENSOR_ELEMENTS:  # not representable as an array
            raise ProtocolError(f"tensor of shape {shape} exceeds {MAX_TENSOR_ELEMENTS} elements", reason="bad_shape")
        shapes.append(shape)
        offset = end
    end = offset + DIGEST_SIZE + SIGNATURE_SIZE
    if end > len(data):
        raise ProtocolError("frame ends inside the digest or signature")
    header = FrameHeader(
        kind=frame_kind, codec=codec, swarm_id=swarm_id, model_id=model_id, sender=sender,
        receiver=receiver, session=session, seq=seq, exchange_id=exchange_id,
        sample_weight=sample_weight, step=step, payload_len=payload_len, shapes=tuple(shapes),
        digest=data[offset : offset + DIGEST_SIZE], signature=data[offset + DIGEST_SIZE : end],
        version=version, flags=flags,
    )  # fmt: skip
    return header, end


def decode_frame(data: bytes) -> Frame:
    """Parse a frame and verify its signature and payload digest (raises ProtocolError)."""
    header, offset = parse_header(data)
    verify(header.sender, header.signature, header.signed_bytes())
    payload = data[offset:]
    if len(payload) != header.payload_len:
        raise ProtocolError(
            f"payload is {len(payload)} bytes, header declares {header.payload_len}", reason="bad_length"
        )
    if sha256(payload) != header.digest:
        raise SignatureError("payload digest does not match the signed header", reason="bad_digest")
    codec = codec_for(header.codec)
    if codec.encoded_size(header.shapes) != header.payload_len:  # no tensors: no payload
        raise ProtocolError("payload length does not match the tensor layout", reason="bad_shape")
    return Frame(header, payload)
