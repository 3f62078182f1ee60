"""One frame-size function: protocols.frame.frame_size and frame.js frameSize against the committed vector."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path


from protocols.frame import frame_size
from protocols.make_vectors import VECTORS_DIR, frame_size_vectors, render

ROOT = Path(__file__).resolve().parent.parent
VECTOR = VECTORS_DIR / "frame_size.json"
CHECK = """
import { readFileSync } from "node:fs";
const { frameSize } = await import(process.argv[1]);
const vectors = JSON.parse(readFileSync(process.argv[2], "utf8"));
const bad = vectors.cases.filter((c) => frameSize(c.shapes, c.codec) !== c.frame_size
  || frameSize(c.shapes, c.codec, c.message_size) !== c.wire_size).map((c) => c.name);
console.log(JSON.stringify({ cases: vectors.cases.length, bad }));
"""


def test_the_vector_is_the_generator_output_and_python_matches_it() -> None:
    assert VECTOR.read_text() == render(frame_size_vectors())
    for case in json.loads(VECTOR.read_text())["cases"]:
        shapes = [tuple(s) for s in case["shapes"]]
        assert frame_size(shapes, case["codec"]) == case["frame_size"], case["name"]
        assert frame_size(shapes, case["codec"], message_size=case["message_size"]) == case["wire_size"], case["name"]


def test_the_browser_mirror_matches_the_vector() -> None:
    if shutil.which("node") is None:
        raise RuntimeError("node is missing: ./scripts/setup.sh installs nodejs")
    module = ROOT / "browser_peer" / "src" / "protocol" / "frame.js"
    out = subprocess.run(["node", "--input-type=module", "-e", CHECK, module.as_uri(), str(VECTOR)],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    result = json.loads(out.stdout)
    assert result == {"cases": 15, "bad": []}
