"""A browser at home joins over HTTPS through its NAT (issue 10, test 3).

Chromium runs inside home a's namespace with default flags: no loopback or mDNS flags, so it
offers only mDNS ``.local`` host candidates plus the server-reflexive candidate it learns from
the signaling server's STUN (the welcome's ICE server; the manifest lists none). The link is
HTTPS with the server's self-signed certificate, accepted as a user clicking through would
(``ignore_https_errors``). A Python peer in home b trusts the certificate (SSL_CERT_FILE).
Both must reach the target and accept each other's verified updates.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from browser import CHROMIUM
from netlab import Home, Internet, NatType

from apps.netswarm import assert_no_traceback, pair_types, peer_in, preload, stop, swarm_server

TARGET = 0.90
SNAPSHOT = "() => { const s = window.swarmPeer && window.swarmPeer.snapshot(); if (s) delete s.history; return s; }"


def chromium_in(namespace: str, directory: Path) -> Path:
    """An executable that starts Debian's Chromium inside ``namespace`` (Playwright talks to it over a pipe)."""
    wrapper = directory / "chromium-in-namespace"
    wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.timeout(600)
async def test_a_default_chromium_behind_a_nat_trains_with_a_python_peer_over_https(tmp_path: Path,
                                                                                   default_publication: Any) -> None:  # fmt: skip
    swarm_id = preload(tmp_path / "server-data", default_publication)
    with Internet([Home("a", NatType.EIM, "broadband"), Home("b", NatType.EIM, "broadband")]) as net:
        with swarm_server(net, tmp_path, tls=True) as base:
            join = f"{base}/s/{swarm_id}"
            cert = tmp_path / "server-data" / "tls" / "cert.pem"
            py = peer_in(net.homes["b"].hosts[0], join, tmp_path, "peer-b", "--seed", "1", env={"SSL_CERT_FILE": str(cert)})
            errors: list[str] = []
            try:
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=str(chromium_in(net.homes["a"].hosts[0].namespace, tmp_path)),
                                                       args=["--no-sandbox"], headless=True)  # fmt: skip
                    try:
                        context = await browser.new_context(ignore_https_errors=True)
                        page = await context.new_page()
                        page.on("pageerror", lambda exc: errors.append(str(exc)))
                        await page.goto(f"{join}?seed=10")
                        deadline = time.monotonic() + 360
                        while True:
                            snap = await page.evaluate(SNAPSHOT)
                            row = py.latest
                            done = (snap and snap["testAcc"] is not None and snap["testAcc"] >= TARGET
                                    and row is not None and row["test_acc"] >= TARGET
                                    and snap["peerId"] in row["accepted_from"] and row["peer_id"] in snap["acceptedFrom"])  # fmt: skip
                            if done:
                                break
                            assert not errors, errors
                            assert not (snap and snap["error"]), snap["error"]
                            assert py.proc.poll() is None, py.log.read_text(errors="replace")[-3000:]
                            assert time.monotonic() < deadline, (snap, row)
                            await asyncio.sleep(1.0)
                        browser_pairs = {n["ice"]["pair"] for n in snap["neighbors"] if n.get("ice") and n["ice"].get("pair")}
                    finally:
                        await browser.close()
            finally:
                await stop([py])
    print("browser pair types", browser_pairs, "python pair types", pair_types(py))
    # Chromium's host candidates are mDNS names aioice cannot resolve: the path runs through
    # the NATs' public mappings (srflx, or prflx once checks discover them)
    assert pair_types(py) and pair_types(py) <= {"srflx", "prflx"}, [r["links"] for r in py.rows]
    assert browser_pairs and browser_pairs <= {"srflx", "prflx"}, snap["neighbors"]
    assert not errors, errors
    assert_no_traceback(py.log)
