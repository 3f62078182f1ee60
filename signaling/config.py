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
    # POST /api/prepare runs this command with REQUEST.json OUT.json (``swarm serve``: python -m apps.prepare)
    prepare_command: list[str] | None = Field(default=None, max_length=16)
    prepare_timeout_s: float = Field(default=300.0, gt=0)
    # ICE for peers behind NATs (signaling.ice): the server's own STUN, and TURN credentials it issues
    stun_port: int | None = Field(default=None, ge=0, le=65535, description="UDP port of the STUN server; None: off")
    stun_bind: str = "0.0.0.0"  # address the STUN socket binds (the CLI uses --host)
    stun_host: str | None = None  # host name in the welcome's stun: URL (default: public_url's, else the request's)
    turn_urls: list[str] = Field(default_factory=list, max_length=8)  # e.g. turn:turn.example.org:3478
    turn_secret: str | None = Field(default=None, repr=False)  # coturn's static-auth-secret (use-auth-secret)
    turn_ttl_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
