"""NAT relay: two peers that may only use TURN relay candidates still gossip-train.

coturn (Debian's ``turnserver``, installed by the test set-up) runs on 127.0.0.1 with a
long-term credential. The swarm's manifest names it in ``ice_servers``, so every peer gets it
from the server's welcome; the peers run with ``--ice-relay-only`` (ICE transport policy
"relay"), so no host candidate exists and every byte goes through the relay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import spawn_peer
from apps.publish import upload
from protocols.manifest import sign_manifest
from protocols.signaling import IceServer

USER, PASSWORD = "swarm", "relay-secret"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def turn_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    exe = shutil.which("turnserver")
    if exe is None:
        raise RuntimeError("coturn's turnserver is missing: run ./scripts/setup.sh --browser (it installs coturn)")
    port, log = _free_udp_port(), tmp_path / "turnserver.log"
    low = 40000 + port % 20000
    cmd = [exe, "-n", "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port", str(port),
           "--min-port", str(low), "--max-port", str(low + 200), "--lt-cred-mech", "--user", f"{USER}:{PASSWORD}",
           "--realm", "gossip-swarm", "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls",
           "--log-file", str(log), "--simple-log", "--pidfile", str(tmp_path / "turnserver.pid"), "--verbose"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not (log.exists() and "listener opened" in log.read_text(errors="replace").lower()):
            assert proc.poll() is None, f"turnserver exited: {log.read_text(errors='replace') if log.exists() else ''}"
            assert time.monotonic() < deadline, "turnserver did not start listening"
            time.sleep(0.1)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(10)


async def test_peers_reachable_only_through_a_turn_relay_still_exchange(server: str, default_publication: Any,
                                                                         turn_server: tuple[int, Path], tmp_path: Path) -> None:  # fmt: skip
    port, turn_log = turn_server
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    ice = [IceServer(urls=[f"turn:127.0.0.1:{port}?transport=udp"], username=USER, credential=PASSWORD)]
    manifest = default_publication.manifest.model_copy(update={"ice_servers": ice, "swarm_id": "7e1a" * 8})
    publication = dataclasses.replace(default_publication, manifest=manifest, signed=sign_manifest(key, manifest))
    join_url = (await upload(server, publication))["join_url"]
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
    text = turn_log.read_text(errors="replace").lower()
    # both peers allocated relay addresses and coturn relayed their traffic to each other
    assert text.count("allocate") >= 2 and "peer 127.0.0.1" in text, text[-3000:]
