"""The README's main job: `swarm demo` with a browser tab opened on the link it prints.

The demo keeps the swarm up (`--linger`) after the Python peers reach the target so a person
can open the link; the tab joins, trains with the Python peers, and the demo's summary lists it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.procs import free_port

from browser import chromium

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
async def test_demo_prints_a_link_where_a_browser_tab_trains_with_the_python_peers(tmp_path: Path) -> None:
    workdir, out = tmp_path / "demo", tmp_path / "demo.out"
    cmd = [sys.executable, "-m", "apps.cli", "demo", "--peers", "2", "--port", str(free_port()), "--linger", "45",
           "--workdir", str(workdir)]  # fmt: skip
    with out.open("wb") as sink:
        demo = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 120
        while not (m := re.search(r"join link:\s*(\S+/s/[0-9a-f]{32})", out.read_text(errors="replace"))):
            assert demo.poll() is None and time.monotonic() < deadline, out.read_text(errors="replace")[-3000:]
            await asyncio.sleep(0.5)
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            await page.goto(m.group(1))
            await page.wait_for_function("window.swarmPeer && window.swarmPeer.snapshot().testAcc >= 0.85"
                                         " && Object.keys(window.swarmPeer.snapshot().acceptedFrom).length > 0",
                                         timeout=240_000)  # fmt: skip
            assert await asyncio.to_thread(demo.wait, 300) == 0, out.read_text(errors="replace")[-3000:]
    finally:
        if demo.poll() is None:
            demo.terminate()
            demo.wait(60)
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["reached_target"] and len(summary["peers"]) == 2
    assert len(summary["browsers"]) == 1 and summary["browsers"][0]["updates_verified_by_others"] > 0, summary
