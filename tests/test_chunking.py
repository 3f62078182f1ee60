"""Chunking: frames survive the split for any size, and each reassembly bound holds."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.chunking import CHUNK_HEADER_SIZE, MAX_MESSAGE_SIZE, Reassembler, split_frame
from protocols.errors import ChunkError

FUZZ = settings(database=None, deadline=None, max_examples=300)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chunk(tid: int, index: int, count: int, total: int, data: bytes = b"") -> bytes:
    return struct.pack(">2sIIII", b"GC", tid, index, count, total) + data


def _reassemble(chunks: list[bytes], max_frame_size: int) -> bytes:
    r = Reassembler(max_frame_size=max_frame_size)
    outputs = [r.feed(c) for c in chunks]
    assert outputs[:-1] == [None] * (len(chunks) - 1)
    assert outputs[-1] is not None and r.buffered == 0 and not r.dropped
    return outputs[-1]


# ---- round trips --------------------------------------------------------------------------

BODY = 64 - CHUNK_HEADER_SIZE


@pytest.mark.parametrize("size", [0, 1, BODY - 1, BODY, BODY + 1, 3 * BODY, 3 * BODY + 5, 10_000])
@pytest.mark.parametrize("message_size", [CHUNK_HEADER_SIZE + 1, 64, 1000])
def test_round_trip_for_many_sizes(size: int, message_size: int) -> None:
    data = random.Random(size).randbytes(size)
    chunks = list(split_frame(data, 3, message_size))
    body = message_size - CHUNK_HEADER_SIZE
    assert len(chunks) == max(1, -(-size // body))
    assert all(len(c) == message_size for c in chunks[:-1]) and len(chunks[-1]) <= message_size
    assert _reassemble(chunks, max(1, size)) == data


def test_a_frame_at_the_default_size_uses_full_256_kib_messages() -> None:
    data = bytes(3 * MAX_MESSAGE_SIZE)
    chunks = list(split_frame(data, 1))
    assert [len(c) for c in chunks[:-1]] == [MAX_MESSAGE_SIZE] * (len(chunks) - 1)
    assert _reassemble(chunks, len(data)) == data


@FUZZ
@given(st.binary(max_size=3000), st.integers(CHUNK_HEADER_SIZE + 1, 400), st.randoms(use_true_random=False))
def test_chunks_reassemble_in_any_order(data: bytes, message_size: int, rng: random.Random) -> None:
    chunks = list(split_frame(data, 0xFFFFFFFF, message_size))
    rng.shuffle(chunks)
    assert _reassemble(chunks, max(1, len(data))) == data


@pytest.mark.parametrize("message_size", [0, CHUNK_HEADER_SIZE, MAX_MESSAGE_SIZE + 1])
def test_split_refuses_message_sizes_that_cannot_carry_data(message_size: int) -> None:
    with pytest.raises(ValueError, match="message_size"):
        list(split_frame(b"abc", 1, message_size))


def test_transfers_interleave() -> None:
    a, b = bytes(range(200)), bytes(range(100, 250))
    ca, cb = list(split_frame(a, 1, 64)), list(split_frame(b, 2, 64))
    r = Reassembler(max_frame_size=1000)
    done = [out for pair in zip(ca, cb, strict=False) for c in pair if (out := r.feed(c)) is not None]
    done += [out for c in ca[len(cb) :] if (out := r.feed(c)) is not None]
    assert sorted(done) == sorted([a, b])


# ---- bounds ---------------------------------------------------------------------------------


def _refused(r: Reassembler, message: bytes, reason: str = "bad_chunk") -> None:
    with pytest.raises(ChunkError) as info:
        r.feed(message)
    assert info.value.reason == reason


def test_a_declared_size_above_the_limit_is_refused_before_buffering() -> None:
    r = Reassembler(max_frame_size=100)
    _refused(r, chunk(1, 0, 2, 101, b"x"), "oversize")
    assert r.buffered == 0 and r.dropped == {"oversize": 1}
    assert r.feed(chunk(2, 0, 1, 100, b"y" * 100)) == b"y" * 100  # the limit itself is fine


@pytest.mark.parametrize(("index", "count", "total"), [(0, 0, 10), (2, 2, 10), (0, 11, 10), (0, 2, 0)])
def test_impossible_chunk_counts_are_refused(index: int, count: int, total: int) -> None:
    """More chunks than bytes (or none at all) can only come from a hostile sender."""
    r = Reassembler(max_frame_size=100)
    _refused(r, chunk(1, index, count, total, b""))
    assert r.dropped == {"bad_count": 1}


def test_a_duplicate_chunk_drops_the_transfer() -> None:
    r = Reassembler(max_frame_size=100)
    chunks = list(split_frame(bytes(100), 5, 64))
    assert r.feed(chunks[0]) is None
    _refused(r, chunks[0])
    assert r.dropped == {"duplicate": 1} and r.buffered == 0
    assert all(r.feed(c) is None for c in chunks[1:])  # the rest alone never completes


def test_a_chunk_that_contradicts_its_transfer_drops_it() -> None:
    r = Reassembler(max_frame_size=100)
    assert r.feed(chunk(1, 0, 3, 30, b"a" * 10)) is None
    _refused(r, chunk(1, 1, 4, 30, b"b" * 10))
    assert r.dropped == {"inconsistent": 1} and r.buffered == 0
    assert r.feed(chunk(2, 0, 2, 30, b"a" * 10)) is None
    _refused(r, chunk(2, 1, 2, 31, b"b" * 10))
    assert r.dropped == {"inconsistent": 2}


def test_chunks_carrying_more_than_declared_overflow() -> None:
    r = Reassembler(max_frame_size=100)
    assert r.feed(chunk(1, 0, 2, 20, b"a" * 15)) is None
    _refused(r, chunk(1, 1, 2, 20, b"b" * 6), "oversize")
    assert r.dropped == {"overflow": 1} and r.buffered == 0


def test_chunks_carrying_less_than_declared_are_refused_when_complete() -> None:
    r = Reassembler(max_frame_size=100)
    assert r.feed(chunk(1, 0, 2, 20, b"a" * 10)) is None
    _refused(r, chunk(1, 1, 2, 20, b"b" * 9))
    assert r.dropped == {"short": 1} and r.buffered == 0


def test_a_stalled_transfer_times_out_on_the_injected_clock() -> None:
    clock = Clock()
    r = Reassembler(max_frame_size=100, timeout=5.0, clock=clock)
    first, second = split_frame(bytes(40), 9, 40)
    assert r.feed(first) is None
    clock.now = 5.0
    r.expire()
    assert r.buffered == len(first) - CHUNK_HEADER_SIZE and not r.dropped  # at the limit: still alive
    clock.now = 5.5
    assert r.feed(second) is None  # the transfer expired first, so this chunk starts a new one
    assert r.dropped == {"timeout": 1}
    clock.now = 11.0
    r.expire()
    assert r.dropped == {"timeout": 2} and r.buffered == 0


def test_beyond_max_transfers_the_oldest_is_evicted() -> None:
    clock = Clock()
    r = Reassembler(max_frame_size=100, max_transfers=2, clock=clock)
    frames = {tid: bytes([tid]) * 60 for tid in (1, 2, 3)}
    chunks = {tid: list(split_frame(f, tid, 40)) for tid, f in frames.items()}
    for tid in (1, 2, 3):
        assert r.feed(chunks[tid][0]) is None
        clock.now += 1
    assert r.dropped == {"too_many_transfers": 1}
    assert r.buffered == 2 * 22
    assert r.feed(chunks[2][1]) is None and r.feed(chunks[3][1]) is None  # each needs a third chunk
    assert r.feed(chunks[2][2]) == frames[2] and r.feed(chunks[3][2]) == frames[3]
    assert r.feed(chunks[1][1]) is None  # transfer 1 was forgotten: its tail starts over


@pytest.mark.parametrize(
    "message",
    [b"", b"GC" + bytes(15), b"XX" + chunk(1, 0, 1, 1, b"z")[2:], chunk(1, 0, 1, 1, b"z") + bytes(MAX_MESSAGE_SIZE)],
    ids=["empty", "short", "magic", "too long"],
)
def test_malformed_messages_are_chunk_errors(message: bytes) -> None:
    _refused(Reassembler(max_frame_size=MAX_MESSAGE_SIZE * 2), message)


# ---- fuzzing --------------------------------------------------------------------------------

_hostile_chunk = st.builds(
    chunk,
    st.integers(0, 5),
    st.integers(0, 6),
    st.integers(0, 6),
    st.integers(0, 300),
    st.binary(max_size=120),
)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=80), _hostile_chunk), max_size=40), st.integers(1, 4))
def test_hostile_message_streams_raise_only_chunk_error_and_stay_bounded(messages: list[bytes], transfers: int) -> None:
    clock = Clock()
    r = Reassembler(max_frame_size=200, max_transfers=transfers, timeout=10, clock=clock)
    for i, message in enumerate(messages):
        clock.now = i * 0.7
        try:
            out = r.feed(message)
        except ChunkError:
            continue
        finally:
            assert r.buffered <= transfers * 200
            assert len(r._transfers) <= transfers
        assert out is None or len(out) <= 200
