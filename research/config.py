"""Experiment configuration: one TOML file, ``--set section.key=value`` overrides, all defaults here."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["gossip", "central", "local", "pooled"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    source: Path | None = Field(None, description="an .npz (x, y) or .csv dataset, as `swarm publish --dataset`; "
                                                  "None: the built-in MNIST digits")
    label_column: str = Field("label", description="CSV datasets: the label column (name or 0-based index)")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    partition: Literal["iid", "dirichlet", "by_class"] = "iid"
    alpha: float = Field(0.5, gt=0)
    classes_per_shard: int = Field(2, ge=1)
    eval_examples: int = Field(500, ge=10, description="test examples each peer is evaluated on")


class ModelConfig(_Section):
    source: Path | None = Field(None, description="a Keras .h5 file or TF.js layers directory, as `swarm publish --model`; "
                                                  "None: the no-code MLP of `hidden`")
    join: str | None = Field(None, description="a live swarm's join link: simulate its manifest, weights and shards")
    hidden: list[int] = Field(default_factory=lambda: [128])
    activation: str = Field("relu", description="activation of the hidden layers of the no-code MLP")
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(0.001, ge=0)
    batch_size: int = Field(32, ge=1)
    clipnorm: float | None = Field(None, gt=0)
    l2: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    init_per_peer: bool = Field(False, description="each peer starts from its own random init (consensus tests)")


class SwarmConfig(_Section):
    peers: int = Field(16, ge=1)
    topology: Literal["random_regular", "ring", "full", "small_world"] = "random_regular"
    degree: int = Field(4, ge=1)
    local_steps: int = Field(10, ge=1, description="local steps between exchanges (one round)")
    codec: Literal["float32", "float16", "int8"] = "float32"
    robust: Literal["none", "clip"] = Field("none", description="none: bounded_pair_average (the live plain rule); "
                                                                "clip: self-centered clipping (ClippedPairAverage)")
    clip_multiplier: float = Field(2.0, gt=0)
    mixing: Literal["random", "exponential"] = Field("random", description="label-skew remedy (peer/skew.py): random "
                                                     "neighbor, or the one-peer exponential graph (time-varying); "
                                                     "unset with model.join: the manifest's gossip.mixing")
    fanout: int = Field(1, ge=1, le=16, description="label-skew remedy (peer/skew.py): distinct partners per round "
                                                       "(denser mixing); unset with model.join: the manifest's gossip.fanout")
    resolve_crossing: bool = Field(True, description="engines know their peer id, so two crossing requests give one "
                                                     "exchange (peer.gossip) instead of two declines")
    exchange_timeout_s: float = Field(60.0, gt=0, description="the manifest's gossip.exchange_timeout_s (FedAvg rounds "
                                                              "close after half of it)")


class BudgetConfig(_Section):
    rounds: int = Field(50, ge=1)
    seconds: float | None = Field(None, description="stop at this (simulated or wall-clock) time")
    bytes: float | None = Field(None, description="stop once this many bytes were sent in total")
    eval_every: int = Field(5, ge=1, description="rounds between evaluations")


class ChurnConfig(_Section):
    offline_fraction: float = Field(0.0, ge=0, lt=1)
    period_rounds: int = Field(10, ge=1, description="rounds between redrawing who is offline")
    trace: Path | None = Field(None, description="CSV round,peer,online overriding offline_fraction")


class AttackConfig(_Section):
    """Byzantine peers (the first ``peers`` of the swarm) that send poisoned models in gossip."""

    kind: Literal["none", "gaussian", "sign_flip", "scale"] = "none"
    peers: int = Field(0, ge=0)
    noise_std: float = Field(1.0, ge=0, description="gaussian: std of the noise added to each weight")
    factor: float = Field(100.0, description="scale: weights multiplied by this")


class NetworkConfig(_Section):
    """The simulator's link model; for the webrtc backend, the emulated internet the peers run in."""

    measured: Path | None = Field(None, description="sim: link costs measured per profile, benchmarks/results/wan.json "
                                                    "(netlab profiles) or transfer.json (profile loopback); overrides "
                                                    "bandwidth_mb_s and latency_ms (research/timing.py)")
    step_times: Path | None = Field(None, description="sim: measured step time, e.g. benchmarks/results/browser.json "
                                                      "(python_ms_per_step); overrides step_time_ms")
    cores: int | None = Field(None, ge=1, description="sim: the peers share this many cores (one machine): steps take "
                                                      "peers/cores times longer. None: a machine per peer")
    step_jitter: float = Field(0.1, ge=0, lt=1, description="sim: each training chunk takes (1 +- this) x its steps' "
                                                             "time, uniformly (real peers are never in lock-step)")
    bandwidth_mb_s: float = Field(10.0, gt=0, description="per-peer link, MB/s each way, when nothing is measured")
    latency_ms: float = Field(20.0, ge=0)
    step_time_ms: float = Field(1.2, ge=0, description="one local training step, when nothing is measured")
    profile: str | None = Field(None, description="webrtc backend: a netlab WAN profile (lan, broadband, mobile, "
                                                  "intercontinental); peers run in homes behind NATs. None or loopback: "
                                                  "loopback. sim: the profile of `measured` to use")
    homes: int = Field(2, ge=1, le=64, description="webrtc backend with a profile: homes the peers are spread over")
    nat: Literal["eim", "symmetric"] = Field("eim", description="webrtc backend with a profile: the homes' NAT type")


class SimConfig(_Section):
    """How the simulator computes (not what it simulates): results depend on these, never on the backend."""

    blocks: int = Field(1, ge=1, description="peers are trained in this many contiguous blocks; the ray backend "
                                             "places blocks on workers, so sim and ray agree for the same blocks")
    ray_address: str | None = Field(None, description="ray backend: an existing cluster (None: start a local one)")
    ray_workers: int | None = Field(None, ge=1, description="ray backend: actors to spread the blocks over (default: blocks)")


class ExperimentConfig(_Section):
    name: str = "experiment"
    backend: Literal["sim", "webrtc", "ray"] = "sim"
    methods: list[Method] = Field(default_factory=lambda: ["gossip", "central", "local", "pooled"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    swarm: SwarmConfig = Field(default_factory=SwarmConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    sim: SimConfig = Field(default_factory=SimConfig)


def _coerce(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load(path: Path | None, overrides: list[str] = ()) -> ExperimentConfig:  # type: ignore[assignment]
    """Read ``path`` (TOML) and apply ``key.sub=value`` overrides (values parsed as JSON when they can be)."""
    raw: dict[str, Any] = tomllib.loads(path.read_text()) if path else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value, e.g. swarm.peers=64")
        node = raw
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _coerce(value.strip())
    return ExperimentConfig.model_validate(raw)
