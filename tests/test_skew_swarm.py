"""A live swarm published with ``gossip.mixing = "exponential"``: five Python peers over loopback aiortc.

Each peer orders the members it knows by peer id (the welcome's list and ``peer_joined``
announcements) and links to its exponential partners ``i + 2^k`` and the members whose partner
it is, ``i - 2^k``, first (``peer.mesh``); its round
``r`` exchange goes to member ``i + 2^(r mod 3)`` when that link is open (``peer.schedule.Exchanges``).
Published with degree 1, plain gossip would make one or two links a peer; here every peer must
link to all of its exponential partners, start exchanges with each of them, take the round's
partner in most rounds, and every peer must finish its steps at the publisher's target.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import PeerProcess, spawn_peer
from apps.publish import default_publication, upload
from peer.skew import exponential_neighbors
from protocols.manifest import GossipConfig, TrainingConfig

PEERS = 5
TARGET = 0.85
MAX_STEPS = 600  # then they keep gossiping without training


@pytest.fixture
async def swarm(server: str, publisher_key: Ed25519PrivateKey, tmp_path: Path) -> AsyncIterator[list[PeerProcess]]:
    pub = await asyncio.to_thread(
        default_publication, publisher_key, swarm_id="e4" * 16, shards=PEERS, seed=0,
        training=TrainingConfig(local_steps=20, eval_every=50, target_accuracy=TARGET),
        gossip=GossipConfig(mixing="exponential", degree=1, max_degree=8),
    )  # fmt: skip
    reply = await upload(server, pub)
    procs = [spawn_peer(reply["join_url"], tmp_path, f"peer{i}", "--max-steps", str(MAX_STEPS), "--seed", str(i))
             for i in range(PEERS)]  # fmt: skip
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in procs))


def _done(row: dict[str, Any] | None, partners: list[str]) -> bool:
    return (row is not None and row["step"] >= MAX_STEPS and row["test_acc"] >= TARGET
            and row["target_reached_step"] is not None and set(partners) <= set(row["neighbor_ids"])
            and all(row["exchange_partners"].get(p, 0) >= 3 for p in partners))  # fmt: skip


@pytest.mark.timeout(900)
async def test_exponential_peers_link_to_and_exchange_with_their_exponential_partners_and_reach_the_target(
    swarm: list[PeerProcess],
) -> None:
    async with asyncio.timeout(240):  # every peer up and reporting
        while not all(p.latest is not None for p in swarm):
            assert all(p.proc.poll() is None for p in swarm), "a peer exited early; see its log"
            await asyncio.sleep(0.5)
    ids = [p.latest["peer_id"] for p in swarm]  # type: ignore[index]
    partners = {me: exponential_neighbors(me, ids) for me in ids}
    assert all(len(v) == 3 for v in partners.values())  # 5 members: i + 1, i + 2, i + 4
    deadline = time.monotonic() + 600
    while not all(_done(p.latest, partners[p.latest["peer_id"]]) for p in swarm):  # type: ignore[index]
        assert time.monotonic() < deadline, [{k: (p.latest or {}).get(k) for k in (
            "step", "test_acc", "neighbor_ids", "exchange_partners", "exponential_partners", "on_schedule", "exchange_rounds")}
            for p in swarm]  # fmt: skip
        assert all(p.proc.poll() is None for p in swarm), "a peer exited early; see its log"
        await asyncio.sleep(1.0)
    # once its partners' links are open, a peer's rounds start with the round's partner (before, the
    # round fell back to a random open link: a link can take a connect timeout to open, see DESIGN.md)
    linked = {p.name: (p.latest["exchange_rounds"], p.latest["on_schedule"]) for p in swarm}  # type: ignore[index]
    while not all(p.latest["exchange_rounds"] >= linked[p.name][0] + 10 for p in swarm):  # type: ignore[index]
        assert time.monotonic() < deadline + 120, [p.latest for p in swarm]
        await asyncio.sleep(1.0)
    for p in swarm:
        row = p.latest
        assert row is not None
        assert row["mixing"] == "exponential" and row["fanout"] == 1
        assert row["exponential_partners"] == partners[row["peer_id"]]  # every peer sees the same five members
        rounds, on_schedule = row["exchange_rounds"] - linked[p.name][0], row["on_schedule"] - linked[p.name][1]
        assert on_schedule >= 0.9 * rounds, (p.name, rounds, on_schedule)
        assert row["exchanges"]["merged"] + row["served"] > 0


def _why(snap: dict[str, Any] | None, procs: list[PeerProcess], errors: list[str], console: list[str]) -> str:
    """Everything needed to tell which link or exchange never happened, as text (pytest shortens objects)."""
    tab = snap and {k: snap.get(k) for k in ("peerId", "status", "error", "exchangePartners", "exponentialPartners",
                                              "onSchedule", "exchangeRounds", "neighbors", "known", "signalRejects",
                                              "signalingErrors", "sessions", "exchanges", "rejected", "bans", "events")}  # fmt: skip
    pys = [{k: (p.latest or {}).get(k) for k in ("peer_id", "neighbor_ids", "exchange_partners", "exponential_partners",
                                                  "exchanges", "bans", "rejected", "signaling", "links")} for p in procs]  # fmt: skip
    logs = {p.name: p.log.read_text(errors="replace").splitlines()[-40:] for p in procs if p.log.exists()}
    return json.dumps({"tab": tab, "python": pys, "page_errors": errors, "console": console, "logs": logs}, default=str)


SNAPSHOT = "() => { const s = window.swarmPeer && window.swarmPeer.snapshot(); if (s) delete s.history; return s; }"


@pytest.mark.timeout(900)
async def test_a_tab_in_an_exponential_swarm_links_to_and_exchanges_with_its_exponential_partners(
    server: str, publisher_key: Ed25519PrivateKey, tmp_path: Path,
) -> None:
    from browser import chromium

    pub = await asyncio.to_thread(
        default_publication, publisher_key, swarm_id="e5" * 16, shards=4, seed=0,
        training=TrainingConfig(local_steps=20, eval_every=50, target_accuracy=TARGET),
        gossip=GossipConfig(mixing="exponential", degree=1, max_degree=8),
    )  # fmt: skip
    join_url = (await upload(server, pub))["join_url"]
    procs = [spawn_peer(join_url, tmp_path, f"py{i}", "--seed", str(i)) for i in range(3)]
    errors: list[str] = []
    console: list[str] = []
    try:
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}")
                    if m.type in ("warning", "error") and len(console) < 200 else None)  # fmt: skip
            await page.goto(f"{join_url}?seed=7")
            deadline = time.monotonic() + 600
            while True:
                snap = await page.evaluate(SNAPSHOT)
                ids = [p.latest["peer_id"] for p in procs if p.latest is not None]
                if snap and snap.get("peerId") and len(ids) == 3:
                    members = [snap["peerId"], *ids]
                    partners = exponential_neighbors(snap["peerId"], members)
                    open_ids = {n["peerId"] for n in snap["neighbors"] if n["state"] == "open"}
                    if (set(partners) <= open_ids and all(snap["exchangePartners"].get(p, 0) >= 3 for p in partners)
                            and all(snap["peerId"] in p.latest["exchange_partners"] for p in procs  # type: ignore[index]
                                    if snap["peerId"] in exponential_neighbors(p.latest["peer_id"], members))):  # type: ignore[index]
                        break
                assert time.monotonic() < deadline, _why(snap, procs, errors, console)
                assert all(p.proc.poll() is None for p in procs), "a peer exited early; see its log"
                await asyncio.sleep(1.0)
            assert snap["mixing"] == "exponential" and snap["fanout"] == 1
            assert snap["exponentialPartners"] == partners  # the tab sees the members Python sees, in the same order
            before = snap
            while (snap := await page.evaluate(SNAPSHOT))["exchangeRounds"] < before["exchangeRounds"] + 10:
                assert time.monotonic() < deadline + 120, snap
                await asyncio.sleep(1.0)
            assert snap["onSchedule"] - before["onSchedule"] >= 0.9 * (snap["exchangeRounds"] - before["exchangeRounds"])
            assert not errors, errors
    finally:
        for p in procs:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in procs))
