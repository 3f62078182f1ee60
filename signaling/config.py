"""Limits and settings of the signaling server, with their defaults in one place."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Path("swarm-data")
    public_url: str | None = Field(default=None, description="base URL used in join links")
    max_peers_per_swarm: int = 256
    max_message_bytes: int = 128 * 1024  # larger signaling messages get an error reply
    max_frame_bytes: int = 1024 * 1024  # beyond this aiohttp closes the socket (1009)
    join_timeout_s: float = 10.0  # time to answer the challenge
    idle_timeout_s: float = 120.0  # no message (clients ping every 30 s) -> disconnect
    heartbeat_s: float = 30.0
    max_upload_bytes: int = 256 * 1024 * 1024
    max_swarms: int = 1000
    messages_per_second: float = 200.0  # token bucket per connection
    burst: int = 400
    max_connections_per_address: int = 64
    connects_per_second_per_address: float = 5.0
    connect_burst_per_address: int = 40
    uploads_per_minute_per_address: float = 10.0
    exempt_loopback: bool = True  # behind a reverse proxy every client is 127.0.0.1: limit at the proxy
    browser_dir: Path | None = None  # browser_peer/ to serve at /peer/ (issue 3)
