"""A discrete-event virtual clock for asyncio: the live peer code runs unchanged, time is simulated.

``VirtualClockLoop`` is a real asyncio event loop whose ``time()`` is a number it advances
itself: when nothing is ready to run, it jumps straight to the next scheduled timer instead of
sleeping. ``asyncio.sleep``, ``asyncio.timeout`` (the exchange deadlines of
``peer.gossip.GossipEngine``) and ``loop.call_later`` (the round deadline of
``peer.fedavg.FedAvgAggregator``) all follow it, so an hour of swarm time costs only the
callbacks that happen in it. Ready callbacks run in FIFO order, so a run is deterministic.
A loop with nothing scheduled and nothing ready is deadlocked and raises instead of hanging.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Deadlock(RuntimeError):
    """Every coroutine waits on something no timer or callback will ever deliver."""


class _VirtualSelector(selectors.BaseSelector):
    """Holds the loop's self-pipe registration; ``select`` advances the virtual clock instead of blocking."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        self._loop = loop
        self._map: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(fileobj, fileobj if isinstance(fileobj, int) else fileobj.fileno(), events, data)
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("the simulated swarm is deadlocked: nothing is scheduled and nothing is ready")
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Any:
        return self._map

    def close(self) -> None:
        self._map.clear()


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh virtual clock starting at 0."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
