"""An honest swarm on the contribution board: two real Python peers (subprocesses, real aiortc
on loopback) train the default MLP, and the board credits each with the other's signed receipts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from apps.procs import PeerProcess, spawn_peer
from apps.publish import upload
from protocols.crypto import receipt_message, verify


@pytest.fixture
async def pair(server: str, default_publication: Any, tmp_path: Path) -> AsyncIterator[tuple[str, list[PeerProcess]]]:
    reply = await upload(server, default_publication)
    procs = [spawn_peer(reply["join_url"], tmp_path, f"peer{i}", "--max-steps", "300", "--seed", str(i)) for i in range(2)]
    try:
        yield reply["swarm_id"], procs
    finally:
        for p in procs:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in procs))


async def _board(http: aiohttp.ClientSession, server: str, swarm_id: str) -> dict[str, Any]:
    async with http.get(f"{server}/api/swarms/{swarm_id}/board") as resp:
        return await resp.json()  # type: ignore[no-any-return]


@pytest.mark.timeout(300)
async def test_two_honest_peers_each_credit_the_other(server: str, pair: tuple[str, list[PeerProcess]]) -> None:
    swarm_id, procs = pair
    deadline = time.monotonic() + 240
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while True:
            body = await _board(http, server, swarm_id)
            rows = {r["peer_id"]: r for r in body["peers"]}
            if (len(rows) == 2 and all(r["vouching_peers"] == 1 and r["updates_verified_by_others"] > 0 for r in rows.values())
                    and body["swarm_accuracy"] is not None):  # fmt: skip
                break
            assert time.monotonic() < deadline, body
            assert all(p.proc.poll() is None for p in procs), "a peer exited early; see its log"
            await asyncio.sleep(1)
        assert body["refused_receipts"] == {}, body  # honest receipts are never refused
        claims = sorted(r["claimed_test_acc"] for r in rows.values())
        assert body["swarm_accuracy"] == claims[0]  # the lower median of two claims
        a, b = rows
        for credited, voucher in ((a, b), (b, a)):  # the evidence, re-verified here
            async with http.get(f"{server}/api/swarms/{swarm_id}/board/{credited}/receipts") as resp:
                (receipt,) = (await resp.json())["receipts"]
            assert receipt["voucher"] == voucher
            message = receipt_message(swarm_id, voucher, credited, bytes.fromhex(receipt["session"]), receipt["frames"])
            verify(bytes.fromhex(receipt["voucher_key"]), bytes.fromhex(receipt["signature"]), message)
