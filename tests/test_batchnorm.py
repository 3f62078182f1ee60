"""BatchNormalization and Dropout: non-trainable state trains, travels by gossip, and is exported.

The decision (docs/PROTOCOL.md "Non-trainable weights"): the manifest lists every weight of
the model, trainable or not, and gossip averages all of them; BatchNormalization's moving mean
and variance are updated by the layer itself in training mode, on every peer, and averaged in
every exchange like the kernels. Dropout has no state; it is on in training steps and off in
evaluation.

* ``Trainer`` (Python): the exchanged weights include the moving statistics, training moves
  them, ``assign`` sets them, evaluation is deterministic (no dropout).
* A live swarm (a Keras 3 ``.keras`` model with BatchNormalization and Dropout, one Python peer,
  one browser tab): both reach the target, each accepts the other's updates, both moved their
  statistics away from the initial zeros/ones, and both exports (the Python checkpoint, the
  tab's "Download model") carry the statistics the peer last had, plus the training
  configuration, so ``model.fit`` continues in tf_keras and in Keras 3 without ``compile``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.export import export_model
from apps.procs import spawn_peer
from apps.publish import DataOptions, build_publication, upload
from protocols.manifest import TrainingConfig

from browser import chromium
from publish_helpers import mnist_subset_npz
from test_browser_swarm import SNAPSHOT

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
TARGET = 0.8  # 10 classes, 600 training digits a peer, from about 0.1
BN_STATE = ("moving_mean", "moving_variance")


def bn_dropout_keras(path: Path, features: int = 784, classes: int = 10) -> Path:
    """Dense -> BatchNormalization -> Dropout -> softmax, saved by Keras 3 (``.keras``)."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([keras.Input((features,)), L.Dense(64, activation="relu"), L.BatchNormalization(name="bn"),
                              L.Dropout(0.3), L.Dense(classes, activation="softmax")])  # fmt: skip
    model.save(path)
    return path


def _bn_state(weights: list[np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    return {n.rsplit("/", 1)[1]: w for n, w in zip(names, weights, strict=True) if n.startswith("bn/") and n.endswith(BN_STATE)}


def test_python_trainer_trains_and_exchanges_batchnorm_state(tmp_path: Path) -> None:
    from peer.trainer import Trainer

    pub = build_publication(Ed25519PrivateKey.generate(), model=bn_dropout_keras(tmp_path / "m.keras", 6, 3),
                            data=DataOptions("none"))  # fmt: skip
    names = [w.name for w in pub.manifest.model.weights]
    assert {"bn/moving_mean", "bn/moving_variance", "bn/gamma", "bn/beta"} <= set(names)
    rng = np.random.default_rng(0)
    x, y = rng.normal(3.0, 2.0, (256, 6)).astype(np.float32), rng.integers(0, 3, 256).astype(np.uint8)
    trainer = Trainer(pub.manifest, pub.blobs[pub.manifest.model.initial_weights.digest], (x, y), (x, y))

    start = _bn_state(trainer.get_weights(), names)
    assert np.all(start["moving_mean"] == 0) and np.all(start["moving_variance"] == 1)
    assert len(trainer.get_weights()) == len(names)  # every weight is exchanged, trainable or not
    trainer.train_steps(20)
    trained = _bn_state(trainer.get_weights(), names)
    assert np.mean(trained["moving_mean"] != 0) > 0.5 and np.all(trained["moving_variance"] != 1)  # a dead relu stays 0

    merged = [w * 0.5 for w in trainer.get_weights()]  # what an average with a zero model gives
    trainer.assign(merged, trainer.gossip_weight)
    np.testing.assert_array_equal(_bn_state(trainer.get_weights(), names)["moving_mean"], trained["moving_mean"] * 0.5)
    assert trainer.evaluate() == trainer.evaluate()  # evaluation: moving statistics, no dropout


BROWSER_BN = """() => {
  const t = window.swarmPeer.trainer;
  const bn = t.model.layers.find((l) => l.getClassName() === 'BatchNormalization');
  const w = Object.fromEntries(bn.weights.map((v) => [v.originalName.split('/').pop(), Array.from(v.read().dataSync())]));
  return { mean: w.moving_mean, variance: w.moving_variance, exchanged: t.getWeights().length };
}"""


async def _download(page: Any, target: Path) -> Path:
    """The tab's "Download model" (two files: NAME.json and NAME.weights.bin); the json's path."""
    downloads: list[Any] = []
    page.on("download", lambda d: downloads.append(d))
    await page.click("#download")
    for _ in range(100):
        if len(downloads) >= 2:
            break
        await asyncio.sleep(0.1)
    for download in downloads:
        await download.save_as(target / download.suggested_filename)
    return next(target / d.suggested_filename for d in downloads if d.suggested_filename.endswith(".json"))


def _continues_with_fit(h5: Path, x: np.ndarray, y: np.ndarray, training: TrainingConfig) -> None:
    """``model.fit`` straight from the exported file, in tf_keras and in Keras 3: no compile."""
    import keras
    import tf_keras

    for load in (tf_keras.models.load_model, keras.saving.load_model):
        model = load(h5)
        assert type(model.optimizer).__name__.lower() == training.optimizer
        assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(training.learning_rate)
        history = model.fit(x, y, epochs=2, batch_size=32, verbose=0).history
        assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0], (load, history)
        assert "accuracy" in history, history


def _exported_bn(h5: Path) -> dict[str, np.ndarray]:
    import tf_keras

    layer = tf_keras.models.load_model(h5, compile=False).get_layer("bn")
    return dict(zip(BN_STATE, layer.get_weights()[2:], strict=True))


@pytest.mark.timeout(900)  # its own deadlines bound each phase
async def test_batchnorm_dropout_model_trains_in_python_and_browser_peers_and_exports_with_its_state(server: str, tmp_path: Path) -> None:  # fmt: skip
    training = TrainingConfig(learning_rate=0.003, local_steps=20, eval_every=20)
    npz = mnist_subset_npz(tmp_path / "digits.npz", per_class=150)
    publication = await asyncio.to_thread(
        build_publication, Ed25519PrivateKey.generate(), model=bn_dropout_keras(tmp_path / "bn.keras"),
        data=DataOptions(str(npz), shards=2), name="bn-dropout", training=training,
    )  # fmt: skip
    join_url = (await upload(server, publication))["join_url"]
    py = spawn_peer(join_url, tmp_path, "py0")
    try:
        async with chromium() as browser:
            page = await (await browser.new_context(accept_downloads=True)).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{join_url}?seed=3" if "#" not in join_url else join_url.replace("#", "?seed=3#"))
            deadline = time.monotonic() + 300
            while True:
                snap, row = await page.evaluate(SNAPSHOT), py.latest
                assert not errors and not (snap and snap["error"]), (errors, snap and snap["error"])
                assert py.proc.poll() is None, py.log.read_text()[-2000:]
                if (snap and row and snap["testAcc"] is not None and snap["testAcc"] >= TARGET and row["test_acc"] >= TARGET
                        and row["peer_id"] in snap["acceptedFrom"] and snap["peerId"] in row["accepted_from"]):  # fmt: skip
                    print(f"reached: browser test accuracy {snap['testAcc']:.3f} at step {snap['step']}, "
                          f"Python {row['test_acc']:.3f} at step {row['step']}")
                    break
                assert time.monotonic() < deadline, (snap, row)
                await asyncio.sleep(2)
            py.terminate()  # the tab merges with no one from now on: its state holds still once paused
            assert await py.wait(60) == 0, py.log.read_text()[-3000:]
            await page.evaluate("() => window.swarmPeer.pause()")
            await page.wait_for_timeout(500)  # the chunk of steps in flight finishes
            tab = await page.evaluate(BROWSER_BN)
            assert tab["exchanged"] == len(publication.manifest.model.weights)
            assert np.mean(np.asarray(tab["mean"]) != 0) > 0.5 and np.all(np.asarray(tab["variance"]) != 1), tab
            (tmp_path / "download").mkdir()
            download = await _download(page, tmp_path / "download")
    finally:
        py.terminate()
        await py.wait(60)
    py.poll_metrics()
    final = py.rows[-1]
    assert final["final"] and final["test_acc"] >= TARGET - 0.05, final

    x_test, y_test = np.load(npz)["x"][:300].astype(np.float32) / 255, np.load(npz)["y"][:300]
    # the tab's model: its BatchNormalization state and the swarm's training configuration
    summary = await asyncio.to_thread(export_model, str(download), tmp_path / "from-browser")
    assert summary["training"]["from"] == "browser download" and summary["training"]["learning_rate"] == 0.003
    exported = await asyncio.to_thread(_exported_bn, tmp_path / "from-browser" / "model.h5")
    np.testing.assert_allclose(exported["moving_mean"], tab["mean"], rtol=1e-6)
    np.testing.assert_allclose(exported["moving_variance"], tab["variance"], rtol=1e-6)
    await asyncio.to_thread(_continues_with_fit, tmp_path / "from-browser" / "model.h5", x_test, y_test, training)

    # the Python peer's checkpoint: the state it last evaluated with
    summary = await asyncio.to_thread(export_model, str(tmp_path / "py0-checkpoint"), tmp_path / "from-python")
    assert summary["training"]["from"] == "checkpoint" and summary["step"] == final["step"]
    checkpoint = await asyncio.to_thread(_exported_bn, tmp_path / "py0-checkpoint" / "model.h5")
    exported = await asyncio.to_thread(_exported_bn, tmp_path / "from-python" / "model.h5")
    for name in BN_STATE:
        np.testing.assert_array_equal(exported[name], checkpoint[name])
    assert np.mean(exported["moving_mean"] != 0) > 0.5 and np.all(exported["moving_variance"] != 1)
    await asyncio.to_thread(_continues_with_fit, tmp_path / "from-python" / "model.h5", x_test, y_test, training)
