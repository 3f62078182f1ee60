"""Settings of one headless peer, with their defaults in one place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from protocols.signaling import IceServer


class PeerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: str = Field(description="base URL of the signaling server, e.g. http://127.0.0.1:8765")
    swarm_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    identity: Path | None = None  # default: ~/.config/gossip-swarm/identity.key
    ice_addresses: list[str] | None = None  # host candidate addresses (127.0.0.1 for loopback meshes)
    ice_servers: list[IceServer] | None = None  # default: the swarm's
    ice_relay_only: bool = False  # only TURN relay candidates (needs a TURN server in ice_servers)
    degree: int | None = None  # default: the swarm's gossip.degree
    data: Path | None = None  # local .npz (x, y) instead of the published shard
    metrics_out: Path | None = None
    checkpoint_dir: Path | None = None  # default: ~/.local/share/gossip-swarm/<swarm>/<peer>
    checkpoint_interval_s: float = 60.0
    max_steps: int | None = None  # stop training after this many local steps (keeps gossiping)
    duration_s: float | None = None  # leave the swarm after this long
    eval_limit: int | None = None  # evaluate on the first N test examples (None: all)
    seed: int = 0
    progress: bool = True


def parse_join_url(url: str) -> tuple[str, str]:
    """``http(s)://host[:port][/prefix]/s/<swarm id>`` -> (server base URL, swarm id)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    head, sep, swarm_id = path.rpartition("/s/")
    if not sep or parts.scheme not in ("http", "https") or len(swarm_id) != 32:
        raise ValueError(f"{url!r} is not a join link; expected http(s)://HOST[:PORT]/s/<32 hex swarm id>")
    return f"{parts.scheme}://{parts.netloc}{head}", swarm_id


class JoinLink(NamedTuple):
    server: str  # base URL of the signaling server
    swarm_id: str
    publisher_pin: str | None  # the publisher's fingerprint (``#pk=``), None for an unpinned link


_PIN = re.compile(r"^[0-9a-f]{32}$")


def parse_join_link(url: str) -> JoinLink:
    """``http(s)://host[:port][/prefix]/s/<swarm id>[#pk=<publisher fingerprint>]``; the fragment never
    reaches the server. A ``pk`` that is not 32 hex characters is an error, not an unpinned link."""
    server, swarm_id = parse_join_url(url)
    values = parse_qs(urlsplit(url).fragment, keep_blank_values=True).get("pk")
    if values is None:
        return JoinLink(server, swarm_id, None)
    pin = values[-1].lower()
    if len(values) != 1 or not _PIN.match(pin):
        raise ValueError(f"the join link's #pk={values[-1]} is not a publisher fingerprint (32 hex characters)")
    return JoinLink(server, swarm_id, pin)


def pinned_join_url(join_url: str, publisher_fingerprint: str) -> str:
    """The join link with the publisher's fingerprint in its fragment (``#pk=``)."""
    return f"{join_url.split('#', 1)[0]}#pk={publisher_fingerprint}"


def ws_url(server: str) -> str:
    return server.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/") + "/ws"
