"""The model manifest: what a publisher signs and every peer verifies before training.

On the wire a manifest travels as a *signed envelope*::

    {"manifest": "<manifest JSON text>", "signature": "<hex Ed25519>"}

The manifest is carried as a string so its exact bytes survive any JSON parser: the
signature covers ``crypto.manifest_message(utf8(manifest))`` and the **model id** is
``sha256(utf8(manifest))``. No canonical JSON form is needed in any language.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .crypto import manifest_message, public_key_bytes, sha256, sign, verify
from .errors import ManifestError, SignatureError
from .signaling import HEX_KEY, HEX_SIG, SWARM_ID, IceServer

MANIFEST_FORMAT = "gossip-swarm/manifest/1"
HEX_DIGEST = r"^[0-9a-f]{64}$"
MAX_MANIFEST_BYTES = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightSpec(_Strict):
    """One weight tensor, in the order of the weights blob (as TF.js ``weightsManifest``)."""

    name: str = Field(max_length=256)
    shape: list[Annotated[int, Field(ge=0)]] = Field(max_length=8)
    dtype: Literal["float32"] = "float32"


class BlobRef(_Strict):
    """A content-addressed blob hosted by the signaling server at ``/content/<digest>``."""

    digest: str = Field(pattern=HEX_DIGEST)
    size: int = Field(ge=0, le=1 << 31)


class ModelSpec(_Strict):
    format: Literal["layers-model"] = "layers-model"
    topology: dict[str, Any] = Field(description="TF.js layers-format modelTopology (Keras JSON)")
    weights: list[WeightSpec] = Field(min_length=1, max_length=1024)
    initial_weights: BlobRef = Field(description="float32 little-endian tensors concatenated in `weights` order")
    python_only: bool = Field(
        default=False,
        description="the topology has layers TensorFlow.js cannot load or train: only Python peers can join "
        "(browser peers show why instead of training)",
    )

    @model_validator(mode="after")
    def _size_matches(self) -> ModelSpec:
        count = sum(_prod(w.shape) for w in self.weights)
        if count * 4 != self.initial_weights.size:
            raise ValueError(f"weights need {count * 4} bytes, initial_weights.size is {self.initial_weights.size}")
        return self


CLASSIFICATION_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy")
REGRESSION_LOSSES = ("mean_squared_error", "mean_absolute_error")
Loss = Literal["sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
               "mean_squared_error", "mean_absolute_error"]  # fmt: skip
Metric = Literal["accuracy", "mae", "mse"]


class TrainingConfig(_Strict):
    """How every peer trains. ``loss`` names the task: sparse (class index targets) or one-hot
    categorical cross-entropy on softmax outputs, binary cross-entropy on sigmoid outputs
    (targets 0/1), or MSE/MAE regression on float targets. ``metrics`` default to the task's:
    ``accuracy`` (the loss's kind: sparse, categorical or binary) for classification, ``mae``
    for regression; ``accuracy`` with a regression loss is refused."""

    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(default=0.001, gt=0, le=10)
    batch_size: int = Field(default=32, ge=1, le=4096)
    loss: Loss = "sparse_categorical_crossentropy"
    metrics: list[Metric] = Field(default_factory=lambda: ["accuracy"], min_length=1, max_length=3)
    local_steps: int = Field(default=50, ge=1, le=100000, description="local steps between exchanges")
    target_accuracy: float = Field(default=0.90, gt=0, le=1)
    eval_every: int = Field(default=50, ge=1, description="local steps between test evaluations")
    clipnorm: float | None = Field(
        default=None, gt=0, le=1e6,
        description="clip each gradient tensor to this L2 norm before the update (Keras `clipnorm`); null: no clipping",
    )  # fmt: skip
    l2: float = Field(
        default=0.0, ge=0, le=10,
        description="add l2 * sum(w**2) over every weight tensor of rank >= 2 (kernels, not biases) to the loss",
    )  # fmt: skip
    warmup_steps: int = Field(
        default=0, ge=0, le=1000000,
        description="local step t (0-based) uses learning_rate * min(1, (t + 1) / warmup_steps); 0: no warm-up",
    )  # fmt: skip

    @model_validator(mode="before")
    @classmethod
    def _task_metrics(cls, data: Any) -> Any:
        """Without ``metrics``, a regression loss measures ``mae`` (accuracy means nothing there)."""
        if isinstance(data, dict) and data.get("metrics") is None and data.get("loss") in REGRESSION_LOSSES:
            return {**data, "metrics": ["mae"]}
        return data

    @model_validator(mode="after")
    def _metrics_fit_the_loss(self) -> TrainingConfig:
        if self.is_regression and "accuracy" in self.metrics:
            raise ValueError(f"metric 'accuracy' does not apply to the regression loss {self.loss}; use mae or mse")
        return self

    @property
    def is_regression(self) -> bool:
        return self.loss in REGRESSION_LOSSES


class GossipConfig(_Strict):
    method: Literal["gossip", "central"] = Field(
        default="gossip", description="gossip: pairwise averaging; central: FedAvg through `aggregator`"
    )
    aggregator: str | None = Field(default=None, pattern=HEX_KEY, description="public key of the FedAvg aggregator")
    degree: int = Field(default=4, ge=1, le=64, description="target number of neighbors")
    max_degree: int = Field(default=8, ge=1, le=128, description="refuse connections beyond this")
    codec: Literal["float32", "float16", "int8"] = "float32"
    robust: Literal["none", "clip"] = Field(
        default="clip",
        description="clip (default): self-centered clipping of every neighbor's difference (ClippedGossip); "
        "none: plain weighted averaging, which one validly signed poisoned frame can wreck",
    )
    clip_multiplier: float = Field(default=2.0, gt=0, le=100, description="tau = this x median recent distance")
    exchange_timeout_s: float = Field(default=10.0, gt=0, le=600)
    mixing: Literal["random", "exponential"] = Field(
        default="random",
        description="whom a gossip peer exchanges with (label-skew remedy, peer/skew.py): random: a random open link; "
        "exponential: the one-peer exponential graph over the members sorted by peer id (at its round r, member "
        "i + 2^(r mod ceil(log2 n))), linked to first, a random open link when that one is not open",
    )
    fanout: int = Field(
        default=1, ge=1, le=16,
        description="distinct open links a gossip peer exchanges with per round, one after another (denser mixing); "
        "with exponential mixing the round's exponential partner is the first of them",
    )  # fmt: skip

    @model_validator(mode="after")
    def _central_needs_aggregator(self) -> GossipConfig:
        if self.method == "central" and self.aggregator is None:
            raise ValueError("method 'central' needs the aggregator's public key")
        return self


class ShardRef(BlobRef):
    num_samples: int = Field(ge=1)


class DatasetSpec(_Strict):
    name: str = Field(max_length=128)
    input_shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, max_length=4)
    num_classes: int | None = Field(
        default=None, ge=2, le=256,
        description="classes 0..num_classes-1 of a classification task (binary: 2); null for regression (float32 targets)",
    )  # fmt: skip
    class_names: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=256,
        description="the name of class i (the publisher's labels, e.g. 'cat' or '1'); null: classes are their indices",
    )  # fmt: skip
    partition: Literal["iid", "dirichlet", "by_class"] = "iid"
    train_shards: list[ShardRef] = Field(min_length=1, max_length=4096)
    test: ShardRef

    @model_validator(mode="after")
    def _names_fit_classes(self) -> DatasetSpec:
        if self.class_names is not None:
            if self.num_classes is None or len(self.class_names) != self.num_classes:
                raise ValueError(f"{len(self.class_names)} class_names for num_classes {self.num_classes}")
            if len(set(self.class_names)) != len(self.class_names):
                raise ValueError("class_names must be distinct")
        return self


class Manifest(_Strict):
    format: Literal["gossip-swarm/manifest/1"] = MANIFEST_FORMAT
    swarm_id: str = Field(pattern=SWARM_ID)
    name: str = Field(max_length=128)
    publisher_key: str = Field(pattern=HEX_KEY)
    model: ModelSpec
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    gossip: GossipConfig = Field(default_factory=GossipConfig)
    dataset: DatasetSpec | None = None
    ice_servers: list[IceServer] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _dataset_fits_the_task(self) -> Manifest:
        ds = self.dataset
        if ds is not None and (ds.num_classes is None) != self.training.is_regression:
            raise ValueError(f"loss {self.training.loss} needs dataset.num_classes "
                             f"{'null (float targets)' if self.training.is_regression else 'set (class labels)'}")  # fmt: skip
        return self

    def blobs(self) -> list[BlobRef]:
        """Every blob the manifest references (what the server must hold before accepting it)."""
        refs: list[BlobRef] = [self.model.initial_weights]
        if self.dataset is not None:
            refs += [*self.dataset.train_shards, self.dataset.test]
        return refs


class SignedManifest(_Strict):
    manifest: str = Field(max_length=MAX_MANIFEST_BYTES)
    signature: str = Field(pattern=HEX_SIG)

    @property
    def model_id(self) -> str:
        return sha256(self.manifest.encode("utf-8")).hex()

    def verify(self) -> Manifest:
        """Parse the manifest and check the publisher's signature; raise ManifestError."""
        body = parse_manifest(self.manifest)
        try:
            verify(bytes.fromhex(body.publisher_key), bytes.fromhex(self.signature),
                   manifest_message(self.manifest.encode("utf-8")))  # fmt: skip
        except SignatureError:
            raise ManifestError("manifest signature does not verify against its publisher_key") from None
        return body


STATIC_TURN_PASSWORD = (
    "a TURN password in a manifest is public to anyone who fetches it; run coturn with use-auth-secret "
    "(`swarm turn-config`) and `swarm serve --turn-url turn:HOST:3478 --turn-secret-file FILE`: the server then "
    "gives each peer its own time-limited TURN credentials, and the manifest lists no TURN server"
)


def static_turn_password(servers: list[IceServer]) -> str | None:
    """Why ``servers`` may not be published (a TURN URL with a credential), or None if they may."""
    for server in servers:
        if server.credential and any(url.split(":", 1)[0].lower() in ("turn", "turns") for url in server.urls):
            return f"{server.urls[0]}: {STATIC_TURN_PASSWORD}"
    return None


def _prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


MAX_JSON_DEPTH = 64  # objects and arrays nested in a manifest, the manifest object itself included


def _plain_json(text: str) -> None:
    """Refuse what pydantic's JSON parser takes but JSON (and JavaScript's ``JSON.parse``) does not.

    ``NaN`` and ``Infinity`` tokens (pydantic reads them into the free-form ``model.topology``),
    and nesting beyond ``MAX_JSON_DEPTH`` (pydantic stops at a depth of about 200, counted
    differently for arrays and objects; the browser could not say where): both languages refuse
    these with ``bad_manifest`` (protocols/vectors/contract.json).
    """

    def refuse(token: str) -> None:
        raise ManifestError(f"invalid manifest: {token} is not JSON")

    try:
        value = json.loads(text, parse_constant=refuse)
    except (json.JSONDecodeError, RecursionError):
        return  # not JSON at all (or a lone surrogate json accepts): pydantic refuses it with its own message
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ManifestError(f"invalid manifest: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def parse_manifest(text: str) -> Manifest:
    """The manifest in ``text``, checked against the contract (strict JSON: no string is read as a number).

    Raises ManifestError (reason ``bad_manifest``) naming the first field out of bounds. The
    same contract is ``schema/manifest.schema.json`` plus two rules a JSON Schema cannot say
    (the weights blob size, and an aggregator for ``central``), which the browser checks in code.
    """
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest of {len(text)} characters exceeds {MAX_MANIFEST_BYTES}")
    _plain_json(text)
    try:
        return Manifest.model_validate_json(text, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise ManifestError(f"invalid manifest at {where}: {first['msg']}") from None


def parse_envelope(data: str | bytes) -> SignedManifest:
    """The signed envelope ``{"manifest": text, "signature": hex}``; raises ManifestError (``bad_manifest``)."""
    if len(data) > MAX_MANIFEST_BYTES + 1024:
        raise ManifestError("signed manifest exceeds the size limit")
    try:
        return SignedManifest.model_validate_json(data, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ManifestError(f"invalid signed manifest at {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def json_schemas() -> dict[str, Any]:
    """JSON Schema of the manifest and of its signed envelope, for the browser peer and other implementations."""
    return {
        "manifest": Manifest.model_json_schema(by_alias=True),
        "envelope": SignedManifest.model_json_schema(by_alias=True),
    }


def schema_text() -> str:
    """``schema/manifest.schema.json`` as ``python -m protocols.make_vectors`` writes it."""
    return json.dumps(json_schemas(), indent=2, sort_keys=True) + "\n"


def sign_manifest(key: Ed25519PrivateKey, manifest: Manifest) -> SignedManifest:
    if manifest.publisher_key != public_key_bytes(key).hex():
        raise ManifestError("publisher_key in the manifest is not the signing key's public key")
    text = manifest.model_dump_json()
    return SignedManifest(manifest=text, signature=sign(key, manifest_message(text.encode("utf-8"))).hex())


def envelope_json(signed: SignedManifest) -> str:
    return json.dumps({"manifest": signed.manifest, "signature": signed.signature})
