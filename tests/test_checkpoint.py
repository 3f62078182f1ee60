"""Checkpoints: what is saved is what a restarted peer resumes from; other models never resume it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from peer import checkpoint
from protocols.dataset import decode_shard


def test_checkpoint_round_trip_and_model_binding(default_publication: Any, tmp_path: Path) -> None:
    from peer.trainer import Trainer

    m = default_publication.manifest
    train = decode_shard(default_publication.blobs[m.dataset.train_shards[0].digest])
    test = decode_shard(default_publication.blobs[m.dataset.test.digest])
    trainer = Trainer(m, default_publication.blobs[m.model.initial_weights.digest], train, test)
    trainer.train_steps(30)
    trainer.gossip_weight = 1234.5
    state = checkpoint.CheckpointState(default_publication.signed.model_id, trainer.step, trainer.gossip_weight)
    checkpoint.save(tmp_path, trainer.model, state)

    assert (tmp_path / "tfjs" / "model.json").is_file() and (tmp_path / "model.h5").is_file()
    assert checkpoint.load_state(tmp_path, default_publication.signed.model_id) == state
    assert checkpoint.load_state(tmp_path, "0" * 64) is None  # a different model starts fresh
    for saved, live in zip(checkpoint.load_weights(tmp_path), trainer.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, live)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
