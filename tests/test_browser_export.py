"""The browser peer's "Download model" button, exported with `swarm export`, predicts as the tab.

A tab trains alone on the default swarm, pauses, downloads its model (TF.js layers format, two
files); `apps.export.export_model` turns the download into .h5 + TF.js, and the .h5 reloaded in
tf_keras gives the same class probabilities as the tab for real test digits.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np

from apps.export import export_model
from apps.publish import upload

from browser import chromium


async def test_downloaded_browser_model_exports_and_predicts_as_the_tab(server: str, default_publication: Any, tmp_path: Path) -> None:
    join_url = (await upload(server, default_publication))["join_url"]
    async with chromium() as browser:
        context = await browser.new_context(accept_downloads=True)
        page = await context.new_page()
        await page.goto(join_url)
        await page.wait_for_function("window.swarmPeer && window.swarmPeer.trainer && window.swarmPeer.trainer.step >= 100",
                                     timeout=120_000)  # fmt: skip
        await page.evaluate("() => window.swarmPeer.pause()")
        await page.wait_for_timeout(500)  # the chunk of steps in flight finishes
        downloads: list[Any] = []
        page.on("download", lambda d: downloads.append(d))
        await page.click("#download")
        for _ in range(100):  # model.json and the weights file arrive as two downloads
            if len(downloads) >= 2:
                break
            await asyncio.sleep(0.1)
        files = []
        for download in downloads:
            target = tmp_path / "download" / download.suggested_filename
            await download.save_as(target)
            files.append(target)
        assert sorted(f.suffix for f in files) == [".bin", ".json"], files
        examples = await page.evaluate("""() => {
            const t = window.swarmPeer.trainer, n = 8, out = [];
            for (let i = 0; i < n; i++) {
              const x = Array.from(t.test.x.subarray(i * t.inputSize, (i + 1) * t.inputSize));
              out.push({x, probs: Array.from(t.predict(new Float32Array(x)))});
            }
            return out;
        }""")
    json_file = next(f for f in files if f.suffix == ".json")
    summary = await asyncio.to_thread(export_model, str(json_file), tmp_path / "exported")
    assert summary["kind"] == "tfjs" and summary["classes"] == 10

    def keras_probs() -> np.ndarray:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tf_keras

        model = tf_keras.models.load_model(tmp_path / "exported" / "model.h5", compile=False)
        return model(np.array([e["x"] for e in examples], np.float32), training=False).numpy()

    got = await asyncio.to_thread(keras_probs)
    want = np.array([e["probs"] for e in examples], np.float32)
    assert np.allclose(got, want, atol=1e-4), np.abs(got - want).max()
    assert (want.argmax(1) == got.argmax(1)).all()
