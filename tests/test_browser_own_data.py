"""Bring your own data in the browser: a CSV picked on the page trains the tab, checked first.

The file is read in the tab (FileReader), checked against the model's input size and classes,
and never uploaded: the test records every request the page makes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from apps.publish import upload

from browser import chromium

LOG = "() => window.swarmPeer.snapshot().events.join('\\n')"


async def test_a_csv_picked_on_the_page_trains_the_tab_and_bad_files_are_refused(server: str, default_publication: Any,
                                                                                 tmp_path: Path) -> None:  # fmt: skip
    join_url = (await upload(server, default_publication))["join_url"]
    rng = np.random.default_rng(0)
    good, bad = tmp_path / "mine.csv", tmp_path / "wrong.csv"
    rows = [",".join([*(f"{v:.3f}" for v in rng.random(784)), str(i % 10)]) for i in range(40)]
    good.write_text("\n".join([",".join([f"p{i}" for i in range(784)] + ["label"]), *rows]) + "\n")
    bad.write_text("0.1,0.2,3\n0.3,0.4,1\n")
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        uploads: list[str] = []
        page.on("request", lambda r: uploads.append(r.url) if r.method != "GET" else None)
        await page.goto(join_url)
        await page.wait_for_function("window.swarmPeer && window.swarmPeer.status === 'training'", timeout=120_000)
        await page.set_input_files("#csv", str(bad))
        await page.wait_for_function(f"({LOG})().includes('cannot use wrong.csv')")
        assert "784 features" in await page.evaluate(LOG)
        await page.set_input_files("#csv", str(good))
        await page.wait_for_function(f"({LOG})().includes('training on 40 examples from mine.csv')")
        state = await page.evaluate("() => ({n: window.swarmPeer.trainer.train.n, w: window.swarmPeer.trainer.gossipWeight})")
        assert state == {"n": 40, "w": 40}
        step = await page.evaluate("() => window.swarmPeer.trainer.step")
        await page.wait_for_function(f"window.swarmPeer.trainer.step > {step + 20}")  # it trains on them
    assert uploads == [], uploads  # the data never left the tab
