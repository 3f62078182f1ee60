"""Dataset shard blobs: labelled examples as one binary file the browser can read too.

Layout (big-endian header, little-endian values)::

    magic "GSDS" | version u8 | x_dtype u8 (0 = uint8, 1 = float32) | reserved u16
    n u32 | ndim u8 | ndim x u32 (shape of one example)
    x: n * prod(shape) values of x_dtype | y: n uint8 class labels

uint8 features are scaled by 1/255 when loaded, so images travel at a quarter of the size.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from .errors import ProtocolError

MAGIC = b"GSDS"
_HEAD = struct.Struct(">4sBBHIB")
X_DTYPES = {0: np.dtype(np.uint8), 1: np.dtype("<f4")}


def encode_shard(x: np.ndarray, y: np.ndarray) -> bytes:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} examples but {y.shape[0]} labels")
    code = 0 if x.dtype == np.uint8 else 1
    dims = x.shape[1:]
    head = _HEAD.pack(MAGIC, 1, code, 0, x.shape[0], len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    xs = np.ascontiguousarray(x, dtype=X_DTYPES[code]).tobytes()
    return head + xs + np.ascontiguousarray(y, dtype=np.uint8).tobytes()


def decode_shard(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 features (uint8 scaled to [0, 1]) and int64 labels."""
    if len(data) < _HEAD.size:
        raise ProtocolError("dataset shard shorter than its header")
    magic, version, code, _, n, ndim = _HEAD.unpack_from(data)
    if magic != MAGIC or version != 1 or code not in X_DTYPES or ndim > 4:
        raise ProtocolError("not a version-1 dataset shard")
    offset = _HEAD.size + 4 * ndim
    if len(data) < offset:
        raise ProtocolError("dataset shard ends inside its example shape")
    dims = struct.unpack_from(f">{ndim}I", data, _HEAD.size)
    per = math.prod(dims)
    dtype = X_DTYPES[code]
    x_len = n * per * dtype.itemsize
    if len(data) != offset + x_len + n:
        raise ProtocolError(f"dataset shard is {len(data)} bytes, header implies {offset + x_len + n}")
    x = np.frombuffer(data, dtype=dtype, count=n * per, offset=offset).reshape((n, *dims))
    y = np.frombuffer(data, dtype=np.uint8, count=n, offset=offset + x_len)
    return features_float32(x), y.astype(np.int64)


def features_float32(x: np.ndarray) -> np.ndarray:
    """Features as the model sees them: uint8 scaled by 1/255 to [0, 1], anything else as float32.

    Shards and a contributor's own data (``peer.node.load_local_data``) both go through here, so
    a peer's uint8 images are scaled exactly as the published ones.
    """
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
