"""A peer's own bad data never reaches other peers (issue 14, item 7).

A peer joined with ``--data`` holding NaN: its model went NaN, int8 turned NaN into finite
numbers, and honest peers merged them. Now: local data is checked as published shards are
(finite, shape, label range with the fix named, uint8 scaled exactly as shards are); a model
that goes non-finite anyway rolls back to its last good copy before anyone can read it; and
every encoder refuses non-finite input, so such weights can never be sent.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.publish import upload
from peer.gossip import Update
from peer.metrics import PeerMetrics
from peer.node import LastGood, load_local_data
from peer.transport import MeshTransport
from protocols.codecs import CodecId, codec_for
from protocols.dataset import decode_shard, encode_shard
from protocols.frame import FrameKind
from protocols.manifest import Manifest

from test_browser_signaling_resilience import tab_publication
from tiny_swarm import tiny_publication

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = tiny_publication(Ed25519PrivateKey.generate()).manifest  # input [4], 3 classes


def npz(path: Path, x: Any, y: Any) -> Path:
    np.savez(path, x=np.asarray(x), y=np.asarray(y))
    return path


# ---- local data is checked as published shards are ---------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])  # 1e300: finite float64, inf as float32
def test_non_finite_features_are_refused_by_row(tmp_path: Path, bad: float) -> None:
    x = np.random.default_rng(0).random((20, 4))
    x[7, 2] = bad
    with pytest.raises(ValueError, match=r"1 features are NaN or infinite .*\(first: row 7\); drop or impute"):
        load_local_data(npz(tmp_path / "d.npz", x, np.zeros(20, int)), MANIFEST)


def test_labels_one_to_k_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = npz(tmp_path / "d.npz", np.zeros((6, 4)), [1, 2, 3, 1, 2, 3])
    with pytest.raises(ValueError, match=r"labels run 1\.\.3, but this model's 3 classes are 0\.\.2: subtract 1 \(y = y - 1\)"):
        load_local_data(path, MANIFEST)


@pytest.mark.parametrize(("y", "message"), [
    ([0, 1, 7], r"labels in \[0, 7\] are not classes of this model \(0\.\.2\)"),
    ([0, -1, 2], r"labels in \[-1, 2\]"),
    ([0.0, 1.5, 2.0], r"whole class indices"),
    ([[1, 0, 0], [0, 1, 0], [0, 1, 1]], r"has shape \(3, 3\); one class label per example"),
    ([0, 1], r"3 examples but y has shape \(2,\)"),
])  # fmt: skip
def test_labels_that_are_not_class_indices_are_refused(tmp_path: Path, y: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_local_data(npz(tmp_path / "d.npz", np.zeros((3, 4)), y), MANIFEST)


def test_shapes_and_files_that_do_not_fit_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"examples of shape \[5\] do not fit the model's input \[4\]"):
        load_local_data(npz(tmp_path / "a.npz", np.zeros((3, 5)), [0, 1, 2]), MANIFEST)
    (tmp_path / "b.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a .npz file"):
        load_local_data(tmp_path / "b.npz", MANIFEST)
    np.savez(tmp_path / "c.npz", features=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="must hold arrays named x and y"):
        load_local_data(tmp_path / "c.npz", MANIFEST)
    x, _ = load_local_data(npz(tmp_path / "d.npz", np.zeros((3, 2, 2)), [0, 1, 2]), MANIFEST)
    assert x.shape == (3, 4)  # the same four values per example, laid out as the model's input


def test_uint8_images_are_scaled_exactly_as_published_shards(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pixels, labels = rng.integers(0, 256, (50, 4), dtype=np.uint8), rng.integers(0, 3, 50, dtype=np.uint8)
    x, y = load_local_data(npz(tmp_path / "d.npz", pixels, labels), MANIFEST)
    shard_x, shard_y = decode_shard(encode_shard(pixels, labels))
    assert x.dtype == np.float32 and x.tobytes() == shard_x.tobytes()  # bit for bit, in [0, 1]
    assert y.tolist() == shard_y.tolist() and float(x.max()) <= 1.0


async def test_swarm_join_with_nan_data_exits_with_the_reason(server: str, tmp_path: Path) -> None:
    reply = await upload(server, tiny_publication(Ed25519PrivateKey.generate()))
    x = np.random.default_rng(2).random((30, 4))
    x[3, 0] = np.nan
    data = npz(tmp_path / "mine.npz", x, np.zeros(30, int))
    argv = [sys.executable, "-m", "apps.cli", "join", reply["join_url"], "--data", str(data), "--quiet",
            "--identity", str(tmp_path / "k.key"), "--checkpoint-dir", str(tmp_path / "ckpt"), "--ice-address", "127.0.0.1"]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "features are NaN or infinite" in done.stderr and "row 3" in done.stderr
    assert "Traceback" not in done.stderr


# ---- encoders refuse what they cannot carry ---------------------------------------------


@pytest.mark.parametrize("codec", list(CodecId), ids=lambda c: c.name)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_encoder_refuses_non_finite_weights(codec: CodecId, bad: float) -> None:
    tensors = [np.ones((2, 2), np.float32), np.array([0.5, bad, -1.0], np.float32)]
    with pytest.raises(ValueError, match=r"tensor 1 \(shape \(3,\)\) holds 1 non-finite values"):
        codec_for(codec).encode(tensors)


# ---- a model that goes non-finite rolls back, and is never sent ---------------------------


def _trainer(train_x: np.ndarray) -> Any:
    from peer.trainer import Trainer  # TensorFlow

    pub = tab_publication()  # a real 4-3 dense topology
    manifest = Manifest.model_validate({**pub.manifest.model_dump(), "training": {"batch_size": 4}})
    initial = pub.blobs[manifest.model.initial_weights.digest]
    y = np.arange(len(train_x)) % 3
    return Trainer(manifest, initial, (train_x.astype(np.float32), y), (np.zeros((3, 4), np.float32), np.arange(3)))


class _Link:
    """Just enough of a PeerLink: sending builds the frame, as PeerLink.send does under its lock."""

    peer_id = "ab" * 16
    remote_key = b"\x05" * 32
    sent = 0

    async def send(self, build: Any) -> None:
        build()
        self.sent += 1


async def test_a_model_that_goes_non_finite_rolls_back_and_is_never_sent() -> None:
    x = np.random.default_rng(3).random((8, 4))
    trainer = _trainer(x)
    trainer.train_steps(3)  # Adam's moments exist
    good = LastGood(trainer)
    saved = [w.copy() for w in trainer.get_weights()]
    saved_opt = {v.name: v.numpy() for v in trainer.optimizer.variables()}
    step = trainer.step
    assert good.check() is True and good.rollbacks == 0
    trainer.x = np.full_like(trainer.x, np.nan)  # a batch of poison (what --data with NaN did before it was checked)
    trainer.train_steps(2)
    assert not all(np.isfinite(w).all() for w in trainer.get_weights())
    poisoned = trainer.current()
    assert good.check() is False and good.rollbacks == 1
    assert all(np.array_equal(a, b) for a, b in zip(trainer.get_weights(), saved, strict=True))
    assert trainer.step == step
    assert all(np.array_equal(v.numpy(), saved_opt[v.name]) for v in trainer.optimizer.variables())
    trainer.x = x.astype(np.float32)
    trainer.train_steps(2)  # and it trains on from there
    assert all(np.isfinite(w).all() for w in trainer.get_weights())
    # had those weights reached a send, every codec refuses them: nothing leaves the peer
    for codec in CodecId:
        transport = MeshTransport(Ed25519PrivateKey.generate(), swarm_id=bytes(16), model_id=bytes(32), verifier=None,  # type: ignore[arg-type]
                                  engine=None, metrics=PeerMetrics("me"), links=dict, codec=codec)  # type: ignore[arg-type]  # fmt: skip
        link = _Link()
        with pytest.raises(ConnectionError, match="our weights cannot be sent"):
            await transport.send(link, FrameKind.EXCHANGE_REQUEST, 1, Update(poisoned.weights, 10.0, 5))  # type: ignore[arg-type]
        assert link.sent == 0 and transport.metrics.frames_sent == 0


@pytest.mark.timeout(180)
async def test_the_tab_refuses_a_nan_csv_and_rolls_its_model_back(server: str, tmp_path: Path) -> None:
    from browser import chromium

    reply = await upload(server, tab_publication())
    nan_csv, one_based = tmp_path / "nan.csv", tmp_path / "one_based.csv"
    nan_csv.write_text("a,b,c,d,label\n0.1,0.2,0.3,0.4,0\n0.1,NaN,0.3,0.4,1\n")
    one_based.write_text("a,b,c,d,label\n0.1,0.2,0.3,0.4,1\n0.1,0.2,0.3,0.4,3\n0.5,0.2,0.3,0.4,2\n")
    log = "() => window.swarmPeer.snapshot().events.join('\\n')"
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{reply['join_url']}?key=ephemeral")
        await page.wait_for_function("window.swarmPeer && window.swarmPeer.status === 'training'", timeout=60_000)
        await page.set_input_files("#csv", str(nan_csv))
        await page.wait_for_function(f"({log})().includes('cannot use nan.csv')")
        assert "line 3, column 'b' (column 2) is empty or NA" in await page.evaluate(log)  # as pandas reads NaN
        await page.set_input_files("#csv", str(one_based))
        await page.wait_for_function(f"({log})().includes('cannot use one_based.csv')")
        assert "labels run 1..3, but this model's 3 classes are 0..2: subtract 1 (y = y - 1)" in await page.evaluate(log)
        # the tab's own model goes NaN (poison slipped into its training data): it rolls back
        await page.evaluate("() => window.swarmPeer.trainer.lock.run(() => window.swarmPeer.trainer.train.x.fill(NaN))")
        await page.wait_for_function("window.swarmPeer.snapshot().rollbacks >= 1", timeout=30_000)
        finite = await page.evaluate("""() => window.swarmPeer.trainer.lock.run(
            () => window.swarmPeer.trainer.getWeights().every((w) => w.every(Number.isFinite)))""")
        assert finite  # what a neighbor could read is always the last finite model
