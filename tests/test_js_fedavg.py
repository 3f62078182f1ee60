"""The tab's FedAvg client rules (browser_peer/src/fedavg.js) under node, against Python's peer id.

browser_peer/tests/fedavg.test.js checks ``adopt`` (peer.fedavg.adopt), the role from the
manifest (peer/node.py) and the aggregator's peer id, here compared with protocols.crypto.peer_id_of.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.crypto import peer_id_of, public_key_bytes

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "browser_peer" / "tests" / "fedavg.test.js"


def test_the_browser_fedavg_client_rules_pass_their_node_tests() -> None:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: ./scripts/setup.sh installs nodejs")
    key = public_key_bytes(Ed25519PrivateKey.generate())
    env = {**os.environ, "FEDAVG_KEY": key.hex(), "FEDAVG_PEER_ID": peer_id_of(key)}
    out = subprocess.run([node, "--test", str(TESTS)], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout and "# pass 4" in out.stdout, out.stdout[-2000:]
