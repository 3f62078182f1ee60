"""The peer's Ed25519 identity, persisted so a restarted peer keeps its id."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.crypto import peer_id_of, private_key_from_seed, private_key_seed, public_key_bytes


def default_identity_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "gossip-swarm" / "identity.key"


def load_or_create(path: Path | None = None) -> Ed25519PrivateKey:
    """Load the key at ``path`` (hex seed), creating it with mode 0600 if absent."""
    path = path or default_identity_path()
    if path.exists():
        text = path.read_text().strip()
        try:
            return private_key_from_seed(bytes.fromhex(text))
        except ValueError:
            raise ValueError(f"{path} is not a 32-byte hex Ed25519 seed; move it away to get a new identity") from None
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(private_key_seed(key).hex() + "\n")
    return key


def describe(key: Ed25519PrivateKey) -> str:
    return peer_id_of(public_key_bytes(key))
