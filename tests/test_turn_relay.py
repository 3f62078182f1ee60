"""NAT relay: two peers that may only use TURN relay candidates still gossip-train.

coturn (Debian's ``turnserver``, installed by the test set-up) runs on 127.0.0.1 with the
config ``swarm turn-config`` writes (``use-auth-secret``). The manifest lists no ICE server:
the signaling server (``turn_urls``/``turn_secret``, as ``swarm serve --turn-url
--turn-secret-file``) hands each peer its own time-limited TURN REST credentials in the
welcome. The peers run with ``--ice-relay-only``, so every byte goes through the relay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.procs import spawn_peer, start_server
from apps.publish import upload
from signaling.ice import load_turn_secret, turn_rest_credentials

from turn import allocate, coturn

def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def turn_server(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """coturn on 127.0.0.1 with the config ``swarm turn-config`` generates: (port, log, secret file)."""
    secret = tmp_path / "turn-secret"
    secret.write_text("test-secret-" + "ab" * 16)
    port = _free_udp_port()
    with coturn(tmp_path, secret, ip="127.0.0.1", port=port, loopback_peers=True) as log:
        yield port, log, secret


async def test_peers_reachable_only_through_a_turn_relay_still_exchange(default_publication: Any,
                                                                         turn_server: tuple[int, Path, Path], tmp_path: Path) -> None:  # fmt: skip
    """The manifest lists no TURN server: the signaling server issues each peer its own credentials."""
    port, turn_log, secret_file = turn_server
    secret = load_turn_secret(secret_file)
    # coturn refuses credentials that are forged (wrong secret) or expired, and accepts issued ones
    good = turn_rest_credentials(secret, "ab" * 16, ttl_s=600)
    assert await allocate(("127.0.0.1", port), *good) is not None
    assert await allocate(("127.0.0.1", port), *turn_rest_credentials("another-secret-0123456789", "ab" * 16)) is None
    assert await allocate(("127.0.0.1", port), *turn_rest_credentials(secret, "ab" * 16, ttl_s=600, now=time.time() - 3600)) is None
    runner, server = await start_server(tmp_path / "server-data", turn_urls=[f"turn:127.0.0.1:{port}?transport=udp"],
                                        turn_secret=secret)  # fmt: skip
    join_url = (await upload(server, dataclasses.replace(default_publication)))["join_url"]
    procs = [spawn_peer(join_url, tmp_path, f"relayed{i}", "--seed", str(i), "--ice-relay-only", "--eval-limit", "500")
             for i in range(2)]  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            rows = [p.latest for p in procs]
            merged = [r["exchanges"].get("merged", 0) + r["served"] if r else 0 for r in rows]
            if all(m >= 3 for m in merged) and all(r and len(r["accepted_from"]) == 1 for r in rows):
                break
            assert all(p.proc.poll() is None for p in procs), [p.log.read_text()[-2000:] for p in procs]
            assert time.monotonic() < deadline, (rows, turn_log.read_text(errors="replace")[-3000:])
            await asyncio.sleep(1)
    finally:
        for p in procs:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in procs))
        await runner.cleanup()
    assert all(link["pair"] == "relay" for r in rows for link in r["links"]), rows  # type: ignore[index]
    text = turn_log.read_text(errors="replace").lower()
    # both peers allocated relay addresses and coturn relayed their traffic to each other
    assert text.count("allocate") >= 2 and "peer 127.0.0.1" in text, text[-3000:]
