"""One identity is one peer (issue 14, item 8).

Two processes with the same key file used to replace each other on the server about once a
second, forever: the server now refuses a second live connection with ``already_joined`` and
replaces the old socket only when it no longer answers a WebSocket ping (a peer reconnecting
over its own stale socket still gets in). The refused ``swarm join`` exits saying what to do,
a second browser tab with the browser's key joins with a key of its own and says so, and two
processes never share a checkpoint directory (``.lock``, ``fcntl.flock``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.publish import upload
from peer.checkpoint import CheckpointInUse, CheckpointLock
from peer.link import PeerLink
from peer.mesh import Mesh, MeshConfig
from protocols.crypto import join_message, private_key_seed, public_key_bytes, sign
from protocols.signaling import Challenge, Error, Join, PeerJoined, PeerLeft, Welcome, dump, parse_server_message
from signaling.app import SAME_KEY_PROBE_S

from browser import chromium
from test_browser_signaling_resilience import tab_publication
from tiny_swarm import tiny_publication

TIMEOUT = 10.0
ROOT = Path(__file__).resolve().parent.parent


async def _ignore(link: PeerLink, data: bytes) -> None:
    return None


@pytest.fixture
async def swarm(server: str) -> AsyncIterator[tuple[str, str]]:
    """(server base url, swarm id) of a tiny published swarm."""
    reply = await upload(server, tiny_publication(Ed25519PrivateKey.generate()))
    yield server, reply["swarm_id"]


async def live_peer(server: str, swarm_id: str, key: Ed25519PrivateKey) -> Mesh:
    """A joined Python mesh: it reads its socket all the time, so it answers the server's pings."""
    mesh = Mesh(key, server.replace("http", "ws", 1) + "/ws", swarm_id, MeshConfig(degree=0, max_degree=0),
                max_frame_size=1 << 20, on_frame=_ignore)  # fmt: skip
    await asyncio.wait_for(mesh.start(), TIMEOUT)
    return mesh


async def try_join(http: aiohttp.ClientSession, server: str, swarm_id: str, key: Ed25519PrivateKey,
                   *, autoping: bool = True) -> tuple[aiohttp.ClientWebSocketResponse, object]:  # fmt: skip
    """Connect and join with ``key``; return the socket and the server's answer (welcome or error)."""
    ws = await http.ws_connect(server.replace("http", "ws", 1) + "/ws", autoping=autoping)
    challenge = parse_server_message((await ws.receive(timeout=TIMEOUT)).data)
    assert isinstance(challenge, Challenge)
    proof = sign(key, join_message(bytes.fromhex(challenge.nonce), swarm_id))
    await ws.send_str(dump(Join(swarm_id=swarm_id, public_key=public_key_bytes(key).hex(), signature=proof.hex())))
    while True:
        msg = await ws.receive(timeout=TIMEOUT + SAME_KEY_PROBE_S)
        if msg.type == WSMsgType.TEXT:
            return ws, parse_server_message(msg.data)


async def health_peers(http: aiohttp.ClientSession, server: str) -> int:
    async with http.get(f"{server}/health") as resp:
        return int((await resp.json())["peers"])


async def test_a_second_live_connection_with_one_key_is_refused_and_the_first_keeps_its_place(swarm: tuple[str, str]) -> None:
    server, swarm_id = swarm
    key = Ed25519PrivateKey.generate()
    first = await live_peer(server, swarm_id, key)
    watcher = await live_peer(server, swarm_id, Ed25519PrivateKey.generate())
    seen: list[object] = []
    real_dispatch = watcher._dispatch

    async def record(msg: object) -> None:
        seen.append(msg)
        await real_dispatch(msg)

    watcher._dispatch = record  # type: ignore[method-assign]
    try:
        async with aiohttp.ClientSession() as http:
            took = []
            for _ in range(5):  # the second process retrying, as its mesh would
                started = time.monotonic()
                ws, answer = await try_join(http, server, swarm_id, key)
                took.append(time.monotonic() - started)
                assert isinstance(answer, Error) and answer.code == "already_joined", answer
                assert "--identity" in answer.message
                assert (await ws.receive(timeout=TIMEOUT)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
                await ws.close()
            await asyncio.sleep(1.0)  # anything the refusals disturbed would have reached the others by now
            assert first.stats.sessions == 1 and first.connected.is_set()  # never replaced, never reconnected
            assert not [m for m in seen if isinstance(m, PeerJoined | PeerLeft)], seen  # no flapping seen by others
            assert await health_peers(http, server) == 2
            print(f"\nsecond live connection with one key: refused 5 times of 5 in {max(took) * 1000:.0f} ms at most; "
                  "the first kept its one session")  # fmt: skip
    finally:
        await asyncio.gather(first.close(), watcher.close())


async def test_a_reconnect_over_its_own_dead_socket_still_gets_in(swarm: tuple[str, str]) -> None:
    server, swarm_id = swarm
    key = Ed25519PrivateKey.generate()
    async with aiohttp.ClientSession() as http:
        stale, answer = await try_join(http, server, swarm_id, key, autoping=False)  # never answers a ping again
        assert isinstance(answer, Welcome)
        started = time.monotonic()
        fresh, answer = await try_join(http, server, swarm_id, key)
        took = time.monotonic() - started
        assert isinstance(answer, Welcome), answer
        print(f"\nreconnect over a dead socket: replaced it after {took:.2f} s (probe {SAME_KEY_PROBE_S:.0f} s)")
        assert SAME_KEY_PROBE_S <= took < SAME_KEY_PROBE_S + 2.0
        assert await health_peers(http, server) == 1
        # and a clean reconnect (the old socket closed) gets in at once
        await fresh.close()
        started = time.monotonic()
        again, answer = await try_join(http, server, swarm_id, key)
        assert isinstance(answer, Welcome) and time.monotonic() - started < 1.0
        await asyncio.gather(stale.close(), again.close())


def swarm_join(server: str, swarm_id: str, key_file: Path, checkpoint_dir: Path) -> subprocess.CompletedProcess[str]:
    """``swarm join`` as a user runs it, in its own process; returns when it exits (or fails the test)."""
    argv = [sys.executable, "-m", "apps.cli", "join", f"{server}/s/{swarm_id}", "--identity", str(key_file),
            "--checkpoint-dir", str(checkpoint_dir), "--ice-address", "127.0.0.1", "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_the_refused_python_peer_exits_saying_use_identity(swarm: tuple[str, str], tmp_path: Path) -> None:
    server, swarm_id = swarm
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "identity.key"
    key_file.write_text(private_key_seed(key).hex() + "\n")
    first = await live_peer(server, swarm_id, key)  # the other terminal
    try:
        started = time.monotonic()
        done = await asyncio.to_thread(swarm_join, server, swarm_id, key_file, tmp_path / "ckpt")
        took = time.monotonic() - started
        print(f"\nsecond `swarm join` with the same key file: exit code {done.returncode} after {took:.1f} s: "
              f"{done.stderr.strip().splitlines()[-1]}")  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "--identity" in done.stderr and "another process is already in swarm" in done.stderr
        assert "Traceback" not in done.stderr
        assert first.stats.sessions == 1 and first.connected.is_set()
    finally:
        await first.close()


async def test_two_processes_never_share_a_checkpoint_directory(swarm: tuple[str, str], tmp_path: Path) -> None:
    server, swarm_id = swarm
    key_file = tmp_path / "other.key"
    key_file.write_text(private_key_seed(Ed25519PrivateKey.generate()).hex() + "\n")
    shared = tmp_path / "ckpt"
    holder = CheckpointLock(shared)  # a running peer
    try:
        done = await asyncio.to_thread(swarm_join, server, swarm_id, key_file, shared)
        assert done.returncode == 2, done.stderr
        assert f"is in use by another peer process (pid {os.getpid()})" in done.stderr, done.stderr
        assert "--identity" in done.stderr and "Traceback" not in done.stderr
        with pytest.raises(CheckpointInUse):
            CheckpointLock(shared)  # a second lock in this process too (flock is per open file)
    finally:
        holder.release()
    CheckpointLock(shared).release()  # free again once released
    await asyncio.to_thread(_killed_holder_leaves_it_free, shared)


def _killed_holder_leaves_it_free(shared: Path) -> None:
    """A holder that dies however it dies (SIGKILL) leaves the directory free: the kernel drops its lock."""
    script = f"from peer.checkpoint import CheckpointLock; CheckpointLock(__import__('pathlib').Path({str(shared)!r})); print('held', flush=True); __import__('time').sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointInUse):
            CheckpointLock(shared)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    CheckpointLock(shared).release()


@pytest.mark.timeout(180)
async def test_a_second_tab_with_the_browsers_key_joins_with_its_own_and_says_so(server: str) -> None:
    reply = await upload(server, tab_publication())
    async with chromium() as browser:
        context = await browser.new_context()  # one IndexedDB: both tabs load the same identity
        tabs = [await context.new_page(), await context.new_page()]
        ids = []
        for tab in tabs:
            await tab.goto(reply["join_url"])
            await tab.wait_for_function("window.swarmPeer && window.swarmPeer.status === 'training'", timeout=60_000)
            await tab.evaluate("() => window.swarmPeer.pause()")
            ids.append(await tab.evaluate("() => window.swarmPeer.peerId"))
        log = await tabs[1].evaluate("() => window.swarmPeer.snapshot().events.join('\\n')")
        assert "already joined" in log, log
        assert ids[0] != ids[1]
        await asyncio.sleep(2.0)  # no flapping: each tab keeps its one session
        sessions = [await tab.evaluate("() => window.swarmPeer.mesh.stats.sessions") for tab in tabs]
        assert sessions == [1, 1], sessions
        async with aiohttp.ClientSession() as http:
            assert await health_peers(http, server) == 2
