"""Prepare a publication for the browser publish page: the same checks and sharding as ``swarm publish``.

The page (``browser_peer/src/publish.js``) uploads a model file and/or a dataset file to the
signaling server's ``POST /api/prepare``; the server writes them to a temporary directory and
runs this module in a child process (so TensorFlow never loads into the server, a hostile file
cannot hang it, and memory is returned when the child exits)::

    python -m apps.prepare REQUEST.json OUT.json

``REQUEST.json`` (``PrepareRequest``) names the files and the publisher's choices; ``OUT.json``
is written atomically and holds either ``{"error": message}`` (a refusal, worded as
``swarm publish`` words it) or the *unsigned* draft: the manifest's ``model``, ``training``
(the task's loss and metrics), ``gossip`` (the codec choice) and ``dataset`` sections, every
blob base64-encoded by digest, and the notices ``swarm publish`` would print. The page fills in
the name, the swarm id, its own publisher key and the knobs, signs in the browser and uploads
through ``POST /api/publish`` like any publisher; nothing here is trusted by the store.

Exit status 0 whenever ``OUT.json`` was written (refusal or draft); anything else is a crash the
server reports as such.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocols.manifest import Loss

PREPARE_COMMAND = [sys.executable, "-m", "apps.prepare"]  # what ``swarm serve`` gives ServerConfig.prepare_command


class PrepareRequest(BaseModel):
    """What the server passes the child: file paths it wrote, and the page's choices (untrusted)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="a .keras/.h5 file or a directory holding model.json")
    hidden: str | None = Field(default=None, max_length=512, description="no-code MLP layers, e.g. '128:relu,64:tanh'")
    data: str | None = Field(default=None, description="a .csv/.tsv/.txt/.npz file; None: no dataset in the draft")
    label_column: str | None = Field(default=None, max_length=256)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    shards: int = Field(default=4, ge=1, le=4096)
    partition: Literal["iid", "dirichlet", "by_class"] = "iid"
    alpha: float = Field(default=0.5, gt=0)
    classes_per_shard: int = Field(default=2, ge=1)
    loss: Loss | None = None
    python_only: bool = False
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    max_bytes: int = Field(gt=0, description="the server's upload limit: a bigger draft is refused here")


def prepare(request: PrepareRequest) -> dict:
    """The unsigned draft for ``request``, or ``{"error": ...}`` naming what to change."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocols.manifest import TrainingConfig

    from .publish import NO_DATASET, DataOptions, PublishInputError, build_publication, parse_hidden, upload_size

    data = DataOptions(request.data or NO_DATASET, label_column=request.label_column or None,
                       test_fraction=request.test_fraction, shards=request.shards, partition=request.partition,
                       alpha=request.alpha, classes_per_shard=request.classes_per_shard)  # fmt: skip
    training = TrainingConfig(loss=request.loss) if request.loss else TrainingConfig()
    try:
        hidden = parse_hidden(request.hidden) if request.hidden is not None else None
        if request.model is None and hidden is None:
            hidden = [(128, "relu")]
        if hidden and sum(a * b for (a, _), (b, _) in zip(hidden, hidden[1:])) * 4 > request.max_bytes:
            raise PublishInputError(f"hidden layers {request.hidden} alone exceed this server's upload limit of "
                                    f"{request.max_bytes} bytes; use fewer units")  # fmt: skip
        # a throwaway key: the draft is signed again, by the browser's own key, before it is published
        pub = build_publication(Ed25519PrivateKey.generate(), model=request.model, hidden=hidden, data=data,
                                seed=request.seed, training=training, python_only=request.python_only)  # fmt: skip
    except (PublishInputError, ValueError) as exc:
        return {"error": _without_paths(str(exc), request)}
    size = upload_size(pub)
    if size > request.max_bytes:
        return {"error": f"the publication would be {size} bytes, over this server's upload limit of "
                         f"{request.max_bytes} bytes; use a smaller model or dataset"}  # fmt: skip
    m = pub.manifest.model_dump(mode="json")
    return {
        "draft": {k: m[k] for k in ("model", "training", "gossip", "dataset")},
        "blobs": {digest: base64.b64encode(blob).decode("ascii") for digest, blob in pub.blobs.items()},
        "notices": [_without_paths(n, request) for n in pub.notices],
    }


def _without_paths(text: str, request: PrepareRequest) -> str:
    """Messages name the server's temporary files; the publisher knows them by their own names."""
    for path in (request.model, request.data):
        if path:
            p = Path(path)
            text = text.replace(str(p / "model.json"), "model.json").replace(str(p), p.name)
    return text


def write_atomic(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".prepare-")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m apps.prepare REQUEST.json OUT.json", file=sys.stderr)
        return 2
    from .quiet import quiet_environment

    quiet_environment()
    request_path, out = Path(argv[0]), Path(argv[1])
    try:
        request = PrepareRequest.model_validate_json(request_path.read_bytes())
    except ValidationError as exc:
        write_atomic(out, {"error": f"bad prepare request: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"})
        return 0
    write_atomic(out, prepare(request))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
