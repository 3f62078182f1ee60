"""The browser publish page with the publisher's own files, and the server's ``POST /api/prepare``.

Headless Chromium drives ``/peer/publish.html`` against a real server whose prepare step runs
``python -m apps.prepare`` in a child process, as ``swarm serve`` configures it:

* a Keras 3 ``.keras`` file and a spreadsheet-style CSV (UTF-8 BOM, ``;`` delimiter, text class
  names) are reviewed, then published; the dataset is sharded exactly as ``swarm publish`` shards
  the same file (same digests), and the published model predicts what the Keras 3 model does;
* a TF.js ``model.json`` with its weight file publishes with no dataset;
* a Lambda model is refused with its layer name and no server path.

The HTTP tests bound the endpoint: no prepare command (501), an oversized upload (413), a
hostile file name, and a ``model.json`` whose weight path climbs out of its directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import start_server
from apps.publish import DataOptions, build_publication
from protocols.manifest import parse_envelope

from browser import chromium
from publish_helpers import keras_functional, open_publish_page, save_tfjs

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
FEATURES = 6
NAMES = ("cat", "dog", "bird")


def _spreadsheet_csv(path: Path, n: int = 240) -> Path:
    """What a spreadsheet exports: BOM, ``;`` between cells, CRLF, a text ``class`` column."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 2.0, (3, FEATURES))[y] + rng.normal(0, 1.0, (n, FEATURES))
    lines = [";".join([*(f"f{i}" for i in range(FEATURES)), "class"])]
    lines += [";".join([*(f"{v:.4f}" for v in row), NAMES[c]]) for row, c in zip(x, y, strict=True)]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    return path


def _keras3_file(path: Path) -> tuple[Path, Any]:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(12, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    model.save(path)
    return path, model


def _lambda_file(path: Path) -> Path:
    import keras

    keras.Sequential([keras.Input((FEATURES,)), keras.layers.Lambda(lambda t: t * 2.0, name="double"),
                      keras.layers.Dense(3, activation="softmax")]).save(path)  # fmt: skip
    return path


async def _manifest_and_weights(server: str, swarm_id: str) -> tuple[Any, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server}/api/swarms/{swarm_id}") as resp:
            manifest = parse_envelope(await resp.read()).verify()
        async with http.get(f"{server}/content/{manifest.model.initial_weights.digest}") as resp:
            return manifest, await resp.read()


async def _review_and_publish(page: Any) -> str:
    await page.click("#review")
    await page.wait_for_selector("#review-section[data-ready='1']", timeout=120_000)
    review = await page.text_content("#review-table") or ""
    await page.click("#publish")
    await page.wait_for_selector("#join-link", timeout=60_000)
    return review


async def test_the_page_publishes_a_keras3_file_and_a_spreadsheet_csv_as_swarm_publish_would(tmp_path: Path) -> None:
    from peer.trainer import build_model

    model_path, keras3_model = _keras3_file(tmp_path / "classifier.keras")
    csv_path = _spreadsheet_csv(tmp_path / "animals.csv")
    tfjs_model = keras_functional(FEATURES, 3)
    tfjs_dir = save_tfjs(tfjs_model, tmp_path / "tfjs")
    runner, server = await start_server(tmp_path / "server")
    try:
        async with chromium() as browser:
            page, errors = await open_publish_page(browser, server)
            assert await page.input_value("#dataset") == "upload"  # nothing hosted yet: the upload is offered first

            # 1. a Lambda model: refused with its layer name, and no path of the server's temporary files
            await page.fill("#name", "animals")
            await page.select_option("#model-source", "file")
            await page.set_input_files("#model-files", str(_lambda_file(tmp_path / "doubler.keras")))
            await page.set_input_files("#data-file", str(csv_path))
            await page.click("#review")
            refusal = page.locator("p.error")
            await refusal.wait_for(timeout=120_000)
            text = await refusal.text_content() or ""
            assert "layer 'double' (Lambda)" in text and "prepare-" not in text and "/tmp" not in text, text

            # 2. the Keras 3 file and the CSV: reviewed, then published
            await page.set_input_files("#model-files", str(model_path))
            await page.fill("#shards", "3")
            review = await _review_and_publish(page)
            first_id = await page.text_content("#swarm-id")
            assert "3 classes: bird, cat, dog" in review or "3 classes: cat, dog, bird" in review, review
            assert "3 training shards (iid)" in review and "Python and browser peers" in review, review
            assert "sparse_categorical_crossentropy" in review, review

            # 3. a TF.js layers directory (model.json and its weight file), no dataset
            await page.goto(f"{server}/peer/publish.html")
            await page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            await page.fill("#name", "tfjs-own-data")
            await page.select_option("#model-source", "file")
            await page.set_input_files("#model-files", [str(p) for p in sorted(tfjs_dir.iterdir())])
            await page.select_option("#dataset", "none")
            review = await _review_and_publish(page)
            second_id = await page.text_content("#swarm-id")
            assert "every peer brings its own data" in review, review
            assert not errors, errors

        manifest, weights = await _manifest_and_weights(server, first_id or "")
        cli = build_publication(Ed25519PrivateKey.generate(), model=model_path, name="animals",
                                data=DataOptions(str(csv_path), shards=3), seed=0)  # fmt: skip
        assert manifest.dataset == cli.manifest.dataset  # the same shards, digest for digest, as `swarm publish`
        assert manifest.model.initial_weights == cli.manifest.model.initial_weights
        assert manifest.name == "animals" and manifest.training.loss == "sparse_categorical_crossentropy"
        x = np.random.default_rng(2).normal(size=(8, FEATURES)).astype(np.float32)
        np.testing.assert_allclose(build_model(manifest, weights)(x, training=False).numpy(),
                                   np.asarray(keras3_model(x, training=False)), rtol=1e-5, atol=1e-6)  # fmt: skip

        manifest, weights = await _manifest_and_weights(server, second_id or "")
        assert manifest.dataset is None and manifest.name == "tfjs-own-data"
        np.testing.assert_allclose(build_model(manifest, weights)(x, training=False).numpy(),
                                   tfjs_model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)  # fmt: skip
    finally:
        await runner.cleanup()


async def _prepare(server: str, parts: list[tuple[str, bytes, str]], options: dict | None = None) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("options", json.dumps(options or {}), filename="options.json", content_type="application/json")
    for name, data, filename in parts:
        form.add_field(name, data, filename=filename, content_type="application/octet-stream")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server}/api/prepare", data=form) as resp:
            return resp.status, await resp.json()


async def test_prepare_is_bounded_and_hostile_names_stay_inside_its_directory(tmp_path: Path) -> None:
    csv = _spreadsheet_csv(tmp_path / "animals.csv").read_bytes()
    runner, server = await start_server(tmp_path / "plain", prepare_command=None)
    try:
        status, body = await _prepare(server, [("data", csv, "animals.csv")])
        assert status == 501 and "swarm serve" in body["message"]
    finally:
        await runner.cleanup()
    runner, server = await start_server(tmp_path / "small", max_upload_bytes=4096)
    try:
        status, body = await _prepare(server, [("data", csv, "animals.csv")])
        assert status == 413, body
    finally:
        await runner.cleanup()

    tfjs_dir = save_tfjs(keras_functional(FEATURES, 3), tmp_path / "tfjs")
    secret = tmp_path / "secret.bin"
    weights = next(tfjs_dir.glob("*.bin")).read_bytes()
    secret.write_bytes(weights)
    model_json = json.loads((tfjs_dir / "model.json").read_text())
    runner, server = await start_server(tmp_path / "server")
    try:
        # a file name that climbs out: reduced to its base name, and the data is read as usual
        status, body = await _prepare(server, [("data", csv, "../../animals.csv")], {"hidden": "8:relu", "shards": 2})
        assert status == 200, body
        assert body["draft"]["dataset"]["name"] == "animals" and len(body["draft"]["dataset"]["train_shards"]) == 2
        assert body["draft"]["dataset"]["class_names"] == sorted(NAMES)
        # a weight path that climbs out of model.json's directory is refused, not read
        model_json["weightsManifest"][0]["paths"] = [f"../../../..{secret}"]
        status, body = await _prepare(server, [("model", json.dumps(model_json).encode(), "model.json")])
        assert status == 400 and "must be a file name next to model.json" in body["message"], body
        status, body = await _prepare(server, [("model", b"not a model", "evil.exe")])
        assert status == 400 and "give one .keras or .h5 file" in body["message"], body
        status, body = await _prepare(server, [], {"unknown": 1})
        assert status == 400 and "options" in body["message"], body
    finally:
        await runner.cleanup()
