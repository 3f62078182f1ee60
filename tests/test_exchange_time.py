"""benchmarks/exchange_time.py: two real processes run real gossip exchanges through the product's code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.aiortc_variant import stock_overlay
from benchmarks.exchange_time import main, one_run


@pytest.mark.parametrize("stock", [False, True], ids=["patched aiortc", "stock aiortc"])
def test_every_timed_exchange_merges_on_both_ends(stock: bool, tmp_path: Path) -> None:
    run = one_run(rounds=4, seed=0, overlay=stock_overlay(tmp_path) if stock else None)
    assert len(run["initiator"]["ms"]) == 4 and all(ms > 0 for ms in run["initiator"]["ms"])
    assert run["responder"]["served"] == 4  # the warm-up is not counted: one_run raises otherwise
    assert run["initiator"]["cpu_s"] > 0 and run["responder"]["cpu_s"] > 0


def test_the_results_file_holds_both_variants_config_and_commit(tmp_path: Path) -> None:
    out = tmp_path / "exchange_time.json"
    main(["--rounds", "2", "--trials", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["config"]["aiortc_sctp_patch"] is True and report["commit"] and report["machine"]["cpu_count"]
    for name in ("aiortc", "stock aiortc"):
        r = report["results"][name]
        assert r["median_ms"] <= r["p90_ms"] <= r["max_ms"] and len(r["all_ms"]) == 2, r
        assert f"| {name} | {r['median_ms']:.1f} |" in report["table"]
