"""Fuzzing the JSON entry points: signaling messages and manifests give only documented errors."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.chunking import Reassembler
from protocols.errors import ChunkError, ManifestError, ProtocolError
from protocols.manifest import parse_envelope, parse_manifest
from protocols.signaling import parse_client_message, parse_server_message

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
types = st.sampled_from(["join", "leave", "ping", "offer", "answer", "candidate", "welcome", "challenge", "error", "x"])


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                 st.builds(lambda t, body: json.dumps({"type": t, **body}), types, st.dictionaries(st.text(max_size=12), json_values, max_size=6))))  # fmt: skip
def test_signaling_parsers_raise_only_protocol_errors(data: bytes | str) -> None:
    for parse in (parse_client_message, parse_server_message):
        try:
            parse(data)
        except ProtocolError:
            pass


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(max_size=400), st.builds(json.dumps, json_values),
                 st.builds(lambda m, s: json.dumps({"manifest": m, "signature": s}), st.text(max_size=200), st.text(max_size=130))))  # fmt: skip
def test_manifest_parsers_raise_only_manifest_errors(text: str) -> None:
    try:
        parse_manifest(text)
    except ManifestError:
        pass
    try:
        parse_envelope(text).verify()
    except ManifestError:
        pass


def test_a_flood_of_junk_chunks_keeps_reassembly_memory_bounded() -> None:
    import random

    rng = random.Random(0)
    bound = 1 << 20
    reassembler = Reassembler(max_frame_size=bound, max_transfers=4, timeout=30.0)
    for i in range(20000):  # half-open transfers, each claiming a large frame, from random ids
        header = b"GC" + rng.getrandbits(32).to_bytes(4, "big") + (0).to_bytes(4, "big") + (64).to_bytes(4, "big")
        message = header + rng.randrange(bound // 2, bound + 1).to_bytes(4, "big") + rng.randbytes(rng.randrange(0, 8192))
        try:
            reassembler.feed(message)
        except ChunkError:
            pass
        assert reassembler.buffered <= 4 * 8192  # at most 4 transfers in flight, each one chunk here
    assert len(reassembler._transfers) <= 4 and sum(reassembler.dropped.values()) > 0
