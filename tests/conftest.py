"""Shared fixtures: a real signaling server on 127.0.0.1 and the default publication."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def publisher_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture(scope="session")
def default_publication(publisher_key: Ed25519PrivateKey):  # type: ignore[no-untyped-def]
    """The embedded default swarm (real MNIST, MLP 784-128-10), built once per session."""
    from apps.publish import default_publication

    return default_publication(publisher_key, swarm_id="5eed" * 8, seed=0)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    from apps.procs import start_server

    runner, base = await start_server(tmp_path / "server-data")
    try:
        yield base
    finally:
        await runner.cleanup()
