"""The publish-time browser check (``apps/tfjs_compat.py``) says what TensorFlow.js really does.

* Every layer class the check accepts is built into a small tf_keras classifier, published
  through ``keras_to_tfjs`` and run in Chromium by the browser peer's own ``Trainer`` on the
  backend ``preferredBackend`` picks (and ``preferred_backend`` in Python picks the same):
  it loads, predicts what tf_keras predicts, and trains (finite loss, weights move).
* Every model the check refuses really fails in the browser (load, predict or train error, or
  different predictions), and the refusal names the layer.
* A Lambda model is refused with its layer name, with or without ``--python-peers-only``
  (its code would run on every Python peer); a model with a layer only tf_keras has
  (GroupNormalization) is refused with the way out, and with ``--python-peers-only`` is
  published as ``model.python_only``, trains in a Python peer, and its join page explains
  instead of failing.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps import tfjs_compat
from apps.publish import keras_to_tfjs

from browser import chromium
from publish_helpers import run_cli

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

V, S, IM, VOL = (6,), (5, 3), (8, 8, 1), (4, 4, 4, 1)


def _seq(shape: tuple[int, ...], *layers: Any) -> Any:
    import tf_keras as k

    model = k.Sequential([k.layers.Input(shape), *layers])
    if len(model.output_shape) > 2:
        model.add(k.layers.Flatten())
    model.add(k.layers.Dense(3, activation="softmax"))
    return model


def _merge(cls_name: str, **kw: Any) -> Any:
    import tf_keras as k

    inp = k.Input(V)
    a, b = k.layers.Dense(4)(inp), k.layers.Dense(4, activation="tanh")(inp)
    merged = getattr(k.layers, cls_name)(**kw)([a, b])
    return k.Model(inp, k.layers.Dense(3, activation="softmax")(merged))


def _good() -> dict[str, Callable[[], Any]]:
    import tf_keras as k

    L = k.layers
    cases: dict[str, Callable[[], Any]] = {
        "Dense": lambda: _seq(V, L.Dense(4)),
        "Activation": lambda: _seq(V, L.Dense(4), L.Activation("tanh")),
        "Dropout": lambda: _seq(V, L.Dense(4), L.Dropout(0.3)),
        "AlphaDropout": lambda: _seq(V, L.Dense(4), L.AlphaDropout(0.3)),
        "GaussianDropout": lambda: _seq(V, L.Dense(4), L.GaussianDropout(0.3)),
        "GaussianNoise": lambda: _seq(V, L.Dense(4), L.GaussianNoise(0.3)),
        "BatchNormalization": lambda: _seq(V, L.Dense(4), L.BatchNormalization()),
        "LayerNormalization": lambda: _seq(V, L.Dense(4), L.LayerNormalization()),
        "ReLU": lambda: _seq(V, L.Dense(4), L.ReLU(max_value=1.0)),
        "LeakyReLU": lambda: _seq(V, L.Dense(4), L.LeakyReLU(0.2)),
        "ELU": lambda: _seq(V, L.Dense(4), L.ELU()),
        "PReLU": lambda: _seq(V, L.Dense(4), L.PReLU()),
        "Softmax": lambda: _seq(V, L.Dense(4), L.Softmax()),
        "Reshape": lambda: _seq(V, L.Dense(4), L.Reshape((2, 2))),
        "RepeatVector": lambda: _seq(V, L.Dense(4), L.RepeatVector(2)),
        "Rescaling": lambda: _seq(V, L.Rescaling(0.5, offset=0.1), L.Dense(4)),
        "Permute": lambda: _seq(S, L.Permute((2, 1)), L.Dense(2)),
        "Masking": lambda: _seq(S, L.Masking(0.0), L.LSTM(2)),
        **{name: functools.partial(_merge, name) for name in ("Add", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")},
        "Dot": lambda: _merge("Dot", axes=1),
        "Embedding": lambda: _seq((4,), L.Embedding(10, 3)),
        "LSTM": lambda: _seq(S, L.LSTM(4, return_sequences=True), L.GlobalAveragePooling1D()),
        "GRU": lambda: _seq(S, L.GRU(4, reset_after=False)),
        "SimpleRNN": lambda: _seq(S, L.SimpleRNN(4)),
        "RNN": lambda: _seq(S, L.RNN(L.LSTMCell(4)), L.Reshape((2, 2)), L.RNN(L.GRUCell(2, reset_after=False)),
                            L.RepeatVector(2), L.RNN(L.SimpleRNNCell(2))),
        "Bidirectional": lambda: _seq(S, L.Bidirectional(L.LSTM(2))),
        "TimeDistributed": lambda: _seq(S, L.TimeDistributed(L.Dense(2))),
        "Conv1D": lambda: _seq(S, L.Conv1D(2, 2), L.MaxPooling1D(2)),
        "Pooling1D": lambda: _seq(S, L.Dense(2), L.AveragePooling1D(2), L.SpatialDropout1D(0.3)),
        "Global1D": lambda: _merge_global("1D", S),
        "Conv2D": lambda: _seq(IM, L.Conv2D(2, 3), L.MaxPooling2D(2)),
        "DepthwiseConv2D": lambda: _seq(IM, L.DepthwiseConv2D(3)),
        "SeparableConv2D": lambda: _seq(IM, L.SeparableConv2D(2, 3, depthwise_regularizer=k.regularizers.L2(0.01))),
        "Conv2DTranspose": lambda: _seq(IM, L.Conv2DTranspose(2, 3)),
        "Pooling2D": lambda: _seq(IM, L.Dense(2), L.AveragePooling2D(2), L.UpSampling2D(2), L.ZeroPadding2D(1), L.Cropping2D(1)),
        "Global2D": lambda: _merge_global("2D", IM),
        "BatchNormalization4D": lambda: _seq(IM, L.Dense(2), L.BatchNormalization()),
        "Conv3D": lambda: _seq(VOL, L.Conv3D(2, 2), L.AveragePooling3D(1)),
        "MaxPooling3D": lambda: _seq(VOL, L.Dense(2), L.MaxPooling3D(2)),
        "Flatten of a flat input": lambda: k.Sequential([L.Input(V), L.Flatten(), L.Dense(4), L.Flatten(),
                                                         L.Dense(3, activation="softmax")]),  # rewritten as Reshape
        "Regularizers": lambda: _seq(V, L.Dense(4, kernel_regularizer=k.regularizers.L2(0.01), bias_regularizer="l1",
                                                  kernel_constraint=k.constraints.MaxNorm(3), kernel_initializer="he_normal")),
    }  # fmt: skip
    for act in sorted(tfjs_compat.ACTIVATIONS - {"gelu_new"}):  # gelu_new is TF.js-only
        cases[f"activation:{act}"] = functools.partial(_dense_with, act)
    return cases


def _dense_with(activation: str) -> Any:
    import tf_keras

    return _seq(V, tf_keras.layers.Dense(4, activation=activation))


def _merge_global(dims: str, shape: tuple[int, ...]) -> Any:
    import tf_keras as k

    inp = k.Input(shape)
    h = k.layers.Dense(2)(inp)
    pooled = [getattr(k.layers, f"Global{kind}Pooling{dims}")()(h) for kind in ("Average", "Max")]
    return k.Model(inp, k.layers.Dense(3, activation="softmax")(k.layers.Concatenate()(pooled)))


def _bad() -> dict[str, tuple[Callable[[], Any], str]]:
    """Models the check refuses: (builder, the layer name the refusal must name)."""
    import tf_keras as k

    L = k.layers
    return {
        "Subtract": (lambda: _merge("Subtract", name="diff"), "diff"),
        "ThresholdedReLU": (lambda: _seq(V, L.Dense(4), L.ThresholdedReLU(0.1, name="thr")), "thr"),
        "Resizing": (lambda: _seq(IM, L.Dense(2), L.Resizing(4, 4, name="resize")), "resize"),
        "CenterCrop": (lambda: _seq(IM, L.Dense(2), L.CenterCrop(4, 4, name="crop")), "crop"),
        "GroupNormalization": (lambda: _seq(V, L.Dense(4), L.GroupNormalization(2, name="groups")), "groups"),
        "UnitNormalization": (lambda: _seq(V, L.Dense(4), L.UnitNormalization(name="unit")), "unit"),
        "GRU reset_after": (lambda: _seq(S, L.GRU(4, name="gru_default")), "gru_default"),
        "ReLU negative_slope": (lambda: _seq(V, L.Dense(4), L.ReLU(negative_slope=0.1, threshold=0.2, name="leaky")), "leaky"),
        "activation exponential": (lambda: _seq(V, L.Dense(4, activation="exponential", name="exp")), "exp"),
        "activity regularizer": (lambda: _seq(V, L.Dense(4, activity_regularizer="l2", name="act_reg")), "act_reg"),
        "weights violating a constraint": (lambda: _seq(V, L.Dense(4, kernel_constraint=k.constraints.MaxNorm(0.5),
                                                                 kernel_initializer="ones", name="capped")), "capped"),
        "StackedRNNCells": (lambda: _seq(S, L.RNN([L.SimpleRNNCell(3), L.SimpleRNNCell(2)], name="stacked")), "stacked"),
    }  # fmt: skip


def _seeded(build: Callable[[], Any]) -> Any:
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    return build()


RUN = """async ([topology, specs, blob, x, shape]) => {
  const { Trainer, useBackend, preferredBackend } = await import('/peer/src/trainer.js');
  const out = { preferred: preferredBackend(topology) };
  out.backend = await useBackend(out.preferred);
  const bytes = Uint8Array.from(atob(blob), (c) => c.charCodeAt(0));
  const manifest = { model: { topology, weights: specs }, dataset: null,
                     training: { optimizer: 'adam', learning_rate: 0.01, batch_size: 4 } };
  const n = shape[0];
  const data = { x: new Float32Array(x), y: Uint8Array.from({ length: n }, (_, i) => i % 3), n, shape: shape.slice(1) };
  let t;
  try { t = await Trainer.create(manifest, bytes, data, data, 0); } catch (e) { return { ...out, error: 'load: ' + e.message }; }
  try {
    out.pred = Array.from(tf.tidy(() => t.model.predict(tf.tensor(data.x, shape)).dataSync()));
    const before = t.getWeights();
    out.loss = await t.trainSteps(2);
    out.moved = t.getWeights().map((w, i) => w.some((v, j) => v !== before[i][j]));
  } catch (e) { out.error = e.message; }
  t.model.dispose();
  return out;
}"""


async def _run_in_browser(server: str, models: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each model through keras_to_tfjs, then the browser Trainer: results with ``err`` (max |pred - tf_keras|)."""
    results = {}
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{server}/peer/bench/bench.html")
        await page.wait_for_function("window.benchReady === true")
        for name, model in models.items():
            topology, specs, blob = keras_to_tfjs(model)
            shape = (4, *model.input_shape[1:])
            x = np.random.default_rng(0).random(shape, dtype=np.float32) * (9 if name == "Embedding" else 1)
            r = await page.evaluate(RUN, [topology, [s.model_dump() for s in specs], base64.b64encode(blob).decode(),
                                          x.ravel().tolist(), list(shape)])  # fmt: skip
            want = model(x, training=False).numpy()
            if "pred" in r:
                r["err"] = float(np.max(np.abs(np.asarray(r.pop("pred")).reshape(want.shape) - want)))
            r["python_preferred"] = tfjs_compat.preferred_backend(topology)
            results[name] = r
    return results


@pytest.mark.timeout(600)
async def test_every_accepted_layer_loads_predicts_and_trains_in_the_browser(server: str) -> None:
    models = {name: _seeded(build) for name, build in _good().items()}
    covered = {type(layer).__name__ for m in models.values() for _, layer in tfjs_compat._layers(m)}
    assert tfjs_compat.TRAINABLE - {"InputLayer"} <= covered, tfjs_compat.TRAINABLE - covered
    for name, model in models.items():
        assert tfjs_compat.browser_problems(model) == [], (name, tfjs_compat.browser_problems(model))
    results = await _run_in_browser(server, models)
    failed = {n: r for n, r in results.items()
              if "error" in r or r["err"] > 1e-5 or not np.isfinite(r["loss"]) or not any(r["moved"])
              or r["backend"] != r["preferred"] or r["preferred"] != r["python_preferred"]}  # fmt: skip
    assert not failed, {n: {k: v for k, v in r.items() if k != "moved"} for n, r in failed.items()}


@pytest.mark.timeout(600)
async def test_every_refused_model_really_fails_in_the_browser_and_the_refusal_names_its_layer(server: str) -> None:
    cases = _bad()
    models = {name: _seeded(build) for name, (build, _) in cases.items()}
    for name, model in models.items():
        problems = tfjs_compat.browser_problems(model)
        assert [p.layer.split("/")[0] for p in problems] == [cases[name][1]], (name, problems)
    results = await _run_in_browser(server, models)
    works = {n: r for n, r in results.items() if "error" not in r and r["err"] <= 1e-5}
    assert not works, works


# --- publishing: Lambda, and a Python-only model --------------------------------------------


def _lambda_files(tmp: Path) -> list[Path]:
    import keras
    import tf_keras

    k3 = keras.Sequential([keras.Input(V), keras.layers.Lambda(lambda t: t * 2.0, name="double"),
                           keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    k3.save(tmp / "lambda.keras")
    k3.save(tmp / "lambda3.h5")
    k2 = tf_keras.Sequential([tf_keras.Input(V), tf_keras.layers.Lambda(lambda t: t * 2.0, name="double"),
                              tf_keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    k2.save(tmp / "lambda2.h5", save_format="h5")
    return [tmp / "lambda.keras", tmp / "lambda3.h5", tmp / "lambda2.h5"]


async def test_a_lambda_model_is_refused_with_its_layer_name_even_for_python_peers(server: str, tmp_path: Path) -> None:
    for path in _lambda_files(tmp_path):
        for extra in ([], ["--python-peers-only"]):
            code, out, err = await run_cli("publish", server, "--identity", str(tmp_path / "k.key"), "--model", str(path),
                                           "--dataset", "none", *extra)  # fmt: skip
            assert code == 2 and err.startswith("swarm publish: layer 'double' (Lambda): "), (path, extra, err)
            assert "Rescaling" in err and "Traceback" not in err + out


def _group_norm_h5(tmp: Path) -> Path:
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input(V), tf_keras.layers.Dense(4), tf_keras.layers.GroupNormalization(2, name="groups"),
                                 tf_keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    model.save(tmp / "gn.h5", save_format="h5")
    return tmp / "gn.h5"


@pytest.mark.timeout(300)
async def test_a_python_only_model_is_published_only_when_asked_and_the_join_page_explains(server: str, tmp_path: Path) -> None:
    import aiohttp

    from peer.config import parse_join_url
    from peer.fetch import fetch_blob, fetch_manifest
    from peer.trainer import Trainer

    h5 = _group_norm_h5(tmp_path)
    base = ["publish", server, "--identity", str(tmp_path / "k.key"), "--model", str(h5), "--dataset", "none"]
    code, _, err = await run_cli(*base)
    assert code == 2 and "layer 'groups' (GroupNormalization): TF.js has no GroupNormalization layer" in err, err
    assert "--python-peers-only" in err

    code, out, err = await run_cli(*base, "--python-peers-only")
    assert code == 0, err
    join_url = out.strip().splitlines()[-1].split(": ", 1)[1].strip()
    _, swarm_id = parse_join_url(join_url)  # the link may carry a #pk= publisher pin
    async with aiohttp.ClientSession() as http:
        _, manifest = await fetch_manifest(http, server, swarm_id)
        initial = await fetch_blob(http, server, manifest.model.initial_weights)
    assert manifest.model.python_only

    # a Python peer builds and trains it
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 6), dtype=np.float32), rng.integers(0, 3, 64).astype(np.uint8)
    trainer = Trainer(manifest, initial, (x, y), (x, y))
    before = trainer.get_weights()
    assert np.isfinite(trainer.train_steps(5))
    assert any(not np.array_equal(a, b) for a, b in zip(before, trainer.get_weights(), strict=True))

    # the join page explains instead of failing on "Unknown layer: GroupNormalization"
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(join_url)
        await page.wait_for_selector("#python-only:not([hidden])", timeout=30_000)
        command = await page.text_content("#python-only-command")
        status = await page.text_content("#status")
        snap = await page.evaluate("() => window.swarmPeer.snapshot()")
    assert command == f"swarm join {join_url}"
    assert "Python peers only" in (status or "")
    assert not errors and snap["error"] is None and snap["step"] == 0, (errors, snap)


def test_the_published_topology_of_an_mlp_is_browser_trainable_and_not_python_only() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from apps.publish import DataOptions, build_publication

    pub = build_publication(Ed25519PrivateKey.generate(), hidden=[(8, "relu")], input_size=4, classes=3, data=DataOptions("none"))
    assert pub.manifest.model.python_only is False
    assert '"python_only":false' in pub.signed.manifest
