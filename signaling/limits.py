"""Per-address limits: concurrent connections, connection attempts and uploads per client IP.

One flooding client must not exhaust the server for everyone else. Loopback is exempt by
default because behind a reverse proxy every client arrives from 127.0.0.1 (rate-limit at the
proxy then; see docs/THREAT_MODEL.md); tests switch the exemption off.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict

from .registry import TokenBucket

MAX_TRACKED = 65536  # addresses remembered; the least recently seen are forgotten first


class AddressLimits:
    def __init__(self, *, max_connections: int, connects_per_second: float, connect_burst: int,
                 uploads_per_minute: float, exempt_loopback: bool = True) -> None:  # fmt: skip
        self.max_connections = max_connections
        self.connects_per_second, self.connect_burst = connects_per_second, connect_burst
        self.uploads_per_minute = uploads_per_minute
        self.exempt_loopback = exempt_loopback
        self.open: Counter[str] = Counter()
        self._connects: OrderedDict[str, TokenBucket] = OrderedDict()
        self._uploads: OrderedDict[str, TokenBucket] = OrderedDict()
        self.refused: Counter[str] = Counter()  # by limit name, for /health and tests

    def _exempt(self, address: str) -> bool:
        if not self.exempt_loopback:
            return False
        try:
            return ipaddress.ip_address(address).is_loopback
        except ValueError:
            return False

    @staticmethod
    def _bucket(table: OrderedDict[str, TokenBucket], address: str, rate: float, burst: float) -> TokenBucket:
        bucket = table.get(address)
        if bucket is None:
            bucket = table[address] = TokenBucket(rate, burst)
            while len(table) > MAX_TRACKED:
                table.popitem(last=False)
        table.move_to_end(address)
        return bucket

    def connect(self, address: str) -> str | None:
        """Admit a new connection (call ``disconnect`` when it ends) or say which limit refused it."""
        if self._exempt(address):
            return None
        if self.open[address] >= self.max_connections:
            self.refused["connections"] += 1
            return f"at most {self.max_connections} connections per address"
        if not self._bucket(self._connects, address, self.connects_per_second, self.connect_burst).take():
            self.refused["connect_rate"] += 1
            return f"at most {self.connects_per_second:g} new connections per second per address"
        self.open[address] += 1
        return None

    def disconnect(self, address: str) -> None:
        if self.open.get(address, 0) > 0:
            self.open[address] -= 1
            if self.open[address] == 0:
                del self.open[address]

    def upload(self, address: str) -> str | None:
        if self._exempt(address):
            return None
        if not self._bucket(self._uploads, address, self.uploads_per_minute / 60.0, max(1.0, self.uploads_per_minute)).take():
            self.refused["uploads"] += 1
            return f"at most {self.uploads_per_minute:g} uploads per minute per address"
        return None
