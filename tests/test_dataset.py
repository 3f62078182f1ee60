"""Dataset shard blobs: round trips, and any damaged blob is a ProtocolError."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.dataset import decode_shard, encode_shard
from protocols.errors import ProtocolError

FUZZ = settings(database=None, deadline=None, max_examples=300)
IMAGES = np.arange(2 * 3 * 2, dtype=np.uint8).reshape(2, 3, 2) * 20
LABELS = np.array([4, 7], dtype=np.uint8)


def test_uint8_features_round_trip_scaled_to_unit_range() -> None:
    x, y = decode_shard(encode_shard(IMAGES, LABELS))
    assert x.dtype == np.float32 and x.shape == (2, 3, 2)
    np.testing.assert_array_equal(x, IMAGES.astype(np.float32) / np.float32(255))
    assert y.dtype == np.int64 and y.tolist() == [4, 7]


def test_float_features_round_trip_unchanged() -> None:
    feats = np.array([[0.5, -2.0, 1e-3]], dtype=np.float32)
    x, y = decode_shard(encode_shard(feats, np.array([1], dtype=np.uint8)))
    np.testing.assert_array_equal(x, feats)
    assert y.tolist() == [1]


def test_header_layout() -> None:
    blob = encode_shard(IMAGES, LABELS)
    assert blob[:13] == b"GSDS" + struct.pack(">BBHIB", 1, 0, 0, 2, 2)  # version, uint8, reserved, n, ndim
    assert struct.unpack_from(">II", blob, 13) == (3, 2)  # shape of one example
    assert blob[21:] == IMAGES.tobytes() + LABELS.tobytes()


def test_every_truncation_and_extension_is_refused() -> None:
    blob = encode_shard(IMAGES, LABELS)
    for n in range(len(blob)):
        with pytest.raises(ProtocolError):
            decode_shard(blob[:n])
    with pytest.raises(ProtocolError):
        decode_shard(blob + b"\x00")


def test_a_shape_whose_size_wraps_64_bits_is_refused() -> None:
    head = b"GSDS" + struct.pack(">BBHIB", 1, 0, 0, 1, 4) + struct.pack(">4I", 65536, 65536, 65536, 65536)
    with pytest.raises(ProtocolError):
        decode_shard(head + b"\x00")


@FUZZ
@given(st.binary(max_size=64).map(lambda b: b"GSDS\x01" + b) | st.binary(max_size=64))
def test_random_blobs_only_raise_protocol_error(blob: bytes) -> None:
    try:
        decode_shard(blob)
    except ProtocolError:
        pass


def test_float_targets_make_a_version_2_shard_and_labels_stay_version_1() -> None:
    targets = np.array([[0.5, -1.25], [3.0, 1e-3]], dtype=np.float64)
    blob = encode_shard(IMAGES, targets)
    assert blob[4:8] == bytes([2, 0, 1, 2])  # version 2, uint8 x, float32 y, 2 targets per example
    x, y = decode_shard(blob)
    assert y.dtype == np.float32 and y.shape == (2, 2) and y.tolist() == targets.astype(np.float32).tolist()
    one = decode_shard(encode_shard(IMAGES, np.array([0.25, 7.5])))[1]
    assert one.shape == (2, 1) and one[:, 0].tolist() == [0.25, 7.5]
    assert encode_shard(IMAGES, LABELS)[4] == 1  # class labels: the version-1 bytes, unchanged
    with pytest.raises(ValueError, match="finite"):
        encode_shard(IMAGES, np.array([np.nan, 1.0]))
    for bad in (bytes([2, 0, 0, 2]), bytes([2, 0, 1, 0]), bytes([2, 0, 7, 1]), bytes([1, 0, 1, 2])):
        with pytest.raises(ProtocolError):
            decode_shard(blob[:4] + bad + blob[8:])
