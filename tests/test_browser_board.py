"""A browser tab's receipts on the contribution board: signed by its non-extractable WebCrypto key
(peer.js reportSource, receipts.js, mesh.js), verified by the real server, next to a Python
mesh's receipts for the tab (peer/receipts.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.mesh import Mesh, MeshConfig
from peer.receipts import ReceiptBook
from protocols.signaling import Report

from browser import chromium
from test_browser_signaling_resilience import MAX_FRAME, MESH, _ignore, eventually, open_tab, swarm  # noqa: F401  (fixture)


@pytest.mark.timeout(180)
async def test_a_tab_and_a_python_peer_vouch_for_each_other(swarm: tuple[str, str, str]) -> None:  # noqa: F811
    join_url, ws_url, swarm_id = swarm
    server = join_url.rsplit("/s/", 1)[0]
    key = Ed25519PrivateKey.generate()
    counts: dict[str, int] = {}
    mesh = Mesh(key, ws_url, swarm_id, MeshConfig(degree=0, max_degree=0, report_interval=2.5),
                max_frame_size=MAX_FRAME, on_frame=_ignore)  # fmt: skip
    book = ReceiptBook(key, swarm_id, counts)
    mesh.report_source = lambda: Report(step=7, test_acc=0.6, receipts=book.due())
    errors: list[str] = []
    try:
        await asyncio.wait_for(mesh.start(), 30)
        async with chromium() as browser, aiohttp.ClientSession() as http:
            page = await (await browser.new_context()).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            tab = await open_tab(page, join_url)
            # the frames each accepted from the other, as their transports count them
            counts[tab] = 4
            await page.evaluate(f"(p) => {{ window.swarmPeer.metrics.acceptedFrom[p] = 3; return {MESH}._keepAlive(); }}", mesh.peer_id)
            board: dict[str, Any] = {}

            async def credited() -> bool:
                nonlocal board
                async with http.get(f"{server}/api/swarms/{swarm_id}/board") as resp:
                    board = await resp.json()
                rows = {r["peer_id"]: r for r in board["peers"]}
                return all(rows.get(p, {}).get("vouching_peers") == 1 for p in (tab, mesh.peer_id))

            try:
                await eventually(credited, "the tab and the Python peer credit each other")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {board}") from None
            rows = {r["peer_id"]: r for r in board["peers"]}
            assert rows[mesh.peer_id]["updates_verified_by_others"] == 3 and rows[tab]["updates_verified_by_others"] == 4
            assert rows[tab]["client"] == "browser" and board["refused_receipts"] == {}, board
            async with http.get(f"{server}/api/swarms/{swarm_id}/board/{mesh.peer_id}/receipts") as resp:
                (receipt,) = (await resp.json())["receipts"]
            assert receipt["voucher"] == tab and len(receipt["session"]) == 16
    finally:
        await mesh.close()
    assert not errors, errors
