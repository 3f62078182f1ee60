"""Effective weight-sync rate between two Python peers: float32 vs float16 vs int8 codecs.

Two ``MeshTransport`` peers over a real aiortc data channel run back-to-back gossip exchanges
of the default model (101,770 parameters); each exchange synchronizes the whole model in both
directions. Rate = parameters x exchanges / second. The codecs are measured interleaved in one
run on the product's settings (uvloop, 4 MiB socket buffers). Writes benchmarks/results/sync_rate.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.transfer import SHAPES, Variant, gossip_peer, link_pair, machine
from peer.gossip import GossipEngine, Outcome
from protocols.codecs import CodecId
from protocols.crypto import public_key_bytes

ROOT = Path(__file__).resolve().parent.parent
PARAMS = sum(int(np.prod(s)) for s in SHAPES)
TUNED = Variant("tuned", rcvbuf=4 * 1024 * 1024)


async def exchanges_per_second(codec: CodecId, rounds: int, rng: np.random.Generator) -> float:
    ka, kb = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    members = {public_key_bytes(ka), public_key_bytes(kb)}
    a, b = gossip_peer(ka, members, rng), gossip_peer(kb, members, rng)
    a.transport.codec = b.transport.codec = codec
    pair = await link_pair(ka, kb, a.transport.on_frame, b.transport.on_frame, TUNED)
    a.links[pair.a.peer_id], b.links[pair.b.peer_id] = pair.a, pair.b
    engine = a.transport.engine
    assert isinstance(engine, GossipEngine)
    try:
        await engine.initiate(pair.a.peer_id, a.transport, timeout=60.0)  # warm-up
        start = time.perf_counter()
        for _ in range(rounds):
            if await engine.initiate(pair.a.peer_id, a.transport, timeout=60.0) != Outcome.MERGED:
                raise RuntimeError("exchange not merged")
        return rounds / (time.perf_counter() - start)
    finally:
        await pair.close()


async def run(rounds: int, trials: int) -> dict:
    rng = np.random.default_rng(0)
    rates: dict[str, list[float]] = {c.name.lower(): [] for c in CodecId}
    for _ in range(trials):  # interleaved, so drift in machine load hits every codec alike
        for codec in CodecId:
            rates[codec.name.lower()].append(await exchanges_per_second(codec, rounds, rng) * PARAMS)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    return {"machine": machine(), "params": PARAMS, "rounds": rounds, "trials": trials,
            "params_per_second": medians, "trials_params_per_second": rates,
            "ratio_vs_float32": {k: v / medians["float32"] for k, v in medians.items()}}  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.rounds, args.trials))
    (ROOT / "benchmarks" / "results" / "sync_rate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("params_per_second", "ratio_vs_float32")}, indent=2))
