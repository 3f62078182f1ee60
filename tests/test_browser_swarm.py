"""Browser peers in a real swarm: 2 headless Python peers and 2 Chromium pages train together.

Real signaling server on 127.0.0.1, real aiortc and Chromium WebRTC, TensorFlow and
TensorFlow.js. A rogue member sends tampered frames to everyone; the pages must reject all
of them and show the count. A dashboard screenshot is written to artifacts/.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page

from apps.procs import PeerProcess, spawn_peer
from apps.publish import upload

from browser import chromium, tab_accuracy
from protocols.dataset import decode_shard
from rogue import join_rogue

TARGET = 0.85
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
SNAPSHOT = "() => { const s = window.swarmPeer && window.swarmPeer.snapshot(); if (s) delete s.history; return s; }"


async def open_peer(browser: Browser, join_url: str, seed: int, errors: list[str]) -> Page:
    """A page in its own context (own IndexedDB, so its own key), as a separate person's tab."""
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"page {seed}: {exc}"))
    await page.goto(f"{join_url}?seed={seed}")
    return page


async def snapshots(pages: list[Page]) -> list[dict[str, Any]]:
    return [await page.evaluate(SNAPSHOT) for page in pages]


async def chart_points(page: Page) -> list[int]:
    """Data points in the accuracy and loss charts as drawn on the page."""
    return await page.evaluate(  # type: ignore[no-any-return]
        "() => ['acc-chart', 'loss-chart'].map(id => Chart.getChart(id)?.data.datasets[0].data.length ?? 0)"
    )


async def _board_credits_everyone(join_url: str, peer_ids: set[str]) -> None:
    """The contribution board credits every peer, Python and browser, from receipts other peers signed."""
    server, swarm_id = join_url.rsplit("/s/", 1)
    deadline = time.monotonic() + 40  # peers report every 10 s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{server}/api/swarms/{swarm_id}/board") as resp:
                board = await resp.json()
            rows = {r["peer_id"]: r for r in board["peers"]}
            if (all(rows.get(p, {}).get("vouching_peers", 0) > 0 for p in peer_ids)
                    and board["swarm_accuracy"] is not None):  # fmt: skip
                break
            assert time.monotonic() < deadline, board
            await asyncio.sleep(1)
    assert {rows[p]["client"] for p in peer_ids} == {"python", "browser"}
    assert all(rows[p]["updates_verified_by_others"] > 0 for p in peer_ids), board
    # the corroborated accuracy: the lower median of the claims of vouched peers
    claims = sorted(r["claimed_test_acc"] for r in board["peers"] if r["vouching_peers"] and r["claimed_test_acc"] is not None)
    assert board["swarm_accuracy"] == claims[(len(claims) - 1) // 2] >= TARGET - 0.05, board


def _swarm_state(snaps: list[dict[str, Any]], procs: list[PeerProcess]) -> str:
    """Each peer's links, accuracy, accepted senders, rejects and exchanges, and the tails of the Python
    peers' logs: what a phase that timed out needs to be read (the raw snapshots are truncated)."""
    lines = []
    for s in snaps:
        if not s:
            lines.append("a tab with no peer yet")
            continue
        links = ", ".join(f"{n['peerId'][:8]}({n['client']}):{n['state']}" for n in s["neighbors"])
        accepted = sorted(k[:8] for k in s["acceptedFrom"])
        lines.append(f"tab {s['peerId'][:8]} {s['status']} acc={s['testAcc']} links=[{links}] accepted_from={accepted} "
                     f"rejected={s['rejected']} exchanges={s['exchanges']}")  # fmt: skip
    for p in procs:
        r = p.latest or {}
        accepted = sorted(k[:8] for k in r.get("accepted_from", {}))
        lines.append(f"{p.name} {str(r.get('peer_id'))[:8]} acc={r.get('test_acc')} neighbors={r.get('neighbor_ids')} "
                     f"accepted_from={accepted} exchanges={r.get('exchanges')} served={r.get('served')}\n"
                     f"{p.log.read_text(errors='replace')[-2500:]}")  # fmt: skip
    return "\n".join(lines)


def _alive(procs: list[PeerProcess], errors: list[str]) -> None:
    assert not errors, errors
    assert all(p.proc.poll() is None for p in procs), "a Python peer exited early; see its log"


@pytest.mark.timeout(900)  # its own deadlines bound each phase
async def test_python_and_browser_peers_train_together_and_reject_a_rogue(server: str, default_publication: Any,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    join_url = (await upload(server, default_publication))["join_url"]
    procs = [spawn_peer(join_url, tmp_path, f"py{i}", "--seed", str(i)) for i in range(2)]
    errors: list[str] = []
    try:
        async with chromium() as browser:
            pages = [await open_peer(browser, join_url, seed, errors) for seed in (10, 11)]
            # everyone training with 2 open links before the rogue arrives: of 4 peers (2 of each kind) that
            # links every tab to a Python peer and every Python peer to a tab. Not the full mesh degree 4
            # leads to: on a loaded 2-core CI machine one pair's link can miss its first offer and its
            # retry (a connect timeout plus a retry delay each), and the mesh completing is not what this test is about
            deadline = time.monotonic() + 180
            while True:
                snaps = await snapshots(pages)
                rows = [p.latest for p in procs]
                linked = all(s and s["status"] == "training" and len([n for n in s["neighbors"] if n["state"] == "open"]) >= 2
                             for s in snaps) and all(r is not None and r["neighbors"] >= 2 for r in rows)  # fmt: skip
                if linked:
                    break
                _alive(procs, errors)
                assert all(not (s and s["error"]) for s in snaps), [s["error"] for s in snaps if s]
                assert time.monotonic() < deadline, _swarm_state(snaps, procs)
                await asyncio.sleep(1)
            rogue, sent, declined = await join_rogue(join_url, 4)
            try:
                py_ids = {r["peer_id"] for p in procs if (r := p.latest)}
                browser_ids = {s["peerId"] for s in snaps}
                screenshot_taken = False
                deadline = time.monotonic() + 300
                while True:
                    snaps = await snapshots(pages)
                    rows = [p.latest for p in procs]
                    if not screenshot_taken and min(await chart_points(pages[0])) >= 3:
                        ARTIFACTS.mkdir(exist_ok=True)  # mid-training: charts drawn, rejects arriving
                        await pages[0].screenshot(path=str(ARTIFACTS / "browser-dashboard.png"), full_page=True)
                        screenshot_taken = True
                    done = (
                        all(s["testAcc"] is not None and s["testAcc"] >= TARGET for s in snaps)
                        and all(py_ids & set(s["acceptedFrom"]) for s in snaps)
                        and all(r is not None and browser_ids & set(r["accepted_from"]) for r in rows)
                        and all(sum(s["rejected"].values()) >= sent for s in snaps)
                        # exchanges propose first (issue 15): tabs and Python peers merge, not only trade frames
                        and all(s["exchanges"].get("merged", 0) + s["exchanges"].get("served", 0) >= 1 for s in snaps)
                    )
                    if done:
                        break
                    _alive(procs, errors)
                    assert time.monotonic() < deadline, f"the rogue sent {sent} frames to each\n" + _swarm_state(snaps, procs)
                    await asyncio.sleep(1)
            finally:
                await rogue.close()
            print("\nthe rogue declined, by peer:", {k[:8]: n for k, n in declined.items()})
            print("tab exchanges:", [s["exchanges"] for s in snaps],
                  "Python exchanges:", [(r["exchanges"], r["served"]) for r in rows if r])  # fmt: skip

            # the tabs' models, evaluated here on the whole test split (not what the tabs report)
            m = default_publication.manifest
            x, y = decode_shard(default_publication.blobs[m.dataset.test.digest])
            initial = default_publication.blobs[m.model.initial_weights.digest]
            for page in pages:
                measured = await tab_accuracy(page, m, initial, x, y)
                assert measured >= TARGET - 0.02, measured
            for page, snap in zip(pages, snaps, strict=True):
                # every tampered frame was rejected for its own reason, and the page says so
                for reason in ("bad_digest", "bad_signature", "wrong_swarm", "wrong_model", "wrong_receiver",
                               "non_finite", "bad_shape"):  # fmt: skip
                    assert snap["rejected"].get(reason, 0) >= 1, (reason, snap["rejected"])
                await page.wait_for_function(f"Number(document.getElementById('rejected-total').textContent) >= {sent}")
                points = await chart_points(page)
                assert min(points) >= 3, points
            assert screenshot_taken and (ARTIFACTS / "browser-dashboard.png").stat().st_size > 10_000
            await _board_credits_everyone(join_url, py_ids | browser_ids)
    finally:
        for p in procs:
            p.terminate()
        codes = await asyncio.gather(*(p.wait(60) for p in procs))
    assert codes == [0, 0], [p.log.read_text()[-2000:] for p in procs]
