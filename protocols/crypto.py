"""Ed25519 keys, signatures and identifiers (RFC 8032 via ``cryptography``)."""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .errors import SignatureError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
PEER_ID_BYTES = 16

JOIN_CONTEXT = b"gossip-swarm/join/v1\x00"
MANIFEST_CONTEXT = b"gossip-swarm/manifest/v1\x00"
OFFER_CONTEXT = b"gossip-swarm/offer/v1\x00"
ANSWER_CONTEXT = b"gossip-swarm/answer/v1\x00"
RECEIPT_CONTEXT = b"gossip-swarm/receipt/v1\x00"
LINK_NONCE_SIZE = 32
RECEIPT_SESSION_SIZE = 8
MAX_RECEIPT_FRAMES = 10**12


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def peer_id_of(public_key: bytes) -> str:
    """Peer id: hex of the first 16 bytes of SHA-256(public key); short, and bound to the key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError(f"public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    return sha256(public_key)[:PEER_ID_BYTES].hex()


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def private_key_seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verify(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Raise SignatureError unless ``signature`` is ``public_key``'s signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        raise SignatureError("malformed key or signature length")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("signature does not verify") from exc


def join_message(nonce: bytes, swarm_id: str) -> bytes:
    """What a joining peer signs to prove it holds its key: context || nonce || swarm id (ASCII)."""
    return JOIN_CONTEXT + nonce + swarm_id.encode("ascii")


def manifest_message(manifest_bytes: bytes) -> bytes:
    """What a publisher signs: context || SHA-256(manifest bytes)."""
    return MANIFEST_CONTEXT + sha256(manifest_bytes)


def publisher_fingerprint(public_key: bytes) -> str:
    """What a pinned join link carries (``#pk=``): hex of SHA-256(publisher key)[0:16], as a peer id."""
    return peer_id_of(public_key)


def _link_fields(swarm_id: str, sender: str, receiver: str, nonce: bytes) -> bytes:
    for name, value in (("swarm id", swarm_id), ("sender", sender), ("receiver", receiver)):
        if len(value) != 32 or value.strip("0123456789abcdef"):
            raise ValueError(f"{name} must be 32 lowercase hex characters, got {value!r}")
    if len(nonce) != LINK_NONCE_SIZE:
        raise ValueError(f"a link nonce is {LINK_NONCE_SIZE} bytes, got {len(nonce)}")
    return (swarm_id + sender + receiver).encode("ascii") + nonce


def _fingerprint_text(fingerprints: list[str]) -> bytes:
    if not fingerprints or any("\n" in f for f in fingerprints):
        raise ValueError("sign at least one canonical fingerprint (protocols.signaling.sdp_fingerprints)")
    return "\n".join(fingerprints).encode("ascii")


def offer_message(swarm_id: str, sender: str, receiver: str, nonce: bytes, fingerprints: list[str]) -> bytes:
    """What an offerer signs: OFFER_CONTEXT || swarm id || sender id || receiver id (ASCII hex) || nonce
    || the offer SDP's canonical DTLS fingerprints joined by newlines (ASCII).

    Binds the DTLS certificate of the offerer's connection to its identity key, for one receiver
    in one swarm: a server that swaps the SDP (its own certificate) cannot re-sign it.
    """
    return OFFER_CONTEXT + _link_fields(swarm_id, sender, receiver, nonce) + _fingerprint_text(fingerprints)


def answer_message(
    swarm_id: str, sender: str, receiver: str, nonce: bytes, offer_nonce: bytes, fingerprints: list[str]
) -> bytes:
    """What an answerer signs: ANSWER_CONTEXT || swarm id || sender id || receiver id || nonce
    || the offer's nonce || the answer SDP's canonical fingerprints (as ``offer_message``).

    The offer's nonce ties the answer to one offer, so an old answer cannot be replayed."""
    if len(offer_nonce) != LINK_NONCE_SIZE:
        raise ValueError(f"an offer nonce is {LINK_NONCE_SIZE} bytes, got {len(offer_nonce)}")
    return (ANSWER_CONTEXT + _link_fields(swarm_id, sender, receiver, nonce) + offer_nonce
            + _fingerprint_text(fingerprints))  # fmt: skip


def receipt_message(swarm_id: str, voucher: str, peer: str, session: bytes, frames: int) -> bytes:
    """What a peer signs to vouch for a neighbor on the contribution board: RECEIPT_CONTEXT
    || swarm id || voucher id (its own) || peer id (the neighbor credited), all ASCII hex
    || session (8 raw bytes, random per process start) || frames (u64 big-endian).

    "I, ``voucher``, verified and accepted ``frames`` frames from ``peer`` in ``swarm_id``
    during ``session``": cumulative per session, so the server keeps the largest and an old
    receipt replayed adds nothing.
    """
    for name, value in (("swarm id", swarm_id), ("voucher", voucher), ("peer", peer)):
        if len(value) != 32 or value.strip("0123456789abcdef"):
            raise ValueError(f"{name} must be 32 lowercase hex characters, got {value!r}")
    if len(session) != RECEIPT_SESSION_SIZE:
        raise ValueError(f"a receipt session is {RECEIPT_SESSION_SIZE} bytes, got {len(session)}")
    if not 0 < frames <= MAX_RECEIPT_FRAMES:
        raise ValueError(f"a receipt vouches for 1 to {MAX_RECEIPT_FRAMES} frames, got {frames}")
    return RECEIPT_CONTEXT + (swarm_id + voucher + peer).encode("ascii") + session + frames.to_bytes(8, "big")
