"""Averaging rules bit for bit across languages: protocols/vectors/averaging.json against Python and JavaScript.

The vectors pin ``pair_average``, ``bounded_pair_average`` and ``ClippedPairAverage`` (sequences
of exchanges on one instance, so the adaptive radius and its history are pinned as well). The
same file is checked by ``peer/averaging.py``, by a scalar rendering of the arithmetic written
in docs/PROTOCOL.md, and by ``browser_peer/src/averaging.js`` under node.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from peer.averaging import ClippedPairAverage, bounded_pair_average, pair_average
from peer.averaging_vectors import PATH, averaging_vectors
from protocols.make_vectors import render

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "regenerate with `.venv/bin/python -m peer.averaging_vectors` and commit protocols/vectors/averaging.json"
VECTORS: dict[str, Any] = json.loads(PATH.read_text(encoding="utf-8"))


def _tensors(items: list[dict[str, Any]]) -> list[np.ndarray]:
    return [np.asarray(t["values"], np.float32).reshape(t["shape"]) for t in items]


def _same_bits(got: list[np.ndarray], want: list[dict[str, Any]]) -> bool:
    w = _tensors(want)
    return len(got) == len(w) and all(g.shape == x.shape and g.tobytes() == x.tobytes() for g, x in zip(got, w, strict=True))


def test_the_committed_vectors_are_the_generator_output() -> None:
    assert PATH.read_text(encoding="utf-8") == render(averaging_vectors()), f"{PATH.name} is stale; {REGENERATE}"


@pytest.mark.parametrize("case", VECTORS["pair"], ids=lambda c: c["name"])
def test_python_pair_average_matches_the_vectors(case: dict[str, Any]) -> None:
    merged, weight = pair_average(_tensors(case["mine"]), case["my_weight"], _tensors(case["theirs"]), case["their_weight"])
    assert _same_bits(merged, case["merged"]) and weight == case["weight"]
    b = case["bounded"]
    merged, weight = bounded_pair_average(_tensors(case["mine"]), case["my_weight"], _tensors(case["theirs"]), b["their_weight"])
    assert _same_bits(merged, b["merged"]) and weight == b["weight"]


@pytest.mark.parametrize("case", VECTORS["pair_errors"], ids=lambda c: c["name"])
def test_python_refuses_what_the_vectors_refuse(case: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        pair_average(_tensors(case["mine"]), case["my_weight"], _tensors(case["theirs"]), case["their_weight"])


@pytest.mark.parametrize("case", VECTORS["clipped"], ids=lambda c: c["name"])
def test_python_clipping_matches_the_vectors(case: dict[str, Any]) -> None:
    rule = ClippedPairAverage(**case["config"])
    for step in case["steps"]:
        assert rule.tau(_tensors(step["mine"])) == step["tau"]
        merged, weight = rule(_tensors(step["mine"]), step["my_weight"], _tensors(step["theirs"]), step["their_weight"])
        assert _same_bits(merged, step["merged"]) and weight == step["weight"]
        assert (rule.last_ratio, rule.clipped, rule.distances) == (step["last_ratio"], step["clipped"], step["distances"])


# ---- the arithmetic as docs/PROTOCOL.md writes it, one scalar at a time ---------------------


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])  # round to nearest, ties to even


def _flat(items: list[dict[str, Any]]) -> list[float]:
    return [v for t in items for v in t["values"]]


def _sq(values: list[float]) -> float:
    acc = 0.0
    for v in values:
        acc += v * v
    return acc


def test_the_documented_arithmetic_gives_the_same_bits() -> None:
    """A scalar rendering of the spec (Python floats are IEEE doubles) reproduces every vector."""
    for c in VECTORS["pair"]:
        total = c["my_weight"] + c["their_weight"]
        a, b = c["my_weight"] / total, c["their_weight"] / total
        want = _flat(c["merged"])
        got = [_f32(m * a + t * b) for m, t in zip(_flat(c["mine"]), _flat(c["theirs"]), strict=True)]
        assert [struct.pack("<f", g) for g in got] == [struct.pack("<f", w) for w in want], c["name"]
    for c in VECTORS["clipped"]:
        cfg, history = c["config"], []  # type: ignore[var-annotated]
        for s in c["steps"]:
            mine, theirs = _flat(s["mine"]), _flat(s["theirs"])
            if history:
                ordered = sorted(history)
                k = len(ordered) // 2
                median = ordered[k] if len(ordered) % 2 else (ordered[k - 1] + ordered[k]) / 2
                tau = max(cfg["floor"], cfg["multiplier"] * median)
            else:
                tau = max(cfg["floor"], cfg["initial"] * math.sqrt(_sq(mine)))
            d = [t - m for m, t in zip(mine, theirs, strict=True)]
            distance = math.sqrt(_sq(d))
            scale = min(1.0, tau / distance) if distance > 0 else 1.0
            n_m, n_t = s["my_weight"], s["their_weight"]
            share = min(0.5, n_t / (n_m + n_t)) if n_m + n_t > 0 else 0.5
            got = [_f32(m + (share * scale) * x) for m, x in zip(mine, d, strict=True)]
            assert tau == s["tau"] and distance / tau == s["last_ratio"], c["name"]
            assert [struct.pack("<f", g) for g in got] == [struct.pack("<f", w) for w in _flat(s["merged"])], c["name"]
            assert (n_m + min(n_t, n_m)) / 2 == s["weight"]
            if distance <= tau:
                history = (history + [distance])[-cfg["history"] :]


def test_the_vectors_catch_a_clipped_delta_rounded_to_float32() -> None:
    """What Python did before: float32(m + share * float32(clip(d))). At least one value differs."""
    differing = 0
    for c in VECTORS["clipped"]:
        for s in c["steps"]:
            mine = _tensors(s["mine"])
            d = [np.asarray(t, np.float64) - m for m, t in zip(mine, _tensors(s["theirs"]), strict=True)]
            distance = s["last_ratio"] * s["tau"]
            scale = min(1.0, s["tau"] / distance) if distance > 0 else 1.0
            n_m, n_t = s["my_weight"], s["their_weight"]
            share = min(0.5, n_t / (n_m + n_t)) if n_m + n_t > 0 else 0.5
            old = [(np.asarray(m, np.float64) + share * (x * scale).astype(np.float32)).astype(np.float32) for m, x in zip(mine, d, strict=True)]
            differing += not _same_bits(old, s["merged"])
    assert differing >= 1


# ---- JavaScript ------------------------------------------------------------------------------


def test_the_browser_averaging_matches_the_vectors_bit_for_bit() -> None:
    if shutil.which("node") is None:
        raise RuntimeError("node is missing: ./scripts/setup.sh installs nodejs")
    script = ROOT / "browser_peer" / "tests" / "averaging_vectors.js"
    out = subprocess.run(["node", str(script), str(PATH)], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout)
    assert result["failed"] == [], "averaging.js disagrees with the vectors:\n" + "\n".join(result["failed"])
    steps = sum(len(c["steps"]) for c in VECTORS["clipped"])
    assert result["checked"] == 4 * len(VECTORS["pair"]) + len(VECTORS["pair_errors"]) + 6 * steps
