"""The browser peer records, per link, the selected ICE candidate pair's type and its RTT (as peer/link.py ice_info()).

One tab and one Python peer (an in-process ``Mesh``, aiortc on 127.0.0.1) join a tiny swarm;
the tab offers, the link opens over loopback, and the tab's ``getStats()`` reading must name a
direct pair (host, prflx or srflx: nothing relays on loopback) with a finite RTT, in
``mesh.linkReport()`` and next to the neighbor on the dashboard. The JS pair ranking must
agree with Python's ``pair_type`` for every combination of candidate types.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any

import pytest

from peer.link import pair_type
from peer.mesh import Mesh

from browser import chromium
from test_browser_signaling_resilience import MESH, eventually, open_tab, python_mesh, swarm  # noqa: F401  (swarm is a fixture)

TYPES = [None, "host", "srflx", "prflx", "relay"]
FALLBACK = """async () => {
  const { iceInfoFrom } = await import('/peer/src/link.js');
  const stats = [
    { id: "P1", type: "candidate-pair", nominated: false, state: "failed", localCandidateId: "L", remoteCandidateId: "R" },
    { id: "P2", type: "candidate-pair", nominated: true, state: "succeeded", localCandidateId: "L", remoteCandidateId: "R",
      currentRoundTripTime: 0.0421 },
    { id: "L", type: "local-candidate", candidateType: "relay", address: "198.51.100.1", port: 3478 },
    { id: "R", type: "remote-candidate", candidateType: "host", address: "203.0.113.7", port: 4242 },
  ];
  return iceInfoFrom(new Map(stats.map((s) => [s.id, s])));
}"""


@pytest.mark.timeout(120)
async def test_the_tab_reports_the_pair_type_and_rtt_of_its_python_neighbor(swarm: tuple[str, str, str]) -> None:  # noqa: F811
    join_url, ws_url, swarm_id = swarm
    meshes: list[Mesh] = []
    try:
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            await open_tab(page, join_url)  # joins first and alone, so it pulls from nobody
            python = await python_mesh(ws_url, swarm_id)  # makes no links itself: the tab offers to it
            meshes.append(python)
            report: list[dict[str, Any]] = []

            async def measured() -> bool:
                nonlocal report
                report = await page.evaluate(f"() => {MESH}.linkReport()")
                return any(r["peer"] == python.peer_id and r["pair"] and r["rtt_ms"] is not None for r in report)

            await eventually(measured, "the tab measured its link to the Python peer")
            row = next(r for r in report if r["peer"] == python.peer_id)
            assert row["client"] == "python"
            assert row["pair"] in {"host", "prflx", "srflx"}, row
            assert row["pair"] == pair_type(row["local_type"], row["remote_type"]), row
            assert math.isfinite(row["rtt_ms"]) and 0 <= row["rtt_ms"] < 1000, row
            assert row["remote_address"].startswith("127.0.0.1:"), row  # the Python peer's only address
            # the same reading next to the neighbor on the dashboard, e.g. "host · 0.4 ms"
            await page.wait_for_function(
                "([id, pair]) => [...document.querySelectorAll('#neighbors li')].some((li) =>"
                " li.textContent.startsWith(id.slice(0, 12)) && li.textContent.includes(` · ${pair} · `)"
                " && / ms,/.test(li.textContent))",
                arg=[python.peer_id, row["pair"]],
            )

            # an honest link costs no refusals: every signaling message of it was accepted
            assert await page.evaluate(f"() => ({{...{MESH}.stats.signalRejects}})") == {}

            combos = [list(c) for c in itertools.product(TYPES, TYPES)]
            ranked = await page.evaluate("async (combos) => { const { pairType } = await import('/peer/src/link.js');"
                                         " return combos.map(([l, r]) => pairType(l, r)); }", combos)  # fmt: skip
            assert ranked == [pair_type(l, r) for l, r in combos]
            # a report without a transport entry (older browsers): the nominated pair that succeeded
            fallback = await page.evaluate(FALLBACK)
            assert fallback == {"local_type": "relay", "remote_type": "host", "pair": "relay",
                                "remote_address": "203.0.113.7:4242", "rtt_ms": 42.1}  # fmt: skip
    finally:
        await asyncio.gather(*(m.close() for m in meshes), return_exceptions=True)
