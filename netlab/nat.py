"""NAT types in RFC 4787 terms, and the iptables rules that make a router behave as one.

Mapping (how the router picks the public port) is what the types differ in; filtering (which
inbound packets pass) is Linux conntrack's for all of them: an inbound packet passes only if it
is the reply direction of a flow the inside started, i.e. it comes from the exact address *and
port* the inside sent to (address-and-port-dependent filtering).
"""

from __future__ import annotations

import enum


class NatType(str, enum.Enum):
    """How a home reaches the internet."""

    #: Endpoint-independent mapping: one inside ip:port keeps one public port whatever the
    #: destination (``MASQUERADE``, which also keeps the inside port when it is free).
    EIM = "eim"
    #: Endpoint-dependent mapping ("symmetric"): every destination gets its own random public
    #: port (``MASQUERADE --random-fully``), so a STUN-learned srflx port is useless to peers.
    SYMMETRIC = "symmetric"
    #: No NAT: the home's single host holds its public address itself.
    NONE = "none"


def nat_rules(nat: NatType, wan: str) -> list[list[str]]:
    """iptables argv lists (without the namespace prefix) for a NAT router whose WAN is ``wan``.

    Besides the masquerade rule, unsolicited inbound traffic is dropped silently, as home routers
    do: nothing the outside sends reaches the LAN or the router unless it answers a flow the
    inside started. Dropping in ``filter`` also throws away the conntrack entry such a packet
    would otherwise leave behind; left in place, that entry would collide with the inside's
    next outbound flow on the same port and push MASQUERADE to another port (breaking EIM).
    """
    if nat is NatType.NONE:
        return []
    masq = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE"]
    if nat is NatType.SYMMETRIC:
        masq.append("--random-fully")
    established = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
    return [
        masq,
        ["iptables", "-A", "INPUT", "-i", wan, *established],
        ["iptables", "-A", "INPUT", "-i", wan, "-j", "DROP"],
        ["iptables", "-A", "FORWARD", "-i", wan, *established],
        ["iptables", "-A", "FORWARD", "-i", wan, "-j", "DROP"],
    ]


def outage_rules(wan: str, action: str) -> list[list[str]]:
    """iptables argv lists that black-hole ``wan`` in both directions (``action`` "-A"), or undo it ("-D").

    Inbound is dropped in ``raw`` PREROUTING, before conntrack sees it, so the outage does not
    refresh NAT mappings; outbound in ``mangle`` POSTROUTING, before NAT. The interface stays
    up and existing conntrack mappings survive (until their own timeouts), as in an ISP outage
    rather than a pulled cable, which would flush MASQUERADE's mappings.
    """
    tag = ["-m", "comment", "--comment", "netlab-wan-down", "-j", "DROP"]
    return [
        ["iptables", "-t", "raw", action, "PREROUTING", "-i", wan, *tag],
        ["iptables", "-t", "mangle", action, "POSTROUTING", "-o", wan, *tag],
    ]
