"""netlab: an emulated internet of Linux network namespaces for tests, benchmarks and experiments.

    from netlab import Internet, Home, NatType
    with Internet([Home("a", NatType.EIM, "broadband"), Home("b", NatType.SYMMETRIC, "mobile")]) as net:
        net.run(net.homes["a"].hosts[0], ["python3", "-c", "..."])

Standard library only; needs root, iproute2 and iptables. See docs/NETLAB.md.
"""

from .internet import SERVER_IP, Home, HomeNet, Host, Internet
from .nat import NatType
from .profiles import PROFILES, LinkProfile, load_profiles
from .sh import NetlabError
from .state import cleanup_stale

__all__ = [
    "PROFILES", "SERVER_IP", "Home", "HomeNet", "Host", "Internet", "LinkProfile", "NatType", "NetlabError",
    "cleanup_stale", "load_profiles",
]
