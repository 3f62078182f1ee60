"""Download what a publisher published, verifying signature and digests before use.

A pinned join link (``…/s/<swarm id>#pk=<publisher fingerprint>``) names the publisher: its
manifest must be signed by the key with that fingerprint. Without a pin, the manifest's own key
is trusted (trust on first use; docs/THREAT_MODEL.md).
"""

from __future__ import annotations

from contextvars import ContextVar

import aiohttp

from protocols.crypto import publisher_fingerprint, sha256
from protocols.errors import ManifestError
from protocols.manifest import BlobRef, Manifest, SignedManifest, parse_envelope

TIMEOUT = aiohttp.ClientTimeout(total=120)

# The pin of the join link being followed, for callers that do not pass ``publisher_pin``:
# ``swarm join`` sets it before it starts the peer (peer/node.py fetches without arguments).
PUBLISHER_PIN: ContextVar[str | None] = ContextVar("publisher_pin", default=None)


def check_publisher(manifest: Manifest, swarm_id: str, pin: str | None) -> None:
    """Refuse a manifest not signed by the pinned publisher (``pin``: its fingerprint, or None)."""
    if pin is None:
        return
    signer = publisher_fingerprint(bytes.fromhex(manifest.publisher_key))
    if signer != pin:
        raise ManifestError(f"the join link pins publisher {pin}, but the server's manifest for swarm {swarm_id} "
                            f"is signed by {signer}; refusing it (ask the publisher for its link)")  # fmt: skip


async def fetch_manifest(
    session: aiohttp.ClientSession, server: str, swarm_id: str, *, publisher_pin: str | None = None
) -> tuple[SignedManifest, Manifest]:
    """The verified manifest of ``swarm_id``; with a pin (the argument, else ``PUBLISHER_PIN``) only
    one signed by that publisher."""
    async with session.get(f"{server}/api/swarms/{swarm_id}", timeout=TIMEOUT) as resp:
        if resp.status == 404:
            raise ManifestError(f"server {server} has no swarm {swarm_id}; check the join link")
        resp.raise_for_status()
        signed = parse_envelope(await resp.read())
    manifest = signed.verify()
    if manifest.swarm_id != swarm_id:
        raise ManifestError(f"server returned the manifest of swarm {manifest.swarm_id}, not {swarm_id}")
    check_publisher(manifest, swarm_id, publisher_pin if publisher_pin is not None else PUBLISHER_PIN.get())
    return signed, manifest


async def fetch_blob(session: aiohttp.ClientSession, server: str, ref: BlobRef) -> bytes:
    async with session.get(f"{server}/content/{ref.digest}", timeout=TIMEOUT) as resp:
        resp.raise_for_status()
        data = bytearray()
        async for chunk in resp.content.iter_chunked(1 << 16):
            data += chunk
            if len(data) > ref.size:
                break  # never buffer more than the manifest promised
        data = bytes(data)
    if len(data) != ref.size or sha256(data).hex() != ref.digest:
        raise ManifestError(f"blob {ref.digest[:12]}… from {server} does not match its digest; refusing it")
    return data
