"""Join a swarm with two signaling clients and link them: ``python tests/mesh_probe.py WS_URL SWARM_ID``.

Not a test module: a probe for tests that must reach the server from another environment (a
network namespace, or with ``SSL_CERT_FILE`` set before aiohttp makes its SSL context). Prints
one JSON line: whether both joined and the link report of each side once linked.
"""

from __future__ import annotations

import asyncio
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.ice import use_candidate_addresses
from peer.link import PeerLink
from peer.mesh import Mesh, MeshConfig


async def _ignore(link: PeerLink, data: bytes) -> None:
    return None


async def probe(ws_url: str, swarm_id: str, timeout: float = 30.0) -> dict[str, object]:
    meshes = [Mesh(Ed25519PrivateKey.generate(), ws_url, swarm_id, MeshConfig(degree=1, max_degree=1, maintain_interval=0.2),
                   max_frame_size=1 << 20, on_frame=_ignore) for _ in range(2)]  # fmt: skip
    try:
        for mesh in meshes:
            await asyncio.wait_for(mesh.start(), timeout)
            mesh.accept_links()
        async with asyncio.timeout(timeout):
            while not all(m.open_links() for m in meshes):
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # one SCTP round trip, for an RTT estimate
        return {"joined": True, "links": [m.link_report() for m in meshes]}
    finally:
        await asyncio.gather(*(m.close() for m in meshes), return_exceptions=True)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if len(sys.argv) > 3:
        use_candidate_addresses(sys.argv[3].split(","))
    print(json.dumps(asyncio.run(probe(sys.argv[1], sys.argv[2]))))
