"""Headless Chromium for browser tests (Playwright driving the system's /usr/bin/chromium).

Not a test module: tests import ``chromium()`` and the flags. The browser comes from
``./scripts/setup.sh --browser`` (Debian's chromium); Playwright's own downloads are never used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium, closed on exit. Raises RuntimeError when it is not installed."""
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(f"{CHROMIUM} is missing: run `./scripts/setup.sh --browser` to install Chromium")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


TAB_WEIGHTS = "() => window.swarmPeer.trainer.getWeights().map((w) => Array.from(w))"


async def tab_accuracy(page: Any, manifest: Any, initial: bytes, x: Any, y: Any) -> float:
    """The tab's current model evaluated here, by tf_keras on (x, y): not the tab's own claim."""
    import numpy as np

    from peer.trainer import build_model

    weights = await page.evaluate(TAB_WEIGHTS)
    model = build_model(manifest, initial)
    model.set_weights([np.asarray(w, np.float32).reshape(spec.shape) for w, spec in zip(weights, manifest.model.weights, strict=True)])
    predictions = model(np.asarray(x, np.float32), training=False).numpy()
    return float(np.mean(np.argmax(predictions, axis=1) == np.asarray(y).reshape(-1)))
