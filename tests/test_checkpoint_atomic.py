"""A checkpoint is one unit: a writer SIGKILLed at random moments always leaves a consistent one.

The writer (a real process, real tf_keras and tensorflowjs saves) fills every weight with the
step it records, so a checkpoint is consistent exactly when its weights, step and gossip
weight agree. Each round kills it at a random moment, often mid-save, and checks what a
restarting peer would load.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from peer.checkpoint import load_state, load_weights, resolve

ROUNDS = 10
WRITER = r"""
import sys
from pathlib import Path
import numpy as np
import tf_keras
from peer.checkpoint import CheckpointState, load_state, save

directory = Path(sys.argv[1])
model = tf_keras.Sequential([tf_keras.layers.Input((8,)), tf_keras.layers.Dense(16), tf_keras.layers.Dense(4)])
state = load_state(directory, "m")
step = state.step + 1 if state else 1
print("ready", flush=True)
while True:
    model.set_weights([np.full(w.shape, step, np.float32) for w in model.get_weights()])
    save(directory, model, CheckpointState("m", step, float(step)))
    step += 1
"""


def test_a_writer_killed_at_random_moments_always_leaves_a_consistent_checkpoint(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    rng = random.Random(0)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    steps: list[int] = []
    for _ in range(ROUNDS):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], stdout=subprocess.PIPE, env=env)
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(30)
        state = load_state(directory, "m")
        if state is None:
            assert not steps, "a complete checkpoint disappeared"
            continue
        weights = load_weights(directory)
        assert state.gossip_weight == float(state.step)
        for w in weights:
            np.testing.assert_array_equal(w, np.full(w.shape, state.step, np.float32))  # weights of that very step
        assert not steps or state.step >= steps[-1]  # never back to an older checkpoint
        steps.append(state.step)
        assert (directory / "model.h5").is_file() and resolve(directory) != directory
        assert len(list(directory.glob("ckpt-*"))) <= 3  # the current, the previous, and at most one a kill left
    assert len(set(steps)) >= ROUNDS // 2, steps  # the kills really landed at different moments
