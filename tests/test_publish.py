"""``swarm publish``: every model source trains in a real swarm; sharding skews labels as asked.

Each kind of model (Keras .h5, TF.js layers directory, no-code MLP) is published through the
CLI to a real server on 127.0.0.1 and trained by a real Python peer (a ``swarm join``
subprocess), whose test accuracy must rise well above its starting point.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import spawn_peer
from apps.publish import DataOptions, build_publication
from peer.identity import load_or_create
from protocols.crypto import public_key_bytes, publisher_fingerprint
from protocols.dataset import decode_shard
from protocols.manifest import parse_envelope

from publish_helpers import blobs_csv, keras_functional, keras_mlp, mnist_subset_npz, run_cli, save_tfjs

MAX_STEPS = 150
KNOBS = ["--local-steps", "10", "--eval-every", "50", "--batch-size", "32", "--learning-rate", "0.005",
         "--clipnorm", "5", "--l2", "0.0001", "--warmup-steps", "20", "--degree", "2"]  # fmt: skip


def _sources(kind: str, tmp: Path) -> list[str]:
    if kind == "h5":
        keras_mlp((28, 28), 10).save(tmp / "digits.h5", save_format="h5")
        return ["--model", str(tmp / "digits.h5"), "--dataset", str(mnist_subset_npz(tmp / "digits.npz", image_shape=(28, 28)))]
    if kind == "tfjs":
        # 6 classes: a random initialization scores near chance (a 3-class task could start at 0.9)
        save_tfjs(keras_functional(12, 6), tmp / "blobs-tfjs")
        csv = blobs_csv(tmp / "blobs.csv", features=12, classes=6, spread=1.5)
        return ["--model", str(tmp / "blobs-tfjs"), "--dataset", str(csv), "--label-column", "label"]
    return ["--hidden", "48:tanh,24:relu", "--dataset", "mnist", "--optimizer", "rmsprop"]


@pytest.mark.parametrize("kind", ["h5", "tfjs", "mlp"])
async def test_each_model_source_publishes_and_trains(kind: str, server: str, tmp_path: Path) -> None:
    code, out, err = await run_cli("publish", server, "--identity", str(tmp_path / "pub.key"), "--name", f"t-{kind}",
                                   "--shards", "2", *KNOBS, *_sources(kind, tmp_path))  # fmt: skip
    assert code == 0, err
    lines = dict(line.split(":", 1) for line in out.strip().splitlines())
    swarm_id, join_url = lines["swarm id"].strip(), lines["join link"].strip()
    publisher = publisher_fingerprint(public_key_bytes(load_or_create(tmp_path / "pub.key")))
    assert lines["publisher"].split()[0] == publisher
    assert join_url == f"{server}/s/{swarm_id}#pk={publisher}"  # pinned: the peer below refuses any other publisher

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server}/api/swarms/{swarm_id}") as resp:
            manifest = parse_envelope(await resp.read()).verify()
    t = manifest.training
    assert (t.local_steps, t.clipnorm, t.l2, t.warmup_steps, manifest.gossip.degree) == (10, 5.0, 0.0001, 20, 2)
    assert manifest.dataset is not None and len(manifest.dataset.train_shards) == 2

    peer = spawn_peer(join_url, tmp_path, "peer", "--max-steps", str(MAX_STEPS))
    try:
        deadline = time.monotonic() + 90
        while (row := peer.latest) is None or row["step"] < MAX_STEPS:
            assert peer.proc.poll() is None, peer.log.read_text()[-3000:]
            assert time.monotonic() < deadline, peer.rows[-1:]
            await asyncio.sleep(0.3)
    finally:
        peer.terminate()
        assert await peer.wait(60) == 0, peer.log.read_text()[-3000:]
    accs = [r["test_acc"] for r in peer.rows]
    assert accs[-1] >= accs[0] + 0.25 and accs[-1] >= 0.6, accs
    assert "Traceback" not in peer.log.read_text()


def _label_shares(shards: list[bytes], classes: int) -> np.ndarray:
    """[classes, shards]: the share of each class's training examples that each shard holds."""
    counts = np.stack([np.bincount(decode_shard(b)[1], minlength=classes) for b in shards], axis=1).astype(float)
    return counts / counts.sum(axis=1, keepdims=True)


def _alpha_estimate(shares: np.ndarray) -> float:
    """Method of moments: a Dirichlet(alpha) share over S shards has variance (1/S)(1-1/S)/(S alpha + 1)."""
    s = shares.shape[1]
    var = float(np.mean((shares - 1 / s) ** 2))
    return ((1 / s) * (1 - 1 / s) / var - 1) / s


@pytest.fixture(scope="module")
def many_classes_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("data") / "classes40.npz"
    y = np.repeat(np.arange(40), 100).astype(np.uint8)
    np.savez(path, x=rng.random((len(y), 6), dtype=np.float32), y=y)
    return path


def _shards(npz: Path, partition: str, alpha: float = 0.5) -> tuple[list[bytes], np.ndarray]:
    pub = build_publication(Ed25519PrivateKey.generate(), hidden=[(4, "relu")],
                            data=DataOptions(str(npz), shards=5, partition=partition, alpha=alpha), seed=3)  # fmt: skip
    assert pub.manifest.dataset is not None and pub.manifest.dataset.partition == partition
    shards = [pub.blobs[r.digest] for r in pub.manifest.dataset.train_shards]
    test = decode_shard(pub.blobs[pub.manifest.dataset.test.digest])[1]
    return shards, np.bincount(test, minlength=40)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 5.0])
def test_dirichlet_sharding_has_the_requested_label_skew(many_classes_npz: Path, alpha: float) -> None:
    shards, test_counts = _shards(many_classes_npz, "dirichlet", alpha)
    shares = _label_shares(shards, 40)
    estimate = _alpha_estimate(shares)
    # 40 classes x 5 shards: the moment estimate is within a factor 2 of the requested alpha
    assert alpha / 2 <= estimate <= alpha * 2, (alpha, estimate)
    assert sum(len(decode_shard(b)[1]) for b in shards) == 40 * 80  # every training example in exactly one shard
    assert np.all(test_counts == 20)  # the held-out 20 % is stratified, untouched by the skew


def test_iid_sharding_has_no_label_skew(many_classes_npz: Path) -> None:
    shards, _ = _shards(many_classes_npz, "iid")
    shares = _label_shares(shards, 40)
    # sampling noise only: a class's 80 examples dealt at random to 5 shards give a share variance
    # of about p (1 - p) / 80 = 0.002 (Dirichlet alpha = 0.2 would give 0.08)
    var = float(np.mean((shares - 0.2) ** 2))
    assert 0.001 <= var <= 0.003, var
    sizes = [len(decode_shard(b)[1]) for b in shards]
    assert max(sizes) - min(sizes) <= 1


def test_knobs_reach_the_optimizer_and_the_loss() -> None:
    """clipnorm, l2 and warm-up as the manifest defines them, checked against hand computations."""
    from peer.trainer import Trainer, warmup_lr
    from protocols.manifest import TrainingConfig

    assert [warmup_lr(0.1, 4, s) for s in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert warmup_lr(0.1, 0, 0) == 0.1
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 6), dtype=np.float32), rng.integers(0, 3, 64)

    def trainer_for(training: TrainingConfig) -> Trainer:
        pub = build_publication(Ed25519PrivateKey.generate(), hidden=[(5, "relu")], input_size=6, classes=3,
                                data=DataOptions("none"), training=training)  # fmt: skip
        m = pub.manifest
        return Trainer(m, pub.blobs[m.model.initial_weights.digest], (x, y), (x, y))

    trainer = trainer_for(TrainingConfig(optimizer="sgd", learning_rate=0.5, clipnorm=1e-3, warmup_steps=4, batch_size=64))
    before = trainer.get_weights()
    trainer.train_steps(1)
    # SGD at warm-up step 0: lr = 0.5 / 4, and every gradient tensor clipped to norm 1e-3
    for w0, w1 in zip(before, trainer.get_weights(), strict=True):
        # float32 weights near 1 carry about 6e-8 of rounding per element on top of the clipped step
        step = np.linalg.norm(w1.astype(np.float64) - w0)
        assert step <= 0.5 / 4 * 1e-3 + 1e-6 * np.sqrt(w0.size), step
    assert float(trainer.optimizer.learning_rate.numpy()) == pytest.approx(0.125)
    trainer.train_steps(4)
    assert float(trainer.optimizer.learning_rate.numpy()) == pytest.approx(0.5)

    # l2: the step's loss is the data loss plus l2 * sum(w**2) over kernels (rank >= 2) only
    trainer = trainer_for(TrainingConfig(l2=0.01, batch_size=64))
    weights = trainer.get_weights()
    data_loss = float(trainer.loss_fn(y, trainer.model(x, training=False)))
    penalty = 0.01 * sum(float(np.sum(w.astype(np.float64) ** 2)) for w in weights if w.ndim >= 2)
    assert trainer.train_steps(1) == pytest.approx(data_loss + penalty, rel=1e-5)
