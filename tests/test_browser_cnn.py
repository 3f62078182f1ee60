"""A small CNN published from a Keras .h5 trains in a Python peer and a browser peer together.

The browser picks TF.js's webgl backend for convolutional models (wasm has no conv gradients);
headless Chromium runs it on SwiftShader. Both peers must accept verified updates from each
other and the browser's test accuracy must rise well above chance.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import spawn_peer
from apps.publish import MNIST, DataOptions, build_publication, upload

from browser import chromium
from test_browser_swarm import SNAPSHOT

TARGET = 0.6  # from about 0.1; a CNN of 1,000-odd examples per shard on SwiftShader, in minutes


def small_cnn_h5(path: Path) -> Path:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input((28, 28, 1)),
        tf_keras.layers.Conv2D(8, 3, activation="relu"),
        tf_keras.layers.MaxPooling2D(2),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.save(path, save_format="h5")
    return path


@pytest.mark.timeout(900)  # its own deadlines bound each phase
async def test_cnn_from_h5_trains_in_python_and_browser_webgl(server: str, tmp_path: Path) -> None:
    h5 = await asyncio.to_thread(small_cnn_h5, tmp_path / "cnn.h5")
    publication = await asyncio.to_thread(
        build_publication, Ed25519PrivateKey.generate(), model=h5, data=DataOptions(MNIST, shards=2), name="small-cnn"
    )
    join_url = (await upload(server, publication))["join_url"]
    py = spawn_peer(join_url, tmp_path, "py0", "--eval-limit", "1000")
    try:
        async with chromium() as browser:
            page = await (await browser.new_context()).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(join_url)
            deadline = time.monotonic() + 300
            while True:
                snap = await page.evaluate(SNAPSHOT)
                row = py.latest
                assert not errors, errors
                assert not (snap and snap["error"]), snap["error"]
                assert py.proc.poll() is None, py.log.read_text()[-2000:]
                if (snap and row and snap["testAcc"] is not None and snap["testAcc"] >= TARGET
                        and row["peer_id"] in snap["acceptedFrom"] and snap["peerId"] in row["accepted_from"]):  # fmt: skip
                    break
                assert time.monotonic() < deadline, (snap, row)
                await asyncio.sleep(2)
            assert snap["backend"] == "webgl", snap["backend"]
            assert snap["step"] > 0  # the browser trained, not only merged
    finally:
        py.terminate()
        await py.wait(60)
