"""The simulator's time model: network and compute costs read from measured profiles (files), or given.

Network (``LinkCosts``): a frame of ``b`` bytes occupies the sender's uplink and the receiver's
downlink for ``b / rate`` (links are FIFO: the FedAvg aggregator's link carries every upload and
download in turn), then arrives ``latency + overhead * min(1, b / frame)`` later, where
``latency`` is half the round-trip time and ``overhead`` is what one measured exchange took
beyond its bytes and round trip (SCTP's window ramp on a fresh transfer, signing, verifying,
encoding): ``exchange = 2 * (frame / rate + overhead) + rtt``. Sources:

* ``benchmarks/results/wan.json`` (``benchmarks/wan.py``, netlab): per WAN profile,
  ``transfer.rate_mb_s`` (bulk data-channel rate), ``transfer.exchange_median_s`` (one exchange
  of a default-model frame each way) and the profile's measured UDP RTT (``netlab_measure``);
* ``benchmarks/results/transfer.json`` (``benchmarks/transfer.py``, loopback): profile
  ``loopback``, the aiortc rate and the median full gossip exchange between two peers.

Compute (``step_s``): one local training step, ``python_ms_per_step`` of
``benchmarks/results/browser.json`` (``benchmarks/browser.py``), scaled by
``max(1, peers / cores)`` when ``network.cores`` says the peers share that many cores (the
loopback webrtc backend runs every peer on this machine's 2 cores); on a loopback link the
transfers are CPU work too (aiortc's SCTP is pure Python), so the rate is divided by the same
factor and the per-frame overhead multiplied by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import NetworkConfig

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LinkCosts:
    rate: float  # bytes per second, each way, per peer
    latency: float  # seconds, one way
    overhead: float  # seconds per full frame beyond bytes / rate
    frame: int  # the frame size the overhead was measured with
    source: str  # where the numbers come from

    def exchange_s(self, frame: int) -> float:
        """One uncontended exchange of a ``frame``-byte frame each way (request, response)."""
        return 2 * (frame / self.rate + self.overhead * min(1.0, frame / self.frame) + self.latency)


@dataclass(frozen=True)
class TimeModel:
    link: LinkCosts
    step_s: float  # one local step of one peer, contention included
    step_source: str

    def describe(self) -> dict[str, Any]:
        return {"rate_mb_s": self.link.rate / 1e6, "latency_ms": 1000 * self.link.latency, "overhead_ms": 1000 * self.link.overhead,
                "reference_frame_bytes": self.link.frame, "link_source": self.link.source, "step_ms": 1000 * self.step_s,
                "step_source": self.step_source}  # fmt: skip


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else ROOT / path


def _fit(rate: float, rtt: float, exchange: float, frame: int, source: str) -> LinkCosts:
    overhead = max(0.0, (exchange - rtt) / 2 - frame / rate)
    return LinkCosts(rate=rate, latency=rtt / 2, overhead=overhead, frame=frame, source=source)


def link_from_file(path: Path, profile: str | None) -> LinkCosts:
    """The link costs of ``profile`` in a measured results file (wan.json or transfer.json)."""
    data = json.loads(_resolve(path).read_text())
    if "profiles" in data:  # benchmarks/wan.py
        if profile not in data["profiles"]:
            raise ValueError(f"{path} measured profiles {sorted(data['profiles'])}, not {profile!r}")
        entry = data["profiles"][profile]
        t = entry["transfer"]
        rtts = [m.get("udp_rtt_median_ms") for m in data.get("netlab_measure", []) if m["profile"]["name"] == profile]
        rtt_ms = next((r for r in rtts if r is not None), entry["profile"].get("rtt_ms", 0.0))
        frame = int(t.get("frame_bytes") or data["config"]["frame_bytes"])
        return _fit(t["rate_mb_s"] * 1e6, rtt_ms / 1000, t["exchange_median_s"], frame,
                    f"{path} profile {profile} (commit {data.get('commit')})")  # fmt: skip
    if data.get("benchmark") == "transfer":  # benchmarks/transfer.py: loopback
        if profile not in (None, "loopback"):
            raise ValueError(f"{path} measures loopback only, not profile {profile!r}")
        results = {r["loop"]: r for r in data["results"]}
        r = results.get("uvloop", data["results"][0])  # peers run uvloop
        return _fit(r["aiortc"]["aiortc"]["mb_s"] * 1e6, 0.0, r["gossip"]["aiortc"]["median_ms"] / 1000,
                    int(data["settings"]["frame_bytes"]), f"{path} loopback, {r['loop']} (measured {data.get('when')})")  # fmt: skip
    raise ValueError(f"{path}: not a wan.json or transfer.json results file")


def step_from_file(path: Path) -> float:
    data = json.loads(_resolve(path).read_text())
    for key in ("python_ms_per_step", "ms_per_step"):
        if key in data:
            return float(data[key]) / 1000
    raise ValueError(f"{path} holds no python_ms_per_step")


def time_model(net: NetworkConfig, peers: int) -> TimeModel:
    if net.measured is not None:
        link = link_from_file(net.measured, net.profile)
    else:
        link = LinkCosts(rate=net.bandwidth_mb_s * 1e6, latency=net.latency_ms / 1000, overhead=0.0, frame=1,
                         source="constants network.bandwidth_mb_s, network.latency_ms")  # fmt: skip
    if net.step_times is not None:
        step, source = step_from_file(net.step_times), str(net.step_times)
    else:
        step, source = net.step_time_ms / 1000, "constant network.step_time_ms"
    if net.cores is not None and peers > net.cores:
        share = peers / net.cores
        step *= share
        source += f", x {peers}/{net.cores} (peers sharing cores)"
        if net.profile in (None, "loopback") and net.measured is not None:  # loopback transfers are CPU-bound (Python SCTP)
            link = LinkCosts(link.rate / share, link.latency, link.overhead * share, link.frame, link.source + f", rate / {share:g} (peers sharing cores)")
    return TimeModel(link, step, source)
