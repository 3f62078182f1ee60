"""Dataset shard blobs: labelled examples as one binary file the browser can read too.

Layout (big-endian header, little-endian values)::

    magic "GSDS" | version u8 | x_dtype u8 (0 = uint8, 1 = float32) | y_dtype u8 | y_width u8
    n u32 | ndim u8 | ndim x u32 (shape of one example)
    x: n * prod(shape) values of x_dtype | y: n * y_width values of y_dtype

Version 1 (class labels): the two bytes after x_dtype are 0 (reserved) and y is n uint8
labels. Version 2 adds targets: y_dtype 0 = uint8 class labels (y_width 1), 1 = float32
targets (regression, multi-label), y_width of them per example. Encoders write version 1
whenever the targets are class labels, so classification shards are byte for byte what they
were; decoders read both.

uint8 features are scaled by 1/255 when loaded, so images travel at a quarter of the size.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from .errors import ProtocolError

MAGIC = b"GSDS"
_HEAD = struct.Struct(">4sBBBBIB")
X_DTYPES = {0: np.dtype(np.uint8), 1: np.dtype("<f4")}
Y_DTYPES = {0: np.dtype(np.uint8), 1: np.dtype("<f4")}
MAX_Y_WIDTH = 255


def encode_shard(x: np.ndarray, y: np.ndarray) -> bytes:
    """Version 1 for class labels (integer y of shape (n,)), version 2 for float targets (n,) or (n, k)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} examples but {y.shape[0]} labels")
    code = 0 if x.dtype == np.uint8 else 1
    dims = x.shape[1:]
    xs = np.ascontiguousarray(x, dtype=X_DTYPES[code]).tobytes()
    shape = struct.pack(f">{len(dims)}I", *dims)
    if y.dtype.kind in "biu" and y.ndim == 1:
        if len(y) and (y.min() < 0 or y.max() > 255):
            raise ValueError("class labels must be in 0..255")
        head = _HEAD.pack(MAGIC, 1, code, 0, 0, x.shape[0], len(dims))
        return head + shape + xs + np.ascontiguousarray(y, dtype=np.uint8).tobytes()
    targets = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    width = targets.shape[1] if len(y) else (y.shape[1] if y.ndim == 2 else 1)
    if not 1 <= width <= MAX_Y_WIDTH:
        raise ValueError(f"{width} targets per example; a shard holds 1..{MAX_Y_WIDTH}")
    with np.errstate(over="ignore"):
        values = targets.astype("<f4")
    if not np.isfinite(values).all():
        raise ValueError("targets must be finite float32 values")
    head = _HEAD.pack(MAGIC, 2, code, 1, width, x.shape[0], len(dims))
    return head + shape + xs + values.tobytes()


def decode_shard(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 features (uint8 scaled to [0, 1]) and the targets: int64 class labels (n,),
    or float32 targets (n, y_width)."""
    if len(data) < _HEAD.size:
        raise ProtocolError("dataset shard shorter than its header")
    magic, version, code, y_code, width, n, ndim = _HEAD.unpack_from(data)
    if magic != MAGIC or version not in (1, 2) or code not in X_DTYPES or ndim > 4:
        raise ProtocolError("not a version-1 or version-2 dataset shard")
    if version == 1 and (y_code, width) != (0, 0):
        raise ProtocolError("a version-1 dataset shard has reserved bytes 0")
    if version == 1:
        y_code, width = 0, 1
    if y_code not in Y_DTYPES or width < 1 or (y_code == 0 and width != 1):
        raise ProtocolError(f"dataset shard targets: y_dtype {y_code} with y_width {width} is not a valid pair")
    offset = _HEAD.size + 4 * ndim
    if len(data) < offset:
        raise ProtocolError("dataset shard ends inside its example shape")
    dims = struct.unpack_from(f">{ndim}I", data, _HEAD.size)
    per = math.prod(dims)
    dtype, ytype = X_DTYPES[code], Y_DTYPES[y_code]
    x_len = n * per * dtype.itemsize
    y_len = n * width * ytype.itemsize
    if len(data) != offset + x_len + y_len:
        raise ProtocolError(f"dataset shard is {len(data)} bytes, header implies {offset + x_len + y_len}")
    x = np.frombuffer(data, dtype=dtype, count=n * per, offset=offset).reshape((n, *dims))
    y = np.frombuffer(data, dtype=ytype, count=n * width, offset=offset + x_len)
    if y_code == 0:
        return features_float32(x), y.astype(np.int64)
    targets = y.astype(np.float32).reshape(n, width)
    if not np.isfinite(targets).all():
        raise ProtocolError("dataset shard holds non-finite targets")
    return features_float32(x), targets


def shard_x_dtype(data: bytes) -> np.dtype | None:
    """How a shard stores its features (uint8: pixel values, scaled by 1/255), or None if it is no shard."""
    if len(data) < _HEAD.size or data[:4] != MAGIC:
        return None
    return X_DTYPES.get(data[5])


def features_float32(x: np.ndarray) -> np.ndarray:
    """Features as the model sees them: uint8 scaled by 1/255 to [0, 1], anything else as float32.

    Shards and a contributor's own data (``peer.localdata``) both go through here, so
    a peer's uint8 images are scaled exactly as the published ones.
    """
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
