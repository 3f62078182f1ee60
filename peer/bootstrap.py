"""Everything a peer does before its first training step: join, get data, resume or pull.

- ``join``: the server's welcome, or the refusal of a second process with the same identity;
- ``load_data``: the published shard and test split, or the contributor's own file (``--data``);
- ``make_trainer``: TensorFlow, imported only once the swarm is known;
- ``resume``: this peer's own checkpoint, if one exists; whether it is too old to keep;
- ``pull_first``: a fresh peer adopts the most trained neighbor's model (docs/DESIGN.md "Churn").
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from protocols.dataset import decode_shard, shard_x_dtype
from protocols.manifest import Manifest
from protocols.signaling import ErrorCode, Welcome

from . import checkpoint
from .config import PeerConfig
from .fetch import fetch_blob
from .identity import default_identity_path
from .localdata import load_local_data, load_local_split
from .mesh import Mesh
from .transport import MeshTransport

log = logging.getLogger("peer.node")  # the peer's story is one logger, whichever module tells it

JOIN_TIMEOUT_S = 30.0
STALE_CHECKPOINT_S = 120.0  # a returning peer whose checkpoint is older pulls the swarm's model
PULL_LINK_WAIT_S = 10.0  # a joining peer waits this long for a first neighbor to pull from
PULL_SETTLE_S = 1.0  # after the first link opens: links to the other neighbors usually open by then
PULL_FROM = 3  # neighbors asked at once


def default_checkpoint_dir(swarm_id: str, peer_id: str) -> Path:
    """``~/.local/share/gossip-swarm/<swarm>/<peer>``: one checkpoint directory per swarm and identity."""
    return Path.home() / ".local" / "share" / "gossip-swarm" / swarm_id / peer_id


async def join(mesh: Mesh, config: PeerConfig) -> Welcome:
    """The server's welcome; RuntimeError saying what to do if another process holds this identity.

    The server refuses a second live connection with one key (``already_joined``); the mesh
    would retry it forever, so the refusal ends this peer here. TimeoutError after ``JOIN_TIMEOUT_S``.
    """
    welcome = asyncio.ensure_future(mesh.start())
    try:
        async with asyncio.timeout(JOIN_TIMEOUT_S):
            while not welcome.done():
                if ErrorCode.ALREADY_JOINED in mesh.stats.signaling_errors:
                    path = config.identity or default_identity_path()
                    raise RuntimeError(
                        f"another process is already in swarm {config.swarm_id[:8]} with the identity {path} "
                        f"(peer id {mesh.peer_id[:8]}), and the server refuses a second one. To run a second peer on "
                        "this machine give it its own key: swarm join URL --identity ~/.config/gossip-swarm/second.key "
                        "(created if missing)"
                    )  # fmt: skip
                await asyncio.wait({welcome}, timeout=0.1)
        return welcome.result()
    finally:
        welcome.cancel()


async def load_data(http: aiohttp.ClientSession, config: PeerConfig, manifest: Manifest, shard: int) -> tuple[Any, Any]:
    """``((x_train, y_train), (x_test, y_test))`` for this peer.

    The published shard ``shard`` (modulo the shard count) and test split, or ``config.data``
    instead of the shard; a swarm that publishes no dataset needs ``config.data`` (ValueError
    otherwise), whose own test split is used, or else its first fifth.
    """
    ds = manifest.dataset
    if ds is None and config.data is None:
        raise ValueError("this swarm publishes no dataset: pass --data FILE (.npz with x and y, or .csv with a label column)")
    if ds is None:
        assert config.data is not None
        train, own_test = load_local_split(config.data, manifest)
        if own_test is not None:  # a Keras-style file's x_test/y_test
            return train, own_test
        cut = max(1, len(train[0]) // 5)
        return (train[0][cut:], train[1][cut:]), (train[0][:cut], train[1][:cut])
    test_blob = await fetch_blob(http, config.server, ds.test)
    test = decode_shard(test_blob)
    # a contributor's 0..255 values are scaled as the swarm's shards are (uint8 shards: by 1/255)
    train = load_local_data(config.data, manifest, pixels=shard_x_dtype(test_blob) == np.uint8) if config.data else None
    if train is None:
        train = decode_shard(await fetch_blob(http, config.server, ds.train_shards[shard % len(ds.train_shards)]))
    return train, test


def make_trainer(manifest: Manifest, initial: bytes, train: Any, test: Any, seed: int) -> Any:
    """A ``trainer.Trainer`` (blocking: call it in a worker thread)."""
    from .trainer import Trainer  # TensorFlow is imported only once the swarm is known

    return Trainer(manifest, initial, train, test, seed=seed)


async def resume(trainer: Any, directory: Path, model_id: str) -> bool:
    """Load the checkpoint if there is one; return True if the peer should pull the swarm's model.

    A recent checkpoint is this peer's own progress and is kept (crash recovery); none, or
    one older than ``STALE_CHECKPOINT_S``, means the swarm has moved on without us.
    """
    state = checkpoint.load_state(directory, model_id)
    if state is None:
        return True
    weights = await asyncio.to_thread(checkpoint.load_weights, directory)
    trainer.assign(weights, state.gossip_weight)
    trainer.step = state.step
    log.info("resumed from checkpoint at step %d", state.step)
    return checkpoint.age_s(directory) > STALE_CHECKPOINT_S


async def save_checkpoint(trainer: Any, directory: Path, model_id: str) -> None:
    """Save weights, step and gossip weight as one checkpoint, under the trainer's lock."""
    async with trainer.lock:
        state = checkpoint.CheckpointState(model_id, trainer.step, trainer.gossip_weight)
        await asyncio.to_thread(checkpoint.save, directory, trainer.model, state)


async def pull_first(mesh: Mesh, trainer: Any, transport: MeshTransport, timeout: float) -> str | None:
    """Start from the most trained neighbor's current model instead of the initial weights.

    Pulls from up to ``PULL_FROM`` neighbors at once (each within ``timeout`` seconds) and keeps
    the one with the highest step (the frame header carries it), so a newcomer does not adopt
    another newcomer's fresh model; our gossip weight stays ours. Returns the peer pulled from,
    or None (no neighbor answered: training starts from the published initial weights).
    """
    deadline = time.monotonic() + PULL_LINK_WAIT_S
    while not mesh.open_links() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    if mesh.open_links():
        await asyncio.sleep(PULL_SETTLE_S)

    async def pull(peer: str) -> tuple[str, Any]:
        try:
            return peer, await asyncio.wait_for(transport.pull(peer), timeout)
        except (TimeoutError, ConnectionError) as exc:
            log.info("could not pull from %s: %s", peer[:8], exc)
            return peer, None

    replies = await asyncio.gather(*(pull(link.peer_id) for link in mesh.open_links()[:PULL_FROM]))
    got = [(peer, update) for peer, update in replies if update is not None]
    if not got:
        log.info("no neighbor to pull from: training from the published initial weights")
        return None
    peer, update = max(got, key=lambda item: item[1].step)
    async with trainer.lock:
        trainer.assign(update.weights, trainer.gossip_weight)  # our sample count stays ours
    log.info("pulled the current model of %s (step %d) before training", peer[:8], update.step)
    return peer
