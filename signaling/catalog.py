"""What the server holds and tells: the swarm catalog, each swarm's manifest and contribution board, health.

``/api/swarms`` (and its rows, which the index page renders), ``/api/swarms/ID``, the board and
the receipts behind a peer's credit, and ``/health``.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from protocols import PROTOCOL_VERSION
from protocols.manifest import Manifest

from .state import CONFIG, LIMITS, REGISTRY, STORE, STUN, json_error


async def health(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    stun = request.app.get(STUN)
    return web.json_response({"status": "ok", "swarms": len(request.app[STORE].swarms()),
                              "peers": registry.peer_count(), "protocol": PROTOCOL_VERSION,
                              "refused": dict(request.app[LIMITS].refused),
                              "stun": dict(stun.counts) if stun is not None else None})  # fmt: skip


def join_url(request: web.Request, swarm_id: str) -> str:
    base = request.app[CONFIG].public_url or f"{request.scheme}://{request.host}"
    return f"{base.rstrip('/')}/s/{swarm_id}"


async def list_swarms(request: web.Request) -> web.Response:
    """Published swarms; ``?details=1`` adds the index page's columns (model, dataset, best_accuracy)."""
    keys = ("swarm_id", "name", "model_id", "peers", "join_url")
    rows = swarm_rows(request)
    if request.query.get("details") != "1":
        rows = [{k: r[k] for k in keys} for r in rows]
    return web.json_response({"swarms": rows})


def swarm_rows(request: web.Request) -> list[dict[str, Any]]:
    """One row per published swarm (the index page and /api/swarms).

    ``swarm_accuracy`` comes from the contribution board: None until two vouched peers claim one.
    """
    rooms = request.app[REGISTRY].rooms
    rows = []
    for sid, (signed, m) in request.app[STORE].swarms().items():
        ds = m.dataset
        rows.append({
            "swarm_id": sid, "name": m.name, "model_id": signed.model_id,
            "peers": len(rooms[sid].members) if sid in rooms else 0, "join_url": join_url(request, sid),
            "model": model_summary(m),
            "dataset": None if ds is None else {"name": ds.name, "partition": ds.partition, "shards": len(ds.train_shards),
                                                "train_samples": sum(r.num_samples for r in ds.train_shards)},
            "swarm_accuracy": board.swarm_accuracy() if (board := request.app[REGISTRY].boards.get(sid)) else None,
            "board_url": f"{join_url(request, sid)}/board",
        })  # fmt: skip
    return rows


def topology_layers(topology: dict[str, Any]) -> list[dict[str, Any]]:
    inner = topology.get("model_config", topology)
    layers = inner.get("config", {}).get("layers", []) if isinstance(inner, dict) else []
    return [layer for layer in layers if isinstance(layer, dict)]


def model_summary(manifest: Manifest) -> dict[str, Any]:
    """Layers (without the input layer), parameter count and a one-line description of the model."""
    layers = [l for l in topology_layers(manifest.model.topology) if l.get("class_name") != "InputLayer"]
    params = sum(math.prod(w.shape) for w in manifest.model.weights)
    parts = []
    for layer in layers:
        cfg = layer.get("config", {})
        units = cfg.get("units", cfg.get("filters"))
        act = cfg.get("activation")
        parts.append(f"{layer.get('class_name')}({units}{', ' + act if act else ''})" if units else str(layer.get("class_name")))
    return {"layers": len(layers), "params": params, "summary": " > ".join(parts)[:300] or None}


async def get_swarm(request: web.Request) -> web.Response:
    published = request.app[STORE].manifest(request.match_info["swarm_id"])
    if published is None:
        return json_error(404, "unknown_swarm", "no such swarm on this server")
    return web.json_response({"manifest": published[0].manifest, "signature": published[0].signature})


async def get_board(request: web.Request) -> web.Response:
    swarm_id = request.match_info["swarm_id"]
    if request.app[STORE].manifest(swarm_id) is None:
        return json_error(404, "unknown_swarm", "no such swarm on this server")
    registry = request.app[REGISTRY]
    board = registry.boards.get(swarm_id)
    body = board.summary(registry.online(swarm_id)) if board else {"swarm_accuracy": None, "refused_receipts": {}, "peers": []}
    return web.json_response({"swarm_id": swarm_id, **body})


async def get_receipts(request: web.Request) -> web.Response:
    """The evidence behind one peer's credit: each vouching key's latest signed receipt."""
    swarm_id, peer_id = request.match_info["swarm_id"], request.match_info["peer_id"]
    if request.app[STORE].manifest(swarm_id) is None:
        return json_error(404, "unknown_swarm", "no such swarm on this server")
    board = request.app[REGISTRY].boards.get(swarm_id)
    receipts = board.receipts(peer_id) if board else None
    if receipts is None:
        return json_error(404, "unknown_peer", f"peer {peer_id} is not on this swarm's board")
    return web.json_response({"swarm_id": swarm_id, "peer_id": peer_id, "receipts": receipts})

