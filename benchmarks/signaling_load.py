"""Signaling server under load: many concurrent WebSocket peers across many swarms.

Starts ``swarm serve`` as a subprocess on 127.0.0.1 (so its memory is its own), publishes
``--swarms`` tiny swarms, then opens ``--peers`` WebSocket peers from this process, each proving
its key and joining. Measures join-to-welcome latency (challenge received -> welcome received),
relay latency (an offer from one peer to another in the same swarm), and the server's RSS.
Writes benchmarks/results/signaling_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.procs import free_port
from apps.tiny_swarm import tiny_publication
from protocols.crypto import join_message, peer_id_of, public_key_bytes
from protocols.manifest import envelope_json
from protocols.signaling import Join, LinkAuth, Offer, dump

# the server relays an offer's link proof untouched (peers check it), so any well-formed one measures the relay
RELAY_AUTH = LinkAuth(nonce="00" * 32, signature="00" * 64)

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def publish(http: aiohttp.ClientSession, base: str, swarms: int) -> list[str]:
    key = Ed25519PrivateKey.generate()
    ids = []
    for i in range(swarms):
        pub = tiny_publication(key, seed=i)
        form = aiohttp.FormData()
        form.add_field("manifest", envelope_json(pub.signed), content_type="application/json")
        for digest, data in pub.blobs.items():
            form.add_field("blob", data, filename=digest, content_type="application/octet-stream")
        async with http.post(f"{base}/api/publish", data=form) as resp:
            assert resp.status == 201, await resp.text()
        ids.append(pub.swarm_id)
    return ids


class Client:
    def __init__(self, swarm_id: str) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.peer_id = peer_id_of(public_key_bytes(self.key))
        self.swarm_id = swarm_id
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.join_latency = float("nan")
        self.offers: asyncio.Queue[float] = asyncio.Queue()

    async def join(self, http: aiohttp.ClientSession, ws_url: str) -> None:
        self.ws = await http.ws_connect(ws_url, max_msg_size=8 * 1024 * 1024)
        challenge = json.loads((await self.ws.receive()).data)
        started = time.perf_counter()
        nonce = bytes.fromhex(challenge["nonce"])
        signature = self.key.sign(join_message(nonce, self.swarm_id)).hex()
        await self.ws.send_str(dump(Join(swarm_id=self.swarm_id, public_key=public_key_bytes(self.key).hex(), signature=signature)))
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg["type"] == "welcome":
                self.join_latency = time.perf_counter() - started
                return
            if msg["type"] == "error":
                raise RuntimeError(msg)

    async def listen(self) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            msg = json.loads(raw.data)
            if msg["type"] == "offer":
                self.offers.put_nowait(time.perf_counter() - float(msg["sdp"]))


async def main(args: argparse.Namespace) -> dict:
    port = free_port()
    with TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, "-m", "apps.cli", "serve", "--port", str(port), "--data-dir", tmp],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                for _ in range(100):
                    try:
                        async with http.get(f"{base}/health"):
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
                rss_idle = rss_mb(server.pid)
                swarm_ids = await publish(http, base, args.swarms)
                clients = [Client(swarm_ids[i % args.swarms]) for i in range(args.peers)]
                started = time.perf_counter()
                for batch in range(0, len(clients), args.batch):
                    await asyncio.gather(*(c.join(http, ws_url) for c in clients[batch : batch + args.batch]))
                join_seconds = time.perf_counter() - started
                listeners = [asyncio.create_task(c.listen()) for c in clients]
                rss_loaded = rss_mb(server.pid)
                relay = []
                rng = np.random.default_rng(0)
                for _ in range(args.relays):
                    a = clients[int(rng.integers(len(clients)))]
                    peers = [c for c in clients if c.swarm_id == a.swarm_id and c is not a]
                    b = peers[int(rng.integers(len(peers)))]
                    await a.ws.send_str(dump(Offer(to=b.peer_id, sdp=repr(time.perf_counter()), auth=RELAY_AUTH)))  # type: ignore[union-attr]
                    relay.append(await asyncio.wait_for(b.offers.get(), 10))
                health = await (await http.get(f"{base}/health")).json()
                for task in listeners:
                    task.cancel()
                await asyncio.gather(*(c.ws.close() for c in clients if c.ws), return_exceptions=True)
        finally:
            server.terminate()
            server.wait(10)
    joins = np.array([c.join_latency for c in clients]) * 1000
    relay_ms = np.array(relay) * 1000
    return {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "peers": args.peers, "swarms": args.swarms, "connected_per_health": health["peers"],
        "join_to_welcome_ms": {"p50": float(np.percentile(joins, 50)), "p99": float(np.percentile(joins, 99)), "max": float(joins.max())},
        "relay_ms": {"p50": float(np.percentile(relay_ms, 50)), "p99": float(np.percentile(relay_ms, 99)), "max": float(relay_ms.max())},
        "all_joined_seconds": round(join_seconds, 2), "server_rss_mb": {"idle": round(rss_idle, 1), "loaded": round(rss_loaded, 1)},
        "join_batch": args.batch,
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=2000)
    parser.add_argument("--swarms", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50, help="joins in flight at once")
    parser.add_argument("--relays", type=int, default=500)
    result = asyncio.run(main(parser.parse_args()))
    out = ROOT / "benchmarks" / "results" / "signaling_load.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
