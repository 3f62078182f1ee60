"""Issue 15: a no-code MLP of 9.5 M parameters (38 MB float32) gossips between two peers with defaults.

Before proposals, both peers started together, each initiated, each declined the other's
380 MB-per-round requests, and a fixed 10 s timeout cut every transfer: 0 merges in 150 s.
Now a decline costs two small frames, crossing proposals resolve by peer id, deadlines follow
the frame size and the link's measured rate, and a model this large is published with int8
frames by default (``apps.publish.choose_codec``). The float32 variant runs the same way with
``--codec float32`` (``test_..._in_float32``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from apps.procs import PeerProcess, spawn_peer
from apps.publish import default_publication, upload
from protocols.frame import frame_size
from protocols.manifest import GossipConfig

HIDDEN = [4096, 1536]  # 784*4096 + 4096*1536 + 1536*10 + biases = 9.52 M parameters


@pytest.mark.timeout(600)
async def test_a_38_mb_model_gossips_between_two_peers_with_default_settings(server: str, publisher_key: Any,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    await _two_peers_merge(server, publisher_key, tmp_path, None, "int8")


@pytest.mark.timeout(600)
async def test_a_38_mb_model_gossips_between_two_peers_in_float32(server: str, publisher_key: Any, tmp_path: Path) -> None:
    await _two_peers_merge(server, publisher_key, tmp_path, GossipConfig(codec="float32"), "float32")


async def _two_peers_merge(server: str, publisher_key: Any, tmp_path: Path, gossip: GossipConfig | None, codec: str) -> None:
    pub = await asyncio.to_thread(default_publication, publisher_key, swarm_id="1a26" * 8, hidden=HIDDEN, gossip=gossip)
    shapes = [tuple(w.shape) for w in pub.manifest.model.weights]
    assert frame_size(shapes) > 38_000_000
    assert pub.manifest.gossip.exchange_timeout_s == 10.0  # the default, unchanged
    assert pub.manifest.gossip.codec == codec
    join = (await upload(server, pub))["join_url"]
    procs: list[PeerProcess] = [spawn_peer(join, tmp_path, f"peer{i}", "--eval-limit", "200", "--seed", str(i)) for i in range(2)]
    try:
        deadline = time.monotonic() + 420
        while True:
            rows = [p.latest for p in procs]
            if all(r is not None and r["exchanges"]["merged"] + r["served"] >= 2 for r in rows):
                break
            for p in procs:
                assert p.proc.poll() is None, p.log.read_text()[-3000:]
            assert time.monotonic() < deadline, [(r or {}).get("exchanges") for r in rows]
            await asyncio.sleep(1.0)
        for r in rows:
            assert r is not None
            assert r["exchanges"]["timeout"] <= 1, r["exchanges"]  # deadlines fit the transfer
            assert sum(r["rejected"].values()) == 0, r["rejected"]  # no late reply, nothing unexpected
            assert any(link["rate_mb_s"] for link in r["links"]), r["links"]  # the link's rate was measured
    finally:
        for p in procs:
            p.terminate()
        await asyncio.gather(*(p.wait(60) for p in procs))
    for p in procs:
        assert "Traceback" not in p.log.read_text()
