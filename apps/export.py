"""``swarm export``: a peer's model as a Keras ``.h5`` file and a TF.js layers model.

Sources:

* a peer's checkpoint directory (``model.h5`` + ``state.json``, see ``peer/checkpoint.py``):
  the model the peer trained, exactly as it last evaluated it (the final checkpoint is written
  right after the final metrics row);
* a join link ``http(s)://HOST/s/<swarm id>``: the swarm's published initial model, verified
  against the signed manifest before it is saved;
* a TF.js layers model: what the browser peer's "Download model" button saves
  (``NAME.json`` + ``NAME.weights.bin``), or a directory with ``model.json``.

Output (``--out DIR``): ``model.h5`` (``tf_keras.models.load_model`` or Keras 3
``keras.saving.load_model``), ``tfjs/`` (``model.json`` + weight shards, ``tf.loadLayersModel``)
and ``export.json`` describing where it came from. Both files are reloaded and checked to
predict the same as the source model.

``model.h5`` is compiled with the swarm's training configuration (optimizer and learning
rate, loss, metrics), so ``model.fit`` continues from it without ``compile``. It comes from the
checkpoint's own ``model.h5`` (peers compile theirs), the manifest (join link), or the
``gossip_swarm.training`` the browser peer stores in a download's ``userDefinedMetadata``;
a source with none of them (a checkpoint from before this) gets the manifest defaults and
says so in ``export.json``. The optimizer *state* is not exported: it is one peer's moment
estimates from before its last merges, and Keras 3 cannot restore tf_keras optimizer
variables from an .h5 (``fit`` fails with "Unknown variable"); ``fit`` starts the optimizer
afresh with the swarm's settings.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from peer.checkpoint import resolve
from protocols.manifest import TrainingConfig

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class ExportError(ValueError):
    """A source that holds no exportable model; the message says what is missing."""


def _keras() -> Any:
    from .quiet import import_tensorflow

    import_tensorflow()
    import tf_keras

    return tf_keras


def load_checkpoint_model(directory: Path) -> tuple[Any, dict[str, Any]]:
    """The model and ``state.json`` (step, gossip weight, model id) of a peer's checkpoint."""
    if not directory.is_dir():
        raise ExportError(f"{directory} is not a directory; give a peer's checkpoint directory or a join link")
    directory = resolve(directory)  # the current checkpoint: its model and state belong together
    h5 = directory / "model.h5"
    if not h5.is_file():
        raise ExportError(f"{directory} has no model.h5; is it a peer's checkpoint directory (--checkpoint-dir)?")
    with h5.open("rb") as f:
        if f.read(8) != HDF5_MAGIC:
            raise ExportError(f"{h5} is not an HDF5 file")
    try:
        model = _keras().models.load_model(h5, compile=False)
    except Exception as exc:  # h5py and Keras raise many types for a broken file
        raise ExportError(f"{h5} does not load as a Keras model: {str(exc).splitlines()[0][:300]}") from None
    state_path = directory / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    return model, {**state, "training": _h5_training(h5)}


def _h5_training(h5: Path) -> tuple[TrainingConfig, str] | None:
    """The TrainingConfig a peer's compiled checkpoint carries (``training_config``), if any."""
    import h5py

    with h5py.File(h5, "r") as f:
        raw = f.attrs.get("training_config")
    if raw is None:
        return None
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    optimizer = config.get("optimizer_config", {})
    kind = str(optimizer.get("class_name", "")).split(">")[-1].lower()
    metrics = [m["config"]["name"] if isinstance(m, dict) else m for group in config.get("metrics") or [] for m in group]
    try:
        return TrainingConfig(optimizer=kind, learning_rate=float(optimizer["config"]["learning_rate"]),
                              loss=config["loss"], metrics=metrics,
                              clipnorm=optimizer["config"].get("clipnorm")), "checkpoint"  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def load_tfjs_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """A TF.js layers model: the browser peer's download (``NAME.json`` + ``NAME.weights.bin``)
    or a directory holding ``model.json``."""
    from tensorflowjs.converters import load_keras_model

    json_path = path / "model.json" if path.is_dir() else path
    try:
        spec = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{json_path} is not a readable TF.js model.json: {exc}") from None
    if not isinstance(spec, dict) or spec.get("format") not in (None, "layers-model") or "modelTopology" not in spec:
        raise ExportError(f"{json_path} is not a TF.js layers model (format {spec.get('format') if isinstance(spec, dict) else '?'})")
    try:
        model = load_keras_model(str(json_path))
    except Exception as exc:  # missing or truncated weight files, topology errors
        raise ExportError(f"{json_path} does not load: {str(exc).splitlines()[0][:300]}") from None
    stored = (spec.get("userDefinedMetadata") or {}).get("gossip_swarm", {}).get("training")
    try:
        training = (TrainingConfig.model_validate(stored), "browser download") if stored else None
    except ValueError:
        training = None
    return model, {"training": training}


async def _published_model(url: str) -> tuple[Any, dict[str, Any]]:
    import aiohttp

    from peer.config import parse_join_url
    from peer.fetch import fetch_blob, fetch_manifest
    from peer.trainer import build_model

    server, swarm_id = parse_join_url(url)
    async with aiohttp.ClientSession() as http:
        signed, manifest = await fetch_manifest(http, server, swarm_id)
        initial = await fetch_blob(http, server, manifest.model.initial_weights)
    return build_model(manifest, initial), {"model_id": signed.model_id, "step": 0, "swarm_id": swarm_id,
                                            "training": (manifest.training, "manifest")}  # fmt: skip


def save_model(model: Any, out: Path, training: TrainingConfig) -> None:
    """``out/model.h5`` (compiled with ``training``) and ``out/tfjs/``, each written next to its
    place and renamed."""
    import h5py
    import tensorflowjs as tfjs

    from peer.trainer import compile_for

    compile_for(model, training)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tmp-") as tmp:
        model.save(Path(tmp) / "model.h5", save_format="h5")
        with h5py.File(Path(tmp) / "model.h5", "a") as f:
            if "optimizer_weights" in f:  # see the module docstring
                del f["optimizer_weights"]
            f.attrs["training_config"] = json.dumps(_portable(json.loads(f.attrs["training_config"])))
        tfjs.converters.save_keras_model(model, Path(tmp) / "tfjs")
        os.replace(Path(tmp) / "model.h5", out / "model.h5")
        if (out / "tfjs").exists():
            shutil.rmtree(out / "tfjs")
        os.replace(Path(tmp) / "tfjs", out / "tfjs")


OPTIMIZER_KEYS = ("name", "learning_rate", "clipnorm", "beta_1", "beta_2", "epsilon", "amsgrad", "momentum",
                  "nesterov", "rho", "centered")  # what tf_keras and Keras 3 optimizers both take


def _portable(training_config: dict[str, Any]) -> dict[str, Any]:
    """tf_keras writes its optimizers as ``Custom>SGD`` with tf_keras-only options (``jit_compile``,
    ``is_legacy_optimizer``); Keras 3 does not know the class, silently falls back to a default
    ``SGD`` (learning rate 0.01 instead of the swarm's). The plain class name and the options
    both read load the same optimizer in either."""
    optimizer = training_config["optimizer_config"]
    config = {k: v for k, v in optimizer["config"].items() if k in OPTIMIZER_KEYS}
    return {**training_config, "optimizer_config": {"class_name": optimizer["class_name"].split(">")[-1], "config": config}}


def _check_round_trip(model: Any, out: Path) -> None:
    """Both exported files must predict what the source model predicts."""
    from tensorflowjs.converters import load_keras_model

    shape = (4, *[int(d) for d in model.input_shape[1:]])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    want = model(x, training=False).numpy()
    h5 = _keras().models.load_model(out / "model.h5")
    for name, reloaded in (("model.h5", h5), ("tfjs/model.json", load_keras_model(str(out / "tfjs" / "model.json")))):
        got = reloaded(x, training=False).numpy()
        if not np.allclose(got, want, atol=1e-6):
            raise ExportError(f"exported {name} does not predict what the source model predicts")
    if getattr(h5, "optimizer", None) is None or not getattr(h5, "compiled_loss", None):
        raise ExportError("exported model.h5 lost its training configuration")


def export_model(source: str, out: Path) -> dict[str, Any]:
    """Export ``source`` (checkpoint directory or join link) to ``out``; return a summary."""
    if source.startswith(("http://", "https://")):
        model, state = asyncio.run(_published_model(source))
        kind = "published"
    elif Path(source).suffix == ".json" or (Path(source) / "model.json").is_file() and not (Path(source) / "model.h5").is_file():
        model, state = load_tfjs_model(Path(source))
        kind = "tfjs"
    else:
        model, state = load_checkpoint_model(Path(source))
        kind = "checkpoint"
    training, origin = state.get("training") or (TrainingConfig(), "default (the source carries none)")
    save_model(model, out, training)
    _check_round_trip(model, out)
    summary = {
        "source": source, "kind": kind, "model_id": state.get("model_id"), "step": state.get("step"),
        "input_shape": [int(d) for d in model.input_shape[1:]], "classes": int(model.output_shape[-1]),
        "params": int(model.count_params()),
        "training": {"from": origin, "optimizer": training.optimizer, "learning_rate": training.learning_rate,
                     "loss": training.loss, "metrics": list(training.metrics)},
        "files": {"keras_h5": str(out / "model.h5"), "tfjs_layers": str(out / "tfjs" / "model.json")},
    }  # fmt: skip
    (out / "export.json").write_text(json.dumps(summary, indent=2))
    return summary
