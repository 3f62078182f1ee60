"""``swarm export``: a trained peer's model, as .h5 and TF.js, scores as the peer reported.

A real peer trains on a published swarm and checkpoints; the export is reloaded in tf_keras
(same predictions as the checkpoint, same test accuracy as the peer's final metrics row) and
in TensorFlow.js inside headless Chromium (same predictions).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from apps.procs import PeerProcess, free_port, spawn_peer
from protocols.dataset import decode_shard
from protocols.manifest import parse_envelope

from publish_helpers import mnist_subset_npz, run_cli, snapshot

REPO = Path(__file__).resolve().parent.parent
TFJS = REPO / "browser_peer" / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"


async def _train_one_peer(server: str, tmp: Path) -> tuple[str, PeerProcess, Any]:
    npz = mnist_subset_npz(tmp / "digits.npz", per_class=100)
    code, out, err = await run_cli("publish", server, "--identity", str(tmp / "pub.key"), "--hidden", "32",
                                   "--dataset", str(npz), "--shards", "1", "--local-steps", "10",
                                   "--eval-every", "40", "--learning-rate", "0.005")  # fmt: skip
    assert code == 0, err
    join_url = out.strip().splitlines()[-1].split(": ", 1)[1].strip()
    peer = spawn_peer(join_url, tmp, "peer", "--max-steps", "80")
    deadline = time.monotonic() + 90
    while (row := peer.latest) is None or row["step"] < 80:
        assert peer.proc.poll() is None and time.monotonic() < deadline, peer.log.read_text()[-3000:]
        await asyncio.sleep(0.3)
    peer.terminate()
    assert await peer.wait(60) == 0, peer.log.read_text()[-3000:]
    peer.poll_metrics()  # the final row is written on the way out
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server}/api/swarms/{join_url.rsplit('/', 1)[1]}") as resp:
            manifest = parse_envelope(await resp.read()).verify()
        assert manifest.dataset is not None
        async with http.get(f"{server}/content/{manifest.dataset.test.digest}") as resp:
            test = decode_shard(await resp.read())
    return join_url, peer, test


async def _tfjs_predict(model_dir: Path, x: np.ndarray) -> np.ndarray:
    """Load ``model_dir/model.json`` with tf.loadLayersModel in headless Chromium and predict ``x``."""
    from browser import chromium

    app = web.Application()
    app.router.add_get("/", lambda _: web.Response(text="<!doctype html><script src='/tf.min.js'></script>", content_type="text/html"))
    app.router.add_get("/tf.min.js", lambda _: web.FileResponse(TFJS))
    app.router.add_static("/model/", model_dir)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.wait_for_function("typeof tf !== 'undefined'")
            values = await page.evaluate(
                """async ({x, shape}) => {
                    const model = await tf.loadLayersModel('/model/model.json');
                    return Array.from(model.predict(tf.tensor(x, shape)).dataSync());
                }""", {"x": x.ravel().tolist(), "shape": list(x.shape)},
            )  # fmt: skip
    finally:
        await runner.cleanup()
    return np.asarray(values, dtype=np.float32).reshape(len(x), -1)


async def test_export_of_a_trained_peer_reloads_and_scores_as_reported(server: str, tmp_path: Path) -> None:
    import tf_keras

    join_url, peer, (x_test, y_test) = await _train_one_peer(server, tmp_path)
    final = peer.rows[-1]
    assert final["final"] and final["step"] >= 80 and final["test_acc"] > 0.6

    out = tmp_path / "export"
    code, stdout, err = await run_cli("export", str(tmp_path / "peer-checkpoint"), "--out", str(out))
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["kind"] == "checkpoint" and summary["step"] == final["step"]
    assert json.loads((out / "export.json").read_text()) == summary

    exported = tf_keras.models.load_model(out / "model.h5", compile=False)
    checkpoint = tf_keras.models.load_model(tmp_path / "peer-checkpoint" / "model.h5", compile=False)
    probs = exported(x_test, training=False).numpy()
    np.testing.assert_array_equal(probs, checkpoint(x_test, training=False).numpy())
    acc = float(np.mean(np.argmax(probs, axis=1) == y_test))
    assert abs(acc - final["test_acc"]) <= 1 / len(y_test), (acc, final["test_acc"])

    # the TF.js files give the same predictions in a browser
    sample = x_test[:16]
    browser_probs = await _tfjs_predict(out / "tfjs", sample)
    np.testing.assert_allclose(browser_probs, probs[:16], atol=1e-5)


async def test_export_from_a_join_link_gives_the_published_model(server: str, tmp_path: Path) -> None:
    import tf_keras

    code, out, err = await run_cli("publish", server, "--identity", str(tmp_path / "pub.key"), "--hidden", "8",
                                   "--input-size", "4", "--classes", "3", "--dataset", "none")  # fmt: skip
    assert code == 0, err
    join_url = out.strip().splitlines()[-1].split(": ", 1)[1].strip()
    code, stdout, err = await run_cli("export", join_url, "--out", str(tmp_path / "e"))
    assert code == 0, err
    assert json.loads(stdout)["kind"] == "published"
    model = tf_keras.models.load_model(tmp_path / "e" / "model.h5", compile=False)
    assert model.input_shape == (None, 4) and model.output_shape == (None, 3)


@pytest.mark.parametrize("content", [None, b"not hdf5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64])
async def test_export_of_a_non_checkpoint_fails_with_a_message(content: bytes | None, tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    src.mkdir()
    if content is not None:
        (src / "model.h5").write_bytes(content)
    before = snapshot(tmp_path)
    code, _, err = await run_cli("export", str(src), "--out", str(tmp_path / "out"))
    assert code == 2 and err.startswith("swarm export: ") and "Traceback" not in err
    assert ("has no model.h5" if content is None else "model.h5") in err
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()
