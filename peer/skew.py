"""Partner choice against label skew: who a peer exchanges with, as pure functions.

Plain gossip picks one random neighbor per round. Under strong label skew (Dirichlet alpha =
0.1) every peer drifts towards its few classes between exchanges, and random pairwise
averaging mixes the drift away too slowly. Two published remedies that change only *whom* a
peer averages with, so every exchange is still a conserving pairwise average (``averaging``):

* ``exponential_partner``: the one-peer exponential graph (Ying, Yuan, Chen, Hu, Pan and Yin,
  "Exponential graph is provably efficient for decentralized deep training", NeurIPS 2021): at
  its round ``r`` peer ``i`` of ``n`` exchanges with ``i + 2**(r mod ceil(log2 n))``, a
  time-varying graph whose product over ``log2 n`` rounds averages exactly (for ``n`` a power
  of two) with one exchange per round;
* ``fanout_partners``: denser mixing, ``k`` distinct random neighbors per round (several gossip
  steps per local round, as in Lian et al., "Can decentralized algorithms outperform
  centralized algorithms?", NeurIPS 2017, and Koloskova et al., "A unified theory of
  decentralized SGD", ICML 2020, where more gossip steps shrink the consensus term); it costs
  ``k`` times the bytes per round, so compare at equal bytes.

Peers are named by sortable ids; an offline or unknown partner falls back to a random option.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence


def exponential_partner(me: str, swarm: Sequence[str], round_: int) -> str:
    """The one-peer exponential graph's partner of ``me`` at its round ``round_`` (``swarm``: every peer id)."""
    order = sorted(swarm)
    n = len(order)
    if n < 2:
        raise ValueError("an exponential graph needs at least two peers")
    hops = max(1, math.ceil(math.log2(n)))
    i = order.index(me)
    return order[(i + 2 ** (round_ % hops)) % n]


def exponential_neighbors(me: str, swarm: Sequence[str]) -> list[str]:
    """Every partner ``me`` has in the exponential graph over ``swarm`` (``me`` included): the member
    ``i + 2**k`` for ``k < ceil(log2 n)``, distinct, in ``k`` order; empty below two members.

    A live peer links to these first (``peer.mesh``), so that the partner of each of its rounds is
    an open link; the members that count ``me`` among theirs (``i - 2**k``) link to it.
    """
    order = sorted(set(swarm))
    n = len(order)
    if n < 2:
        return []
    i = order.index(me)
    partners = [order[(i + 2**k) % n] for k in range(max(1, math.ceil(math.log2(n))))]
    return list(dict.fromkeys(p for p in partners if p != me))


def exponential_links(me: str, swarm: Sequence[str]) -> list[str]:
    """The links ``me`` keeps in the exponential graph: its partners ``i + 2**k`` (``exponential_neighbors``),
    then the members whose partner it is, ``i - 2**k``, distinct.

    Both ends of a pair offer the link: a peer that joins is announced before it accepts links,
    so an offer to it can go unanswered until the offerer's connect timeout (20 s); the new
    peer's own offer, once it is ready, opens the link at once (glare keeps one of the two).
    """
    order = sorted(set(swarm))
    n = len(order)
    if n < 2:
        return []
    i = order.index(me)
    back = [order[(i - 2**k) % n] for k in range(max(1, math.ceil(math.log2(n))))]
    return list(dict.fromkeys(p for p in [*exponential_neighbors(me, swarm), *back] if p != me))


def partners_to_link(me: str, swarm: Sequence[str], skip: Collection[str], room: int) -> list[str]:
    """The exponential links of ``me`` to offer (``exponential_links``): those not in ``skip``
    (linked already, connecting, banned, retried later), at most ``room`` of them, in that order."""
    return [p for p in exponential_links(me, swarm) if p not in skip][: max(0, room)]


def fanout_partners(options: Sequence[str], k: int, rng: random.Random) -> list[str]:
    """``k`` distinct partners among ``options`` (all of them if fewer), in random order."""
    if k < 1:
        raise ValueError(f"fanout must be at least 1, not {k}")
    return rng.sample(list(options), min(k, len(options)))


def choose_partners(me: str, options: Sequence[str], swarm: Sequence[str], round_: int, rng: random.Random,
                    mixing: str = "random", fanout: int = 1) -> list[str]:  # fmt: skip
    """The partners of one round, in exchange order: ``random`` (plain gossip) or ``exponential``, and
    ``fanout`` > 1 more of them (with ``exponential``, its partner first and ``fanout - 1`` random others).

    The simulator (``research.engine``) and live peers (``peer.schedule.Exchanges``) both call this:
    ``options`` are the open links (the simulator's online neighbors), ``swarm`` every member ``me``
    knows, ``me`` included.
    """
    if not options:
        return []
    if mixing == "exponential":
        partner = exponential_partner(me, swarm, round_)
        first = partner if partner in options else rng.choice(list(options))
        return [first] if fanout == 1 else [first, *fanout_partners([o for o in options if o != first], fanout - 1, rng)]
    if mixing != "random":
        raise ValueError(f"unknown mixing {mixing!r}: use random or exponential")
    return [rng.choice(list(options))] if fanout == 1 else fanout_partners(options, fanout, rng)
