"""Headless Chromium for browser tests: ``apps.chromium`` (shared with the benchmarks) and helpers.

Not a test module: tests import ``chromium()``, the flags and ``tab_accuracy``.
"""

from __future__ import annotations

from typing import Any

from apps.chromium import CHROMIUM, CHROMIUM_ARGS, chromium

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "TAB_WEIGHTS", "chromium", "tab_accuracy"]

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
