"""One JSON contract in both languages: the committed schemas are the generated ones, and every input of
protocols/vectors/contract.json gets the same verdict from Python's parsers and the browser's (Ajv).

The browser validates manifests, envelopes and every signaling message (both directions)
against ``protocols/schema/*.schema.json`` (as ``browser_peer/src/protocol/schemas.js``) plus the
rules no JSON Schema states; an out-of-contract input gets Python's error code: ``malformed``
or ``too_large`` for signaling, ``bad_manifest`` for manifests and envelopes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from protocols import manifest, signaling
from protocols.contract import (
    BROWSER_SCHEMAS_PATH,
    CONTRACT_VECTORS_PATH,
    MANIFEST_SCHEMA_PATH,
    browser_schemas_text,
    contract_vectors,
    python_reason,
)
from protocols.make_vectors import SCHEMA_PATH, render

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = (
    "the committed file differs from what protocols/manifest.py and protocols/signaling.py generate: "
    "regenerate with `.venv/bin/python -m protocols.make_vectors` and commit protocols/schema/, "
    "protocols/vectors/ and browser_peer/src/protocol/schemas.js"
)
CASES: list[dict[str, Any]] = json.loads(CONTRACT_VECTORS_PATH.read_text(encoding="utf-8"))["cases"]


def test_the_committed_manifest_schema_is_the_generated_one() -> None:
    assert MANIFEST_SCHEMA_PATH.is_file(), f"{MANIFEST_SCHEMA_PATH} is missing; {REGENERATE}"
    assert MANIFEST_SCHEMA_PATH.read_text(encoding="utf-8") == manifest.schema_text(), REGENERATE
    assert set(json.loads(MANIFEST_SCHEMA_PATH.read_text(encoding="utf-8"))) == {"manifest", "envelope"}


def test_the_browser_holds_exactly_the_committed_schemas() -> None:
    assert BROWSER_SCHEMAS_PATH.read_text(encoding="utf-8") == browser_schemas_text(), REGENERATE
    module = BROWSER_SCHEMAS_PATH.read_text(encoding="utf-8")
    for name, path in (("SIGNALING_SCHEMA", SCHEMA_PATH), ("MANIFEST_SCHEMA", MANIFEST_SCHEMA_PATH)):
        start = module.index(f"export const {name} = ") + len(f"export const {name} = ")
        value, _ = json.JSONDecoder().raw_decode(module, start)
        assert value == json.loads(path.read_text(encoding="utf-8")), f"schemas.js {name}: {REGENERATE}"
    assert signaling.schema_text() == SCHEMA_PATH.read_text(encoding="utf-8"), REGENERATE


def test_the_committed_contract_vectors_are_the_generated_ones() -> None:
    assert CONTRACT_VECTORS_PATH.read_text(encoding="utf-8") == render(contract_vectors()), REGENERATE


def test_the_vectors_reach_every_verdict_of_every_parser() -> None:
    verdicts = {(c["contract"], c["reason"]) for c in CASES}
    assert verdicts == {
        ("client_to_server", "ok"), ("client_to_server", "malformed"), ("client_to_server", "too_large"),
        ("server_to_client", "ok"), ("server_to_client", "malformed"),
        ("manifest", "ok"), ("manifest", "bad_manifest"), ("envelope", "ok"), ("envelope", "bad_manifest"),
    }  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['contract']}/{c['name']}")
def test_python_gives_each_case_its_reason(case: dict[str, Any]) -> None:
    assert python_reason(case) == case["reason"]


def test_the_browser_parsers_give_each_case_the_same_reason() -> None:
    """browser_peer/src/protocol/{signaling,manifest}.js under node (Chromium runs them in test_browser_vectors)."""
    if shutil.which("node") is None:
        raise RuntimeError("node is missing: ./scripts/setup.sh installs nodejs")
    if not (ROOT / "browser_peer" / "node_modules" / "ajv-dist").is_dir():
        raise RuntimeError("ajv-dist is missing: run ./scripts/setup.sh (npm ci in browser_peer/)")
    script = ROOT / "browser_peer" / "tests" / "contract_vectors.js"
    out = subprocess.run(["node", str(script), str(CONTRACT_VECTORS_PATH)], capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    result = json.loads(out.stdout)
    assert result["failed"] == [], "the browser disagrees with Python:\n" + "\n".join(result["failed"])
    assert result["checked"] == len(CASES)
