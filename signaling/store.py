"""Content-addressed storage of published manifests and blobs under ``data_dir``.

``content/<sha256>`` holds blobs, ``swarms/<swarm_id>.json`` the signed manifest envelope.
Writes are atomic (temporary file, then rename), so a crash never leaves half a blob.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from protocols.crypto import sha256
from protocols.errors import ManifestError
from protocols.manifest import Manifest, SignedManifest, envelope_json, parse_envelope, static_turn_password

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_SWARM = re.compile(r"^[0-9a-f]{32}$")


class PublishError(ValueError):
    """A publish request that is refused; nothing was stored."""


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class ContentStore:
    def __init__(self, data_dir: Path) -> None:
        self.content_dir = data_dir / "content"
        self.swarms_dir = data_dir / "swarms"
        self.content_dir.mkdir(parents=True, exist_ok=True)
        self.swarms_dir.mkdir(parents=True, exist_ok=True)
        self._manifests: dict[str, tuple[SignedManifest, Manifest]] = {}
        for path in self.swarms_dir.glob("*.json"):
            signed = parse_envelope(path.read_bytes())
            self._manifests[path.stem] = (signed, signed.verify())

    def blob_path(self, digest: str) -> Path | None:
        """Path of a stored blob; None for anything that is not a known digest (no traversal)."""
        if not _DIGEST.match(digest):
            return None
        path = self.content_dir / digest
        return path if path.is_file() else None

    def manifest(self, swarm_id: str) -> tuple[SignedManifest, Manifest] | None:
        return self._manifests.get(swarm_id) if _SWARM.match(swarm_id) else None

    def swarms(self) -> dict[str, tuple[SignedManifest, Manifest]]:
        return dict(self._manifests)

    def publish(self, envelope: bytes, blobs: dict[str, bytes], max_swarms: int) -> tuple[SignedManifest, Manifest]:
        """Verify everything first, then store; raise PublishError and store nothing on any fault."""
        try:
            signed = parse_envelope(envelope)
            manifest = signed.verify()
        except ManifestError as exc:
            raise PublishError(str(exc)) from None
        refused = static_turn_password(list(manifest.ice_servers))
        if refused is not None:
            raise PublishError(refused)
        previous = self._manifests.get(manifest.swarm_id)
        if previous is not None and previous[1].publisher_key != manifest.publisher_key:
            raise PublishError(f"swarm {manifest.swarm_id} belongs to another publisher key")
        if previous is None and len(self._manifests) >= max_swarms:
            raise PublishError(f"this server hosts its limit of {max_swarms} swarms")
        needed = {ref.digest: ref.size for ref in manifest.blobs()}
        for digest, data in blobs.items():
            if digest not in needed:
                raise PublishError(f"blob {digest[:12]}… is not referenced by the manifest")
            if sha256(data).hex() != digest:
                raise PublishError(f"blob named {digest[:12]}… does not hash to its name")
            if len(data) != needed[digest]:
                raise PublishError(f"blob {digest[:12]}… is {len(data)} bytes, manifest says {needed[digest]}")
        missing = [d for d in needed if d not in blobs and self.blob_path(d) is None]
        if missing:
            raise PublishError(f"manifest references {len(missing)} blob(s) not uploaded, e.g. {missing[0][:12]}…")
        for digest, data in blobs.items():
            if self.blob_path(digest) is None:
                atomic_write(self.content_dir / digest, data)
        atomic_write(self.swarms_dir / f"{manifest.swarm_id}.json", envelope_json(signed).encode())
        self._manifests[manifest.swarm_id] = (signed, manifest)
        return signed, manifest
