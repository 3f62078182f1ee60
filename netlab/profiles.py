"""WAN link profiles: delay, jitter, rate and loss of one home's link to the internet core.

Every figure is *per direction*: a profile with ``delay_ms=20`` delays each packet 20 ms on the
way up and 20 ms on the way down, so a ping through one such link sees a 40 ms round trip.
Two homes talking to each other cross both of their links.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: netem's ``limit`` and the userspace shaper's queue bound, in packets per direction. The
#: default netem limit (1000) drops almost everything at 50 Mbit/s with 60 ms of delay; 10000
#: packets covers the bandwidth-delay product of every profile here with room to spare.
QUEUE_LIMIT_PACKETS = 10_000


@dataclass(frozen=True)
class LinkProfile:
    """One WAN link, symmetric: the same shaping applies to upload and download.

    name: key in ``PROFILES``.
    delay_ms: one-way delay in milliseconds, applied in each direction (RTT = 2 x delay_ms).
    jitter_ms: +/- milliseconds, uniform, added to each packet's delay; packets are never reordered.
    rate_mbit: bandwidth in Mbit/s (10^6 bit/s) per direction; None means unlimited.
    loss_pct: percent of packets dropped at random, in each direction independently.
    description: one line for tables and docs.
    """

    name: str
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_mbit: float | None = None
    loss_pct: float = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        for field in ("delay_ms", "jitter_ms", "loss_pct"):
            if getattr(self, field) < 0:
                raise ValueError(f"LinkProfile {self.name!r}: {field} must be >= 0, got {getattr(self, field)}")
        if self.loss_pct >= 100:
            raise ValueError(f"LinkProfile {self.name!r}: loss_pct must be < 100, got {self.loss_pct}")
        if self.rate_mbit is not None and self.rate_mbit <= 0:
            raise ValueError(f"LinkProfile {self.name!r}: rate_mbit must be > 0 or None (unlimited), got {self.rate_mbit}")

    @property
    def rtt_ms(self) -> float:
        """Round-trip time in milliseconds added by this link alone (both directions)."""
        return 2 * self.delay_ms

    @property
    def shaped(self) -> bool:
        """False when the link is a plain veth with nothing to emulate."""
        return bool(self.delay_ms or self.jitter_ms or self.rate_mbit or self.loss_pct)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, including the derived ``rtt_ms``, for benchmark records."""
        return {**asdict(self), "rtt_ms": self.rtt_ms}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkProfile:
        """Inverse of ``to_dict``; derived keys (``rtt_ms``) are ignored, unknown keys refused."""
        fields = {k: v for k, v in data.items() if k != "rtt_ms"}
        unknown = set(fields) - {"name", "delay_ms", "jitter_ms", "rate_mbit", "loss_pct", "description"}
        if unknown:
            raise ValueError(f"LinkProfile: unknown keys {sorted(unknown)} in {data}")
        return cls(**fields)


PROFILES: dict[str, LinkProfile] = {
    p.name: p
    for p in (
        LinkProfile("lan", description="no shaping: a plain veth, sub-millisecond"),
        LinkProfile("broadband", 20, 2, 50, 0, "home fibre/cable: ~40 ms RTT, 50 Mbit/s"),
        LinkProfile("mobile", 60, 10, 10, 1, "4G: ~120 ms RTT, 10 Mbit/s, 1% loss each way"),
        LinkProfile("intercontinental", 125, 5, 20, 0, "across an ocean: ~250 ms RTT, 20 Mbit/s"),
    )
}


def resolve_profile(profile: str | LinkProfile) -> LinkProfile:
    """A profile object from a name in ``PROFILES`` (or the object itself)."""
    if isinstance(profile, LinkProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown link profile {profile!r}; known: {', '.join(PROFILES)}") from None


def load_profiles(path: str | Path) -> dict[str, LinkProfile]:
    """Profiles from a JSON file holding a list of ``to_dict()`` objects (or a name -> object map)."""
    data = json.loads(Path(path).read_text())
    items = data.values() if isinstance(data, dict) else data
    loaded = [LinkProfile.from_dict(item) for item in items]
    return {p.name: p for p in loaded}
