"""Cross-language vectors of the live partner choice (``peer/skew.py`` = ``browser_peer/src/skew.js``).

    python -m peer.skew_vectors

rewrites ``protocols/vectors/skew.json``: swarms of peer ids (unsorted, as a peer learns them),
each member's exponential neighbors, the links it keeps (both directions) and its exponential
partner at rounds ``0 .. 2 ceil(log2 n)``, and which peers it offers links to (``partners_to_link``) given what it skips and the room
left under ``max_degree``. What a peer picks at random (a fallback link, fanout's extra partners)
is not pinned; both languages test its rules instead. ``tests/test_skew_live.py`` fails when the
committed file differs from this module's output.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from protocols.make_vectors import VECTORS_DIR, render

from .skew import exponential_links, exponential_neighbors, exponential_partner, partners_to_link

PATH = VECTORS_DIR / "skew.json"
SIZES = [2, 3, 4, 5, 8, 13]


def _ids(n: int) -> list[str]:
    """``n`` peer ids (32 hex characters, as ``peer_id_of`` makes them), in no sorted order."""
    return [hashlib.sha256(f"peer {n} {i}".encode()).hexdigest()[:32] for i in range(n)]


def skew_vectors() -> dict[str, Any]:
    graphs = []
    for n in SIZES:
        members = _ids(n)
        rounds = 2 * max(1, math.ceil(math.log2(n))) + 1
        graphs.append({"members": members, "peers": [
            {"me": me, "neighbors": exponential_neighbors(me, members), "links": exponential_links(me, members),
             "partners_by_round": [exponential_partner(me, members, r) for r in range(rounds)]} for me in members]})  # fmt: skip
    to_link = []
    members = _ids(13)
    me = members[0]
    partners = exponential_links(me, members)
    for name, skip, room in [("none linked", [], 8), ("first two linked", partners[:2], 8), ("room for two", [], 2),
                             ("no room", [], 0), ("a non-partner skipped", [p for p in members if p not in partners][:3], 3),
                             ("room below zero", [], -1)]:  # fmt: skip
        to_link.append({"name": name, "me": me, "members": members, "skip": skip, "room": room,
                        "want": partners_to_link(me, members, skip, room)})  # fmt: skip
    return {"graphs": graphs, "to_link": to_link}


def main() -> None:
    PATH.write_text(render(skew_vectors()), encoding="utf-8", newline="\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
