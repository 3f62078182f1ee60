"""ICE candidate addresses for aiortc.

aioice gathers host candidates from every interface *except* 127.0.0.1, so two peers on one
machine with no other interface cannot connect, and tests must not leave loopback. Setting
candidate addresses (``--ice-address 127.0.0.1``) replaces aioice's address discovery for
this process. Chromium peers offer mDNS ``.local`` candidates that aioice cannot resolve;
they still connect through peer-reflexive candidates once they reach our host candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice

_original = aioice.ice.get_host_addresses


def use_candidate_addresses(addresses: Sequence[str] | None) -> None:
    """Offer exactly ``addresses`` as host candidates (None restores aioice's discovery)."""
    if not addresses:
        aioice.ice.get_host_addresses = _original
        return
    fixed = list(addresses)

    def _fixed(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = _fixed
