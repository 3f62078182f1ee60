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
    test_fraction: float = Field(0.2, gt=0, lt=1)
    partition: Literal["iid", "dirichlet", "by_class"] = "iid"
    alpha: float = Field(0.5, gt=0)
    classes_per_shard: int = Field(2, ge=1)
    eval_examples: int = Field(500, ge=10, description="test examples each peer is evaluated on")


class ModelConfig(_Section):
    hidden: list[int] = Field(default_factory=lambda: [128])
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = Field(0.001, ge=0)
    batch_size: int = Field(32, ge=1)
    init_per_peer: bool = Field(False, description="each peer starts from its own random init (consensus tests)")


class SwarmConfig(_Section):
    peers: int = Field(16, ge=1)
    topology: Literal["random_regular", "ring", "full", "small_world"] = "random_regular"
    degree: int = Field(4, ge=1)
    local_steps: int = Field(10, ge=1, description="local steps between exchanges (one round)")
    codec: Literal["float32", "float16", "int8"] = "float32"
    robust: Literal["none", "clip"] = Field("none", description="clip: self-centered clipping (ClippedGossip)")
    clip_multiplier: float = Field(2.0, gt=0)


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

    bandwidth_mb_s: float = Field(10.0, gt=0, description="per-peer link, MB/s each way (aiortc on loopback: ~10)")
    latency_ms: float = Field(20.0, ge=0)
    step_time_ms: float = Field(1.2, ge=0, description="one local training step (Python peer, default MLP)")
    profile: str | None = Field(None, description="webrtc backend: a netlab WAN profile (lan, broadband, mobile, "
                                                  "intercontinental); peers run in homes behind NATs. None: loopback")
    homes: int = Field(2, ge=1, le=64, description="webrtc backend with a profile: homes the peers are spread over")
    nat: Literal["eim", "symmetric"] = Field("eim", description="webrtc backend with a profile: the homes' NAT type")


class ExperimentConfig(_Section):
    name: str = "experiment"
    backend: Literal["sim", "webrtc"] = "sim"
    methods: list[Method] = Field(default_factory=lambda: ["gossip", "central", "local", "pooled"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    swarm: SwarmConfig = Field(default_factory=SwarmConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)


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
