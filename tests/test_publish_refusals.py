"""Bad publish input is refused with a message saying what is wrong, and the server stores nothing.

Local faults (the model or dataset files) are caught by ``swarm publish`` before any upload;
server-side faults (signature, size, a dataset that does not fit) by ``POST /api/publish``.
Either way the CLI exits 2 with one line naming the fault, and the data directory is unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import start_server
from apps.publish import Publication, upload
from protocols.crypto import public_key_bytes, sha256
from protocols.dataset import encode_shard
from protocols.manifest import ShardRef, SignedManifest, envelope_json, sign_manifest

from publish_helpers import keras_mlp, run_cli, save_tfjs, snapshot
from tiny_swarm import publish_form, tiny_publication

KEY = Ed25519PrivateKey.from_private_bytes(b"\x21" * 32)
OTHER = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)


@pytest.fixture
async def small_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A server whose upload limit is 64 KiB, and its data directory."""
    runner, base = await start_server(tmp_path / "data", max_upload_bytes=64 * 1024)
    try:
        yield base, tmp_path / "data"
    finally:
        await runner.cleanup()


def _corrupt_h5(tmp: Path) -> list[str]:
    (tmp / "m.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    return ["--model", str(tmp / "m.h5"), "--dataset", "none"]


def _not_hdf5(tmp: Path) -> list[str]:
    (tmp / "m.h5").write_text("this is a text file")
    return ["--model", str(tmp / "m.h5"), "--dataset", "none"]


def _weights_only_h5(tmp: Path) -> list[str]:
    keras_mlp((4,), 3).save_weights(tmp / "w.h5")
    return ["--model", str(tmp / "w.h5"), "--dataset", "none"]


def _graph_model_json(tmp: Path) -> list[str]:
    (tmp / "g").mkdir()
    (tmp / "g" / "model.json").write_text(json.dumps({"format": "graph-model", "modelTopology": {"node": []}, "weightsManifest": []}))
    return ["--model", str(tmp / "g"), "--dataset", "none"]


def _tfjs_wrong_shapes(tmp: Path) -> list[str]:
    save_tfjs(keras_mlp((4,), 3), tmp / "j")
    config = json.loads((tmp / "j" / "model.json").read_text())
    config["weightsManifest"][0]["weights"][0]["shape"] = [5, 32]
    (tmp / "j" / "model.json").write_text(json.dumps(config))
    return ["--model", str(tmp / "j"), "--dataset", "none"]


def _tfjs_truncated_weights(tmp: Path) -> list[str]:
    save_tfjs(keras_mlp((4,), 3), tmp / "j")
    shard = next((tmp / "j").glob("*.bin"))
    shard.write_bytes(shard.read_bytes()[:-8])
    return ["--model", str(tmp / "j"), "--dataset", "none"]


def _no_softmax(tmp: Path) -> list[str]:
    import tf_keras

    tf_keras.Sequential([tf_keras.layers.Input(shape=(4,)), tf_keras.layers.Dense(3)]).save(tmp / "l.h5", save_format="h5")
    # a linear output publishes as regression (issue 13); asked to classify, it is refused
    return ["--model", str(tmp / "l.h5"), "--dataset", "none", "--loss", "sparse_categorical_crossentropy"]


def _dataset_wrong_shape(tmp: Path) -> list[str]:
    keras_mlp((4,), 3).save(tmp / "m.h5", save_format="h5")
    np.savez(tmp / "d.npz", x=np.zeros((20, 5), np.float32), y=np.zeros(20, np.uint8))
    return ["--model", str(tmp / "m.h5"), "--dataset", str(tmp / "d.npz")]


def _dataset_too_many_labels(tmp: Path) -> list[str]:
    keras_mlp((4,), 3).save(tmp / "m.h5", save_format="h5")
    np.savez(tmp / "d.npz", x=np.zeros((20, 4), np.float32), y=np.arange(20, dtype=np.uint8) % 7)
    return ["--model", str(tmp / "m.h5"), "--dataset", str(tmp / "d.npz")]


def _csv_without_label(tmp: Path) -> list[str]:
    (tmp / "d.csv").write_text("a,b,c\n1,2,0\n3,4,1\n")
    return ["--hidden", "8", "--dataset", str(tmp / "d.csv"), "--label-column", "class"]


def _bad_knob(tmp: Path) -> list[str]:
    return ["--hidden", "8", "--input-size", "4", "--classes", "3", "--dataset", "none", "--clipnorm", "-1"]


LOCAL_FAULTS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "corrupt_h5": (_corrupt_h5, "is not a loadable Keras model"),
    "not_hdf5": (_not_hdf5, "is not an HDF5 file"),
    "weights_only_h5": (_weights_only_h5, "it must hold a whole model"),
    "graph_model": (_graph_model_json, "only layers models"),
    "weights_do_not_match_topology": (_tfjs_wrong_shapes, "but the topology needs"),
    "truncated_weight_file": (_tfjs_truncated_weights, "the topology needs"),
    "no_softmax": (_no_softmax, "needs a softmax output over >= 2 classes; the model's last layer is linear"),
    "dataset_shape": (_dataset_wrong_shape, "do not fit the model's input shape [4]"),
    "dataset_labels": (_dataset_too_many_labels, "labels go up to 6 but the model outputs 3 classes"),
    "csv_label_column": (_csv_without_label, "no label column 'class'"),
    "bad_knob": (_bad_knob, "--clipnorm: Input should be greater than 0"),
}


@pytest.mark.parametrize("fault", list(LOCAL_FAULTS))
async def test_bad_local_input_is_refused_and_nothing_is_stored(fault: str, server: str, tmp_path: Path) -> None:
    make, message = LOCAL_FAULTS[fault]
    data_dir = tmp_path / "server-data"  # the `server` fixture's directory
    before = snapshot(data_dir)
    code, out, err = await run_cli("publish", server, "--identity", str(tmp_path / "k.key"), *make(tmp_path))
    assert code == 2 and message in err, err
    assert err.startswith("swarm publish: ") and "Traceback" not in err + out
    assert snapshot(data_dir) == before


def test_the_cli_process_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The real ``swarm`` process (not only main()): a corrupt model is one line on stderr."""
    args = _corrupt_h5(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "apps.cli", "publish", "http://127.0.0.1:9", "--identity",
                           str(tmp_path / "k.key"), *args], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("swarm publish: ")


def _resigned(pub: Publication, key: Ed25519PrivateKey) -> SignedManifest:
    return SignedManifest(manifest=pub.signed.manifest, signature=sign_manifest(key, pub.manifest.model_copy(
        update={"publisher_key": public_key_bytes(key).hex()})).signature)  # fmt: skip


async def _post(server: str, envelope: str | None, blobs: dict[str, bytes]) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server}/api/publish", data=publish_form(envelope, blobs.items())) as resp:
            return resp.status, await resp.json()


def _misfit_shards(pub: Publication) -> tuple[str, dict[str, bytes]]:
    """The tiny swarm with one shard of 5-feature examples where the manifest says 4."""
    assert pub.manifest.dataset is not None
    data = encode_shard(np.zeros((5, 5), np.uint8), np.zeros(5, np.uint8))
    ref = ShardRef(digest=sha256(data).hex(), size=len(data), num_samples=5)
    ds = pub.manifest.dataset.model_copy(update={"train_shards": [ref, *pub.manifest.dataset.train_shards[1:]]})
    blobs = {k: v for k, v in pub.blobs.items() if k != pub.manifest.dataset.train_shards[0].digest}
    blobs[ref.digest] = data
    return envelope_json(sign_manifest(KEY, pub.manifest.model_copy(update={"dataset": ds}))), blobs


SERVER_FAULTS = {
    "unsigned": (lambda p: (json.dumps({"manifest": p.signed.manifest}), p.blobs), "signature"),
    "zero_signature": (lambda p: (envelope_json(p.signed.model_copy(update={"signature": "00" * 64})), p.blobs),
                       "manifest signature does not verify against its publisher_key"),
    "signed_by_another_key": (lambda p: (envelope_json(_resigned(p, OTHER)), p.blobs),
                              "manifest signature does not verify against its publisher_key"),
    "dataset_does_not_fit": (_misfit_shards, "holds 5 examples of shape [5], manifest says 5 of [4]"),
    "blob_not_matching_digest": (lambda p: (envelope_json(p.signed), {k: v[:-1] + b"!" for k, v in p.blobs.items()}),
                                 "does not hash to its name"),
}  # fmt: skip


@pytest.mark.parametrize("fault", list(SERVER_FAULTS))
async def test_server_refuses_a_bad_publication_and_stores_nothing(fault: str, server: str, tmp_path: Path) -> None:
    make, message = SERVER_FAULTS[fault]
    envelope, blobs = make(tiny_publication(KEY))
    before = snapshot(tmp_path / "server-data")
    status, body = await _post(server, envelope, blobs)
    assert status == 400 and message in body["message"] and "nothing stored" in body["message"], body
    assert snapshot(tmp_path / "server-data") == before
    async with aiohttp.ClientSession() as http, http.get(f"{server}/api/swarms") as resp:
        assert (await resp.json())["swarms"] == []


async def test_upload_over_the_size_limit_is_refused_before_and_by_the_server(
    small_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, data_dir = small_server
    before = snapshot(data_dir)
    # the CLI: the built-in MNIST is megabytes; refused before sending, exit 2, one line
    code, _, err = await run_cli("publish", base, "--identity", str(tmp_path / "k.key"), "--hidden", "8")
    assert code == 2 and "over the server's limit of 65536 bytes" in err, err
    # a client that does not ask first: the server stops reading at the limit (413)
    pub = tiny_publication(KEY)
    status, body = await _post(base, envelope_json(pub.signed), {**pub.blobs, "f" * 64: bytes(70 * 1024)})
    assert status == 413 and "exceeds 65536 bytes" in body["message"]
    assert snapshot(data_dir) == before
    # and a publication within the limit still goes through
    reply = await upload(base, Publication(pub.signed, pub.manifest, pub.blobs))
    assert reply["swarm_id"] == pub.swarm_id
