"""Pinned join links: ``…/s/<swarm id>#pk=<publisher fingerprint>`` refuses another publisher's manifest.

A malicious server (``SwappingServer``: relays a real server, but serves for the swarm a
manifest re-signed by its own key, a self-consistent envelope any peer would verify) is what
the pin is for. ``swarm publish`` prints the pinned link; ``swarm join`` with it joins the real
server and refuses the swapped manifest with a clear error; a browser tab opened with the
fragment does the same. Unpinned links keep working: they trust the key the server shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import spawn_peer
from apps.publish import upload
from peer.config import parse_join_link, pinned_join_url
from peer.fetch import PUBLISHER_PIN, fetch_manifest
from protocols.crypto import public_key_bytes, publisher_fingerprint
from protocols.errors import ManifestError
from protocols.manifest import envelope_json, parse_envelope, sign_manifest

from browser import chromium
from publish_helpers import blobs_csv, run_cli
from test_browser_signaling_resilience import tab_publication


@dataclass
class SwappingServer:
    """Relays ``upstream`` but answers ``GET /api/swarms/<id>`` with the manifest re-signed by ``key``."""

    upstream: str
    key: Ed25519PrivateKey
    http: aiohttp.ClientSession

    @property
    def fingerprint(self) -> str:
        return publisher_fingerprint(public_key_bytes(self.key))

    async def manifest(self, request: web.Request) -> web.Response:
        async with self.http.get(f"{self.upstream}/api/swarms/{request.match_info['swarm_id']}") as resp:
            honest = parse_envelope(await resp.read()).verify()
        forged = honest.model_copy(update={"publisher_key": public_key_bytes(self.key).hex()})
        return web.Response(text=envelope_json(sign_manifest(self.key, forged)), content_type="application/json")

    async def relay(self, request: web.Request) -> web.Response:
        async with self.http.get(self.upstream + request.path_qs) as resp:
            return web.Response(body=await resp.read(), status=resp.status,
                                headers={"Content-Type": resp.headers.get("Content-Type", "application/octet-stream")})  # fmt: skip


@pytest.fixture
async def swapping(server: str) -> AsyncIterator[tuple[str, SwappingServer]]:
    """(base URL of the swapping server, the server) in front of the real ``server``."""
    async with aiohttp.ClientSession() as http:
        swap = SwappingServer(server, Ed25519PrivateKey.generate(), http)
        app = web.Application()
        app.router.add_get("/api/swarms/{swarm_id}", swap.manifest)
        app.router.add_get("/{tail:.*}", swap.relay)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            yield f"http://127.0.0.1:{runner.addresses[0][1]}", swap
        finally:
            await runner.cleanup()


async def test_a_pin_refuses_another_publisher_and_an_unpinned_link_trusts_the_server(
    server: str, swapping: tuple[str, SwappingServer]
) -> None:
    base, swap = swapping
    pub = tab_publication()
    reply = await upload(server, pub)
    honest = publisher_fingerprint(bytes.fromhex(pub.manifest.publisher_key))
    link = pinned_join_url(reply["join_url"], honest)
    assert parse_join_link(link) == (server, pub.swarm_id, honest)
    assert parse_join_link(f"{reply['join_url']}#pk={honest.upper()}").publisher_pin == honest
    async with aiohttp.ClientSession() as http:
        _, manifest = await fetch_manifest(http, server, pub.swarm_id, publisher_pin=honest)
        assert manifest.publisher_key == pub.manifest.publisher_key
        # the swapped manifest verifies (it is signed by its own key): only the pin tells it apart
        _, swapped = await fetch_manifest(http, base, pub.swarm_id)  # unpinned: trust on first use
        assert publisher_fingerprint(bytes.fromhex(swapped.publisher_key)) == swap.fingerprint != honest
        with pytest.raises(ManifestError, match=f"pins publisher {honest}.*signed by {swap.fingerprint}"):
            await fetch_manifest(http, base, pub.swarm_id, publisher_pin=honest)
        token = PUBLISHER_PIN.set(honest)  # what `swarm join` sets for the peer it starts
        try:
            with pytest.raises(ManifestError, match="pins publisher"):
                await fetch_manifest(http, base, pub.swarm_id)
            await fetch_manifest(http, server, pub.swarm_id)
        finally:
            PUBLISHER_PIN.reset(token)
    for bad in ("#pk=", "#pk=abc", f"#pk={honest}00", f"#pk={'g' * 32}", f"#pk={honest}&pk={honest}"):
        with pytest.raises(ValueError, match="not a publisher fingerprint"):
            parse_join_link(reply["join_url"] + bad)


@pytest.mark.timeout(180)
async def test_swarm_publish_prints_a_pinned_link_that_joins_and_refuses_a_swapped_manifest(
    server: str, swapping: tuple[str, SwappingServer], tmp_path: Path
) -> None:
    base, swap = swapping
    csv = blobs_csv(tmp_path / "blobs.csv", n=90, features=4, classes=3)
    code, out, err = await run_cli("publish", server, "--identity", str(tmp_path / "pub.key"), "--hidden", "8:relu",
                                   "--dataset", str(csv), "--label-column", "label", "--shards", "1")  # fmt: skip
    assert code == 0, err
    lines = dict(line.split(":", 1) for line in out.strip().splitlines())
    swarm_id, link = lines["swarm id"].strip(), lines["join link"].strip()
    fingerprint = lines["publisher"].split()[0]
    assert link == f"{server}/s/{swarm_id}#pk={fingerprint}" and len(fingerprint) == 32

    # the same pin through the swapping server: refused before anything is downloaded or joined
    refused = spawn_peer(f"{base}/s/{swarm_id}#pk={fingerprint}", tmp_path, "refused")
    assert await refused.wait(90) == 2, refused.log.read_text()[-2000:]
    text = refused.log.read_text()
    assert f"swarm join: the join link pins publisher {fingerprint}" in text and f"signed by {swap.fingerprint}" in text, text
    assert "Traceback" not in text
    malformed = spawn_peer(f"{server}/s/{swarm_id}#pk=123", tmp_path, "malformed")
    assert await malformed.wait(60) == 2 and "not a publisher fingerprint" in malformed.log.read_text()

    # the printed link joins the real server
    peer = spawn_peer(link, tmp_path, "pinned", "--max-steps", "20")
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(90):
                while True:
                    assert peer.proc.poll() is None, peer.log.read_text()[-3000:]
                    async with http.get(f"{server}/api/swarms") as resp:
                        if any(s["swarm_id"] == swarm_id and s["peers"] == 1 for s in (await resp.json())["swarms"]):
                            break
                    await asyncio.sleep(0.3)
    finally:
        peer.terminate()
        assert await peer.wait(60) == 0, peer.log.read_text()[-3000:]


@pytest.mark.timeout(120)
async def test_a_tab_opened_with_a_pinned_link_refuses_another_publisher(
    server: str, swapping: tuple[str, SwappingServer]
) -> None:
    base, swap = swapping
    pub = tab_publication()
    await upload(server, pub)
    honest = publisher_fingerprint(bytes.fromhex(pub.manifest.publisher_key))
    status = "document.getElementById('status').textContent"
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{base}/s/{pub.swarm_id}?key=ephemeral#pk={honest}")
        await page.wait_for_function(f"{status}.startsWith('error:')", timeout=30_000)
        text = await page.evaluate(f"() => {status}")
        assert f"pins publisher {honest}" in text and f"signed by {swap.fingerprint}" in text, text
        assert await page.evaluate("() => window.swarmPeer.mesh === undefined")  # it never joined

        await page.goto(f"{server}/s/{pub.swarm_id}?key=ephemeral#pk=0123")
        await page.wait_for_function(f"{status}.startsWith('error:')", timeout=30_000)
        assert "not a publisher fingerprint" in await page.evaluate(f"() => {status}")

        # without the pin, the swapped manifest is taken (trust on first use) ...
        await page.goto(f"{base}/s/{pub.swarm_id}?key=ephemeral")
        await page.wait_for_function("window.swarmPeer && window.swarmPeer.manifest", timeout=30_000)
        key = await page.evaluate("() => window.swarmPeer.manifest.publisher_key")
        assert publisher_fingerprint(bytes.fromhex(key)) == swap.fingerprint
        # ... and the pinned link on the real server joins and trains
        await page.goto(f"{server}/s/{pub.swarm_id}?key=ephemeral#pk={honest}")
        await page.wait_for_function("window.swarmPeer && window.swarmPeer.status === 'training'", timeout=60_000)
        assert await page.evaluate("() => window.swarmPeer.manifest.publisher_key") == pub.manifest.publisher_key
        assert any(f"pins publisher {honest}" in e for e in await page.evaluate("() => window.swarmPeer.events"))

