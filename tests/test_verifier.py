"""Frame admission: a valid frame is accepted once; each kind of bad frame is rejected by reason."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.crypto import public_key_bytes
from protocols.frame import FIXED_HEADER_SIZE, FrameKind, build_frame
from peer.verifier import FrameRejected, FrameVerifier

from rogue import hostile_frame

SWARM, MODEL = b"\x01" * 16, b"\x02" * 32
SHAPES = [(3, 2), (2,)]
SENDER = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
RECEIVER = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)
STRANGER = Ed25519PrivateKey.from_private_bytes(b"\x33" * 32)


def _tensors(value: float = 0.5) -> list[np.ndarray]:
    return [np.full(s, value, np.float32) for s in SHAPES]


def _frame(key: Ed25519PrivateKey = SENDER, seq: int = 1, **over: object) -> bytes:
    fields: dict[str, object] = dict(
        kind=FrameKind.EXCHANGE_REQUEST, swarm_id=SWARM, model_id=MODEL, receiver=public_key_bytes(RECEIVER),
        session=7, seq=seq, exchange_id=1, sample_weight=100.0, step=3, tensors=_tensors(),
    )  # fmt: skip
    fields.update(over)
    return build_frame(key, **fields).encode()  # type: ignore[arg-type]


def _verifier(known: tuple[Ed25519PrivateKey, ...] = (SENDER,)) -> FrameVerifier:
    keys = {public_key_bytes(k) for k in known}
    return FrameVerifier(swarm_id=SWARM, model_id=MODEL, own_key=public_key_bytes(RECEIVER),
                         is_known=keys.__contains__, shapes=SHAPES, max_frame_size=4096)  # fmt: skip


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def test_a_valid_frame_is_accepted_with_its_tensors() -> None:
    v = _verifier()
    frame, tensors = v.admit(_frame(), public_key_bytes(SENDER))
    assert frame.header.sample_weight == 100.0 and frame.header.step == 3
    for got, want in zip(tensors, _tensors(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert v.accepted[public_key_bytes(SENDER).hex()] == 1 and not v.rejected


CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "tampered header": (lambda: _flip(_frame(), 140), "bad_signature"),  # a byte of the seq field
    "tampered payload": (lambda: _flip(_frame(), -1), "bad_digest"),
    "wrong swarm": (lambda: _frame(swarm_id=b"\x09" * 16), "wrong_swarm"),
    "wrong model": (lambda: _frame(model_id=b"\x09" * 32), "wrong_model"),
    "wrong receiver": (lambda: _frame(receiver=public_key_bytes(STRANGER)), "wrong_receiver"),
    "non-finite": (lambda: hostile_frame(SENDER, [np.full((3, 2), np.nan, np.float32), np.zeros(2, np.float32)],
                                         kind=FrameKind.EXCHANGE_REQUEST, swarm_id=SWARM, model_id=MODEL,
                                         receiver=public_key_bytes(RECEIVER), session=7, seq=1, exchange_id=1,
                                         sample_weight=100.0, step=3), "non_finite"),
    "bad shape": (lambda: _frame(tensors=[np.zeros((2, 3), np.float32), np.zeros(2, np.float32)]), "bad_shape"),
    "truncated": (lambda: _frame()[: FIXED_HEADER_SIZE - 1], "malformed"),
    "oversize": (lambda: _frame(tensors=[np.zeros((3, 2), np.float32), np.zeros(2000, np.float32)]), "oversize"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_frames_are_rejected_by_reason(case: str) -> None:
    make, reason = CASES[case]
    v = _verifier()
    with pytest.raises(FrameRejected) as info:
        v.admit(make(), public_key_bytes(SENDER))
    assert info.value.reason == reason
    assert v.rejected == {reason: 1} and not v.accepted


def test_a_replayed_sequence_number_is_rejected() -> None:
    v = _verifier()
    data = _frame(seq=5)
    v.admit(data, public_key_bytes(SENDER))
    with pytest.raises(FrameRejected, match="replay"):
        v.admit(data, public_key_bytes(SENDER))
    with pytest.raises(FrameRejected, match="replay"):
        v.admit(_frame(seq=4), public_key_bytes(SENDER))
    v.admit(_frame(seq=6), public_key_bytes(SENDER))
    v.admit(_frame(seq=1, session=8), public_key_bytes(SENDER))  # a restarted sender has a new session
    assert v.rejected == {"replay": 2}


def test_a_forged_frame_does_not_burn_a_sequence_number() -> None:
    v = _verifier()
    with pytest.raises(FrameRejected):
        v.admit(_flip(_frame(seq=9), -1), public_key_bytes(SENDER))
    v.admit(_frame(seq=9), public_key_bytes(SENDER))


def test_an_unknown_key_is_rejected() -> None:
    v = _verifier()
    with pytest.raises(FrameRejected, match="unknown_sender"):
        v.admit(_frame(key=STRANGER), public_key_bytes(STRANGER))


def test_a_frame_signed_by_another_peer_than_the_link_is_rejected() -> None:
    v = _verifier(known=(SENDER, STRANGER))
    with pytest.raises(FrameRejected, match="wrong_sender"):
        v.admit(_frame(key=STRANGER), public_key_bytes(SENDER))


def test_a_claimed_sender_key_without_its_signature_is_rejected() -> None:
    """A stranger writes the known sender's key into the header but cannot sign for it."""
    v = _verifier()
    forged = bytearray(_frame(key=STRANGER))
    forged[56:88] = public_key_bytes(SENDER)
    with pytest.raises(FrameRejected, match="bad_signature"):
        v.admit(bytes(forged), public_key_bytes(SENDER))
