"""Download what a publisher published, verifying signature and digests before use."""

from __future__ import annotations

import aiohttp

from protocols.crypto import sha256
from protocols.errors import ManifestError
from protocols.manifest import BlobRef, Manifest, SignedManifest, parse_envelope

TIMEOUT = aiohttp.ClientTimeout(total=120)


async def fetch_manifest(session: aiohttp.ClientSession, server: str, swarm_id: str) -> tuple[SignedManifest, Manifest]:
    async with session.get(f"{server}/api/swarms/{swarm_id}", timeout=TIMEOUT) as resp:
        if resp.status == 404:
            raise ManifestError(f"server {server} has no swarm {swarm_id}; check the join link")
        resp.raise_for_status()
        signed = parse_envelope(await resp.read())
    manifest = signed.verify()
    if manifest.swarm_id != swarm_id:
        raise ManifestError(f"server returned the manifest of swarm {manifest.swarm_id}, not {swarm_id}")
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
