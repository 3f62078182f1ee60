"""Every model file people have publishes the same model: Keras 3 ``.keras``, ``.h5`` saved by
Keras 3, ``.h5`` saved by tf_keras, and a TF.js layers directory.

Each test writes its own file of a small functional model with the layers people use
(Dense, BatchNormalization, Dropout, Concatenate), publishes it, builds the published
topology and weights exactly as a Python peer does (``peer.trainer.build_model``) and checks
its predictions against the original model's on the same inputs. The Keras 3 ``.keras``
publication is also loaded in Chromium (TF.js, the browser peer's ``Trainer``) and predicts
the same there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.publish import DataOptions, Publication, PublishInputError, build_publication, upload

from browser import chromium

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
FEATURES, CLASSES = 6, 3


def _keras3_model() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((FEATURES,))
    h = L.Dense(8, activation="relu")(inp)
    h = L.BatchNormalization()(h)
    h = L.Dropout(0.25)(h)
    out = L.Dense(CLASSES, activation="softmax")(L.Concatenate()([h, inp]))
    model = keras.Model(inp, out)
    # non-trivial BatchNormalization statistics, so a swapped or dropped weight shows
    bn = model.layers[2]
    assert isinstance(bn, L.BatchNormalization)
    bn.moving_mean.assign(np.linspace(-1, 1, 8, dtype=np.float32))
    bn.moving_variance.assign(np.linspace(0.5, 2, 8, dtype=np.float32))
    return model


def _tf_keras_model() -> Any:
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    inp = tf_keras.Input((FEATURES,))
    h = L.Dropout(0.25)(L.BatchNormalization()(L.Dense(8, activation="relu")(inp)))
    model = tf_keras.Model(inp, L.Dense(CLASSES, activation="softmax")(L.Concatenate()([h, inp])))
    assert isinstance(model.layers[2], L.BatchNormalization)
    model.layers[2].set_weights([np.ones(8), np.zeros(8), np.linspace(-1, 1, 8), np.linspace(0.5, 2, 8)])
    return model


def _inputs() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(16, FEATURES)).astype(np.float32)


def _published_predictions(pub: Publication, x: np.ndarray) -> np.ndarray:
    from peer.trainer import build_model

    model = build_model(pub.manifest, pub.blobs[pub.manifest.model.initial_weights.digest])
    return model(x, training=False).numpy()  # type: ignore[no-any-return]


def _publish(path: Path) -> Publication:
    return build_publication(Ed25519PrivateKey.generate(), model=path, data=DataOptions("none"), name=path.name)


def _keras3_file(tmp_path: Path, name: str) -> tuple[Path, np.ndarray]:
    model = _keras3_model()
    model.save(tmp_path / name)
    return tmp_path / name, np.asarray(model(_inputs(), training=False))


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_a_keras3_file_publishes_the_same_model(name: str, tmp_path: Path) -> None:
    path, want = _keras3_file(tmp_path, name)
    pub = _publish(path)
    np.testing.assert_allclose(_published_predictions(pub, _inputs()), want, rtol=1e-6, atol=1e-7)
    assert not pub.manifest.model.python_only
    names = [w.name for w in pub.manifest.model.weights]
    assert any(n.endswith("moving_mean") for n in names) and any(n.endswith("moving_variance") for n in names)


def test_a_tf_keras_h5_publishes_the_same_model(tmp_path: Path) -> None:
    model = _tf_keras_model()
    model.save(tmp_path / "model.h5", save_format="h5")
    pub = _publish(tmp_path / "model.h5")
    np.testing.assert_allclose(_published_predictions(pub, _inputs()), model(_inputs(), training=False).numpy(),
                               rtol=1e-6, atol=1e-7)  # fmt: skip


def test_a_tfjs_layers_directory_publishes_the_same_model(tmp_path: Path) -> None:
    import tensorflowjs as tfjs

    model = _tf_keras_model()
    tfjs.converters.save_keras_model(model, tmp_path / "tfjs")
    pub = _publish(tmp_path / "tfjs")
    np.testing.assert_allclose(_published_predictions(pub, _inputs()), model(_inputs(), training=False).numpy(),
                               rtol=1e-6, atol=1e-7)  # fmt: skip


def test_a_keras3_file_with_a_keras3_only_option_is_refused_with_the_layer(tmp_path: Path) -> None:
    """A Keras 3 option tf_keras lacks is dropped only at its neutral value; otherwise refused."""
    import keras

    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(4, name="adapted", lora_rank=2),
                              keras.layers.Dense(CLASSES, activation="softmax")])  # fmt: skip
    model.save(tmp_path / "lora.keras")
    with pytest.raises(PublishInputError, match=r"layer 'adapted' \(Dense\): option lora_rank=2 exists only in Keras 3"):
        _publish(tmp_path / "lora.keras")


PREDICT = """async ([swarmId, x]) => {
  const { Trainer, useBackend, preferredBackend } = await import('/peer/src/trainer.js');
  const { fetchManifest, fetchBlob } = await import('/peer/src/manifest.js');
  const { manifest } = await fetchManifest(location.origin, swarmId);
  await useBackend(preferredBackend(manifest.model.topology));
  const initial = await fetchBlob(location.origin, manifest.model.initial_weights);
  const data = { x: new Float32Array(x), y: new Uint8Array(x.length / 6), n: x.length / 6, shape: [6] };
  const t = await Trainer.create(manifest, initial, data, data, 0);
  return Array.from(t.model.predict(tf.tensor2d(data.x, [data.n, 6])).dataSync());
}"""


async def test_a_published_keras3_model_predicts_the_same_in_the_browser(server: str, tmp_path: Path) -> None:
    path, want = _keras3_file(tmp_path, "model.keras")
    swarm_id = (await upload(server, _publish(path)))["swarm_id"]
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{server}/peer/bench/bench.html")
        await page.wait_for_function("window.benchReady === true")
        got = await page.evaluate(PREDICT, [swarm_id, _inputs().ravel().tolist()])
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32).reshape(want.shape), want, atol=1e-5)
