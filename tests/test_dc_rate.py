"""benchmarks/dc_rate.py: two real processes per pair, aiortc and libdatachannel, on loopback.

The native stack runs from .venv-native (scripts/setup.sh makes it from the machine's Python
3.12); these tests fail, rather than skip, without it: the suite's set-up owns it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.aiortc_variant import stock_overlay
from benchmarks.dc_rate import NATIVE_PYTHON, native_version, one_transfer, table

MIB = 1024 * 1024


def needs_native() -> None:
    assert native_version(NATIVE_PYTHON), f"no aiolibdatachannel at {NATIVE_PYTHON}: run scripts/setup.sh (needs a Python 3.12)"


@pytest.mark.parametrize("pair", [("aiortc", "aiortc"), ("stock aiortc", "stock aiortc"), ("native", "native"),
                                  ("native", "aiortc"), ("aiortc", "native"), ("stock aiortc", "native")])  # fmt: skip
def test_every_byte_arrives_between_two_processes(pair: tuple[str, str], tmp_path: Path) -> None:
    if "native" in pair:
        needs_native()
    stock = stock_overlay(tmp_path) if "stock aiortc" in pair else None
    result = one_transfer(*pair, NATIVE_PYTHON, size=4 * MIB, warmup=MIB, message_size=262144, stock=stock)
    assert result["send"]["bytes"] == result["receive"]["bytes"] == 4 * MIB
    assert result["mb_s"] > 0 and result["send"]["cpu_s"] > 0 and result["receive"]["cpu_s"] > 0
    # the sender's window holds the receiver's: every measured byte left and arrived inside it
    assert result["send"]["wall_s"] >= result["receive"]["wall_s"] * 0.9


def test_the_table_says_why_a_pair_was_not_run() -> None:
    text = table({"native -> native": {"error": "no native stack"}, "aiortc -> aiortc": {"mb_s": 20.0, "send_cpu_s_per_mb": 0.04,
                                                                                    "receive_cpu_s_per_mb": 0.05}})  # fmt: skip
    assert "| native -> native | no native stack |" in text and "| aiortc -> aiortc | 20.0 | 0.040 | 0.050 |" in text
