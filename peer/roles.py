"""A peer's role in its swarm, as one narrow strategy: its links, its engine, its schedule.

What differs between the four roles is small and is all here (Flower's ``Strategy``, reduced to
what a live peer needs); the rest of the peer (bootstrap, schedule, reporting) reads only these
fields:

- ``Gossip``: pairwise averaging with a bounded partner weight (``gossip.robust = "none"``);
- ``ClippedGossip``: self-centered clipping (``gossip.robust = "clip"``, the default);
- ``FedAvgClient``: one link, to the aggregator; adopts each round's average (``fedavg.adopt``)
  and waits for it (synchronous FedAvg);
- ``Aggregator``: makes no links itself, accepts every client, trains nothing and answers each
  round with the sample-weighted average (``fedavg.FedAvgAggregator``).

``role_for(manifest, own_key)`` picks one from the signed manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from protocols.crypto import peer_id_of
from protocols.manifest import GossipConfig, Manifest

from .averaging import ClippedPairAverage, Weights, bounded_pair_average
from .config import PeerConfig
from .fedavg import FedAvgAggregator, adopt
from .gossip import Engine, GossipEngine, LocalModel
from .mesh import Mesh, MeshConfig

AGGREGATOR_MAX_DEGREE = 1024  # the aggregator takes every client that connects


class Role(Protocol):
    """What the rest of the peer asks of its role."""

    name: ClassVar[str]  # "gossip", "client" or "aggregator": logs and metrics say it
    trains: ClassVar[bool]  # runs local training steps (the aggregator only averages)
    initiates: ClassVar[bool]  # starts exchanges (the aggregator only answers them)
    overlaps_training: ClassVar[bool]  # its exchanges run as a background task beside training; else awaited
    synchronous: ClassVar[bool]  # trains no further than local_steps past the last merge (synchronous FedAvg)
    pulls_first: ClassVar[bool]  # a fresh peer adopts the most trained neighbor's model before training

    def mesh_config(self, peer: PeerConfig) -> MeshConfig:
        """Which links this peer makes and accepts."""
        ...

    def engine(self, model: LocalModel, mesh: Mesh) -> Engine:
        """The engine that runs this peer's side of every exchange."""
        ...


@dataclass(frozen=True)
class Gossip:
    """Asynchronous push-pull gossip; exchanges overlap training (docs/DESIGN.md "Exchanges run beside training")."""

    gossip: GossipConfig
    name: ClassVar[str] = "gossip"
    trains: ClassVar[bool] = True
    initiates: ClassVar[bool] = True
    overlaps_training: ClassVar[bool] = True
    synchronous: ClassVar[bool] = False
    pulls_first: ClassVar[bool] = True

    def mesh_config(self, peer: PeerConfig) -> MeshConfig:
        g = self.gossip
        return MeshConfig(degree=peer.degree or g.degree, max_degree=g.max_degree, ice_servers=peer.ice_servers,
                          relay_only=peer.ice_relay_only, mixing=g.mixing)  # fmt: skip

    def average(self) -> Callable[..., tuple[Weights, float]]:
        """The pairwise rule: the partner's claimed weight counts at most 4x ours."""
        return bounded_pair_average

    def engine(self, model: LocalModel, mesh: Mesh) -> Engine:
        return GossipEngine(model, average=self.average(), peer_id=mesh.peer_id)


@dataclass(frozen=True)
class ClippedGossip(Gossip):
    """Gossip whose pairwise step is clipped around our own model (``averaging.ClippedPairAverage``)."""

    def average(self) -> Callable[..., tuple[Weights, float]]:
        return ClippedPairAverage(self.gossip.clip_multiplier)  # one per peer: its tau follows its own history


@dataclass(frozen=True)
class FedAvgClient:
    """A FedAvg client: links to the aggregator only, sends its model, adopts the round's average."""

    gossip: GossipConfig
    name: ClassVar[str] = "client"
    trains: ClassVar[bool] = True
    initiates: ClassVar[bool] = True
    overlaps_training: ClassVar[bool] = False  # it waits for its round's average (synchronous FedAvg)
    # and for the aggregator: without a merged round it does not train on (an aggregator that is
    # not up yet would otherwise see clients that did all their steps alone, as local training)
    synchronous: ClassVar[bool] = True
    pulls_first: ClassVar[bool] = False  # the first round's average replaces its model anyway

    def mesh_config(self, peer: PeerConfig) -> MeshConfig:
        assert self.gossip.aggregator is not None  # GossipConfig refuses "central" without one
        only = {peer_id_of(bytes.fromhex(self.gossip.aggregator))}
        return MeshConfig(degree=1, max_degree=1, ice_servers=peer.ice_servers, only_peers=only,
                          relay_only=peer.ice_relay_only)  # fmt: skip

    def engine(self, model: LocalModel, mesh: Mesh) -> Engine:
        return GossipEngine(model, average=adopt)


@dataclass(frozen=True)
class Aggregator:
    """The FedAvg aggregator: clients connect to it; a round closes when all sent or half the exchange timeout passed."""

    gossip: GossipConfig
    name: ClassVar[str] = "aggregator"
    trains: ClassVar[bool] = False
    initiates: ClassVar[bool] = False
    overlaps_training: ClassVar[bool] = False
    synchronous: ClassVar[bool] = False
    pulls_first: ClassVar[bool] = False

    def mesh_config(self, peer: PeerConfig) -> MeshConfig:
        return MeshConfig(degree=0, max_degree=AGGREGATOR_MAX_DEGREE, ice_servers=peer.ice_servers,
                          relay_only=peer.ice_relay_only)  # fmt: skip

    def engine(self, model: LocalModel, mesh: Mesh) -> Engine:
        return FedAvgAggregator(model, expected=lambda: len(mesh.open_links()),
                                round_timeout=self.gossip.exchange_timeout_s / 2)  # fmt: skip


def role_for(manifest: Manifest, own_key: str) -> Role:
    """The role the manifest gives the peer whose public key (hex) is ``own_key``."""
    g = manifest.gossip
    if g.method == "central":
        return Aggregator(g) if g.aggregator == own_key else FedAvgClient(g)
    return ClippedGossip(g) if g.robust == "clip" else Gossip(g)
