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
