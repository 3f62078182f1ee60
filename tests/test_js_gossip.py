"""The browser's gossip engine and transport (browser_peer/src/gossip.js, transport.js) under node.

browser_peer/tests/gossip.test.js mirrors tests/test_averaging.py and tests/test_gossip_propose.py:
proposals before weights, crossing proposals decided by peer id, holds that expire, a decline that
moves no weights, the merge beside training, the exchange deadline, timed-out exchanges no longer
pending (their one late reply no strike), and the link's measured send rate. The deadline is also
checked against peer/gossip.py exchange_deadline here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from peer.gossip import exchange_deadline

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "browser_peer" / "tests" / "gossip.test.js"
GOSSIP = ROOT / "browser_peer" / "src" / "gossip.js"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: ./scripts/setup.sh installs nodejs")
    return node


def test_the_browser_engine_and_transport_pass_their_node_tests() -> None:
    out = subprocess.run([_node(), "--test", str(TESTS)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout


CASES = [(1000, None, None, 10.0), (50_000_000, None, None, 10.0), (50_000_000, 1e7, 0.25, 10.0),
         (150_000_000, 2.5e6, 0.08, 30.0), (5_000_000_000, 1e6, 0.0, 10.0), (2_000_000, 0.0, 1.5, 5.0)]  # fmt: skip


@pytest.mark.parametrize("frame_bytes,rate,rtt,floor", CASES)
def test_the_browser_deadline_is_the_python_one(frame_bytes: int, rate: float | None, rtt: float | None, floor: float) -> None:
    script = (f"const {{ exchangeDeadlineMs }} = await import({json.dumps(GOSSIP.as_uri())});"
              f"console.log(JSON.stringify(exchangeDeadlineMs({frame_bytes}, {json.dumps(rate)}, {json.dumps(rtt)},"
              f" {{ floorMs: {floor * 1000} }})));")  # fmt: skip
    out = subprocess.run([_node(), "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == pytest.approx(1000 * exchange_deadline(frame_bytes, rate, rtt, floor_s=floor), rel=1e-12)
