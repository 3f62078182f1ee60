"""The browser trainer honours the manifest's training knobs exactly as peer/trainer.py does.

SGD with warm-up and clipnorm: the first step moves every tensor by at most lr/4 x clipnorm,
and the learning rate reaches its full value after the warm-up; l2: the first step's loss is
the data loss plus l2 x the sum of squared kernel weights. Same numbers as tests/test_publish.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.publish import DataOptions, build_publication, upload
from protocols.manifest import TrainingConfig

from browser import chromium

STEP = """async ([swarmId, x, y]) => {
  const { Trainer, useBackend } = await import('/peer/src/trainer.js');
  const { fetchManifest, fetchBlob } = await import('/peer/src/manifest.js');
  await useBackend('cpu');
  const { manifest } = await fetchManifest(location.origin, swarmId);
  const initial = await fetchBlob(location.origin, manifest.model.initial_weights);
  const data = { x: new Float32Array(x), y: Uint8Array.from(y), n: y.length, shape: [6] };
  const t = await Trainer.create(manifest, initial, data, data, 0);
  const before = t.getWeights();
  const dataLoss = tf.tidy(() => t._loss(tf.tensor1d(Int32Array.from(y), 'int32'),
                                        t.model.predict(tf.tensor2d(data.x, [y.length, 6]))).dataSync()[0]);
  const loss = await t.trainSteps(1);
  const moved = t.getWeights().map((w, i) => Math.sqrt(w.reduce((s, v, j) => s + (v - before[i][j]) ** 2, 0)));
  const lr1 = t.optimizer.learningRate;
  await t.trainSteps(4);
  return { moved, loss, dataLoss, before: before.map((w) => Array.from(w)), shapes: t.shapes, lr1, lr5: t.optimizer.learningRate };
}"""


async def _step(server: str, training: TrainingConfig, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    pub = build_publication(Ed25519PrivateKey.generate(), hidden=[(5, "relu")], input_size=6, classes=3,
                            data=DataOptions("none"), training=training)  # fmt: skip
    swarm_id = (await upload(server, pub))["swarm_id"]
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{server}/peer/bench/bench.html")
        await page.wait_for_function("window.benchReady === true")
        return await page.evaluate(STEP, [swarm_id, x.ravel().tolist(), y.tolist()])  # type: ignore[no-any-return]


async def test_browser_trainer_applies_warmup_clipnorm_and_l2(server: str) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 6), dtype=np.float32), rng.integers(0, 3, 64)
    r = await _step(server, TrainingConfig(optimizer="sgd", learning_rate=0.5, clipnorm=1e-3, warmup_steps=4, batch_size=64), x, y)
    assert max(r["moved"]) <= 0.5 / 4 * 1e-3 + 1e-6 and min(r["moved"]) > 0, r["moved"]
    assert r["lr1"] == 0.125 and r["lr5"] == 0.5

    r = await _step(server, TrainingConfig(l2=0.01, batch_size=64), x, y)
    penalty = 0.01 * sum(float(np.sum(np.square(w, dtype=np.float64))) for w, s in zip(r["before"], r["shapes"]) if len(s) >= 2)
    assert abs(r["loss"] - (r["dataLoss"] + penalty)) < 1e-4 * r["loss"], (r["loss"], r["dataLoss"], penalty)
