"""The browser verifier admits the frames of a link in arrival order (browser_peer/src/verifier.js, under node).

Its checks await WebCrypto, so without ordering a small frame delivered right after a large
one finishes first, advances the replay window, and the large frame is refused as a replay
(a strike against an honest peer). browser_peer/tests/verifier_order.js delivers frames back
to back, as data-channel events do, and reports what was admitted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "browser_peer" / "tests" / "verifier_order.js"


def test_frames_of_one_link_are_admitted_in_arrival_order() -> None:
    if shutil.which("node") is None:
        raise RuntimeError("node is missing: ./scripts/setup.sh installs nodejs")
    out = subprocess.run(["node", str(SCRIPT)], capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout)
    # the large request, then the small decline sent after it; the decline once more is a replay
    assert got["large_then_small"] == ["ok", "ok", "replay"]
    assert got["large_then_small_rejected"] == {"replay": 1}
    # a forged frame queued between two good ones burns no sequence number
    assert got["forged_in_between"] == ["ok", "bad_signature", "ok"]
    # links are independent: the small frame of another link is not held behind the large one
    # (the script holds the large frame at a gate until the small one is through; "held" otherwise)
    assert got["two_links_order"] == ["bob", "alice"]
    assert got["chains_left"] == 0  # nothing kept per link once its frames settled
