"""The tab's neighbor options: ``?ice-relay-only`` sends every byte through coturn, ``?degree=`` sets the target.

coturn (Debian's ``turnserver``, config from ``swarm turn-config``) runs on 127.0.0.1 and the
signaling server issues each peer TURN REST credentials in its welcome, as in
tests/test_turn_relay.py. The Python peer is not relay-only and offers a 127.0.0.1 host
candidate, so without the tab's ``iceTransportPolicy: "relay"`` the pair would be host-host:
a relay pair with the tab's side relayed can only come from the tab's option.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.procs import spawn_peer, start_server
from apps.publish import upload
from signaling.ice import load_turn_secret

from browser import chromium
from turn import coturn

SNAPSHOT = "() => { const s = window.swarmPeer && window.swarmPeer.snapshot(); if (s) delete s.history; return s; }"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def turn_server(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """coturn on 127.0.0.1, relaying to loopback peers: (port, log, secret file)."""
    secret = tmp_path / "turn-secret"
    secret.write_text("test-secret-" + "cd" * 16)
    port = _free_udp_port()
    with coturn(tmp_path, secret, ip="127.0.0.1", port=port, loopback_peers=True) as log:
        yield port, log, secret


@pytest.mark.timeout(420)
async def test_a_relay_only_tab_links_through_coturn_and_keeps_its_degree(default_publication: Any, tmp_path: Path,
                                                                          turn_server: tuple[int, Path, Path]) -> None:  # fmt: skip
    port, turn_log, secret_file = turn_server
    runner, server = await start_server(tmp_path / "server-data", turn_urls=[f"turn:127.0.0.1:{port}?transport=udp"],
                                        turn_secret=load_turn_secret(secret_file))  # fmt: skip
    join_url = (await upload(server, default_publication))["join_url"]
    py = spawn_peer(join_url, tmp_path, "py", "--seed", "1", "--eval-limit", "500")
    errors: list[str] = []
    try:
        async with chromium() as browser:
            # a value the tab cannot use is refused on the page, before anything joins
            bad = await (await browser.new_context()).new_page()
            await bad.goto(f"{join_url}?degree=0")
            await bad.wait_for_function("document.getElementById('status').textContent.includes('not a number of neighbors')")
            assert await bad.evaluate("window.swarmPeer === undefined")

            page = await (await browser.new_context()).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{join_url}?seed=10&ice-relay-only&degree=2")
            deadline = time.monotonic() + 240
            while True:
                snap = await page.evaluate(SNAPSHOT)
                row = py.latest
                links = snap["links"] if snap else []
                python_links = [link for link in (row or {}).get("links", []) if snap and link["peer"] == snap["peerId"]]
                done = (
                    links and all(link["pair"] == "relay" for link in links)
                    and sum(snap["exchanges"].get(k, 0) for k in ("merged", "served")) >= 2
                    and row is not None and snap["peerId"] in row["accepted_from"] and row["peer_id"] in snap["acceptedFrom"]
                    and bool(python_links)
                )  # fmt: skip
                if done:
                    break
                assert not errors, errors
                assert not (snap and snap["error"]), snap["error"]
                assert py.proc.poll() is None, py.log.read_text()[-3000:]
                assert time.monotonic() < deadline, (snap, row, turn_log.read_text(errors="replace")[-3000:])
                await asyncio.sleep(1)
            config = await page.evaluate("() => { const c = window.swarmPeer.mesh.config; return {degree: c.degree, relayOnly: c.relayOnly}; }")
            assert config == {"degree": 2, "relayOnly": True} and snap["relayOnly"] is True
            # the tab gathered relay candidates only: its side of every pair is coturn's address,
            # and the Python peer (not relay-only) sees the tab's relayed candidate on the other end
            assert all(link["local_type"] == "relay" for link in links), links
            assert all(link["remote_type"] == "relay" and link["pair"] == "relay" for link in python_links), python_links
    finally:
        py.terminate()
        code = await py.wait(60)
        await runner.cleanup()
    assert code == 0, py.log.read_text()[-2000:]
    text = turn_log.read_text(errors="replace").lower()
    assert "allocate" in text and "peer 127.0.0.1" in text, text[-3000:]
