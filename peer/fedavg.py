"""Central averaging (FedAvg) over the same transport as gossip, for comparisons.

Clients use ``GossipEngine`` with ``adopt`` instead of a pairwise average: they send their
model to the aggregator and replace theirs by the reply. The aggregator answers each request
only when its round closes — every linked client has sent, or ``round_timeout`` passed since
the first arrival — with the sample-weighted average of the round (``weighted_average``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .averaging import Weights, weighted_average
from .gossip import LocalModel, Outcome, Update


def adopt(mine: Weights, my_weight: float, theirs: Weights, their_weight: float) -> tuple[Weights, float]:
    """A FedAvg client takes the global model; its weight stays its sample count."""
    return list(theirs), my_weight


class FedAvgAggregator:
    def __init__(self, model: LocalModel, expected: Callable[[], int], round_timeout: float) -> None:
        self.model = model
        self.expected = expected
        self.round_timeout = round_timeout
        self.rounds = 0
        self.served = 0
        self.declined_requests = 0
        self.busy = False
        self.outcomes: dict[Outcome, int] = {o: 0 for o in Outcome}  # the aggregator never initiates
        self._pending: list[tuple[Update, asyncio.Future[Update]]] = []
        self._deadline: asyncio.TimerHandle | None = None

    def on_propose(self, peer: str) -> bool:
        """Every client's proposal is accepted: one round averages many clients at once."""
        return True

    async def respond(self, update: Update, peer: str | None = None) -> Update | None:
        future: asyncio.Future[Update] = asyncio.get_running_loop().create_future()
        self._pending.append((update, future))
        if len(self._pending) == 1:
            self._deadline = asyncio.get_running_loop().call_later(self.round_timeout, self._close_round)
        if len(self._pending) >= max(1, self.expected()):
            self._close_round()
        reply = await future
        self.served += 1
        return reply

    def _close_round(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        pending, self._pending = self._pending, []
        live = [(u, f) for u, f in pending if not f.done()]
        if not live:
            return
        average = weighted_average([(u.weights, u.weight) for u, _ in live])
        total = sum(u.weight for u, _ in live)
        self.model.assign(average, total)
        self.rounds += 1
        for _, f in live:
            f.set_result(Update(average, total, self.rounds))
