"""Who is connected to which swarm: rooms of joined peers and their dataset shards."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from protocols.signaling import PeerInfo

from .board import Board


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Member:
    info: PeerInfo
    ws: web.WebSocketResponse
    shard: int


@dataclass
class Room:
    swarm_id: str
    members: dict[str, Member] = field(default_factory=dict)

    def next_shard(self, num_shards: int) -> int:
        """The least-used shard, lowest index first, so data spreads evenly over peers."""
        used = Counter(m.shard for m in self.members.values())
        return min(range(max(1, num_shards)), key=lambda s: (used[s], s))


class Registry:
    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.boards: dict[str, Board] = {}  # outlive the rooms: departed peers keep their credit

    def board(self, swarm_id: str) -> Board:
        board = self.boards.get(swarm_id)
        if board is None:
            board = self.boards[swarm_id] = Board(swarm_id)
        return board

    def online(self, swarm_id: str) -> set[str]:
        room = self.rooms.get(swarm_id)
        return set(room.members) if room else set()

    def room(self, swarm_id: str) -> Room:
        return self.rooms.setdefault(swarm_id, Room(swarm_id))

    def remove(self, swarm_id: str, peer_id: str, ws: web.WebSocketResponse) -> bool:
        """Remove a member if ``ws`` is still its connection (a rejoin may have replaced it)."""
        room = self.rooms.get(swarm_id)
        if room is None or peer_id not in room.members or room.members[peer_id].ws is not ws:
            return False
        del room.members[peer_id]
        if not room.members:
            del self.rooms[swarm_id]
        return True

    def peer_count(self) -> int:
        return sum(len(r.members) for r in self.rooms.values())
