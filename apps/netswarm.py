"""A swarm in an emulated internet (``netlab``): the server on the public segment, peers in homes.

Used by the real-network tests, the research ``webrtc`` backend with a network profile and
``benchmarks/wan.py``. The calling process stays in the root namespace; the server, coturn,
peers and browsers run inside namespaces through ``ip netns exec``, and they share the
caller's files (metrics, logs, the server's data directory), which namespaces do not isolate.
A publication is stored in the server's data directory before it starts (``preload``): the
root namespace cannot reach the server's address.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from apps.procs import PeerProcess, spawn_peer
from netlab import Host, Internet
from protocols.manifest import envelope_json
from signaling.store import ContentStore

SERVER_PORT = 8765
STUN_PORT = 3478
TURN_PORT = 3480


def preload(data_dir: Path, publication: Any) -> str:
    """Store a publication in a server data directory before the server starts; return its swarm id."""
    ContentStore(data_dir).publish(envelope_json(publication.signed).encode(), dict(publication.blobs), max_swarms=10)
    return str(publication.manifest.swarm_id)


@contextmanager
def swarm_server(net: Internet, workdir: Path, *extra: str, tls: bool = False) -> Iterator[str]:
    """``swarm serve`` on the server host (STUN on, the default); yield its base URL once it answers.

    Its data directory is ``workdir/server-data`` (``preload`` publications there first).
    """
    scheme = "https" if tls else "http"
    log = workdir / "server.log"
    cmd = [sys.executable, "-m", "apps.cli", "serve", "--host", net.server.ip, "--port", str(SERVER_PORT),
           "--data-dir", str(workdir / "server-data"), "--stun-port", str(STUN_PORT), *extra,
           *(["--self-signed"] if tls else [])]  # fmt: skip
    with log.open("wb") as out:
        proc = net.popen(net.server, cmd, stdout=out, stderr=out)
    base = f"{scheme}://{net.server.ip}:{SERVER_PORT}"
    probe = ("import ssl, sys, urllib.request; ctx = ssl._create_unverified_context(); "
             f"urllib.request.urlopen('{base}/health', timeout=2, context=ctx)")  # fmt: skip
    deadline = time.monotonic() + 30
    while net.run(net.server, [sys.executable, "-c", probe], capture_output=True).returncode != 0:
        assert proc.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, "the signaling server did not answer /health: " + log.read_text(errors="replace")
        time.sleep(0.3)
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001 - killed with its namespace at the latest
            proc.kill()


def peer_in(host: Host, join_url: str, workdir: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> PeerProcess:
    """``swarm join`` inside ``host``: no ``--ice-address``, ICE gathers the namespace's own addresses."""
    return spawn_peer(join_url, workdir, name, "--eval-limit", "500", *extra, prefix=host.exec_prefix, ice_address=None,
                      env=env)  # fmt: skip


async def until_trained(procs: Sequence[PeerProcess], target: float, timeout: float, *, what: str = "") -> list[dict[str, Any]]:
    """Wait until every peer evaluated at ``target`` or better having accepted a neighbor's update."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [p.latest for p in procs]
        if all(r is not None and r["test_acc"] >= target and r["accepted_from"] for r in rows):
            return rows  # type: ignore[return-value]
        for p in procs:
            assert p.proc.poll() is None, f"{p.name} exited: {p.log.read_text(errors='replace')[-3000:]}"
        assert time.monotonic() < deadline, (what, [(p.name, r and r["test_acc"], r and r["links"]) for p, r in zip(procs, rows)],
                                             [p.log.read_text(errors="replace")[-1500:] for p in procs])  # fmt: skip
        await asyncio.sleep(1.0)


def pair_types(proc: PeerProcess) -> set[str]:
    """Every selected candidate pair type this peer reported for any link."""
    return {str(link["pair"]) for row in proc.rows for link in row.get("links", []) if link.get("pair")}


async def stop(procs: Sequence[PeerProcess]) -> None:
    for p in procs:
        p.terminate()
    await asyncio.gather(*(p.wait(60) for p in procs))


def assert_no_traceback(*logs: Path) -> None:
    for log in logs:
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"{log.name}:\n{text[-4000:]}"
