"""Local swarms for the demo, tests and benchmarks: an in-process server and peer subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from signaling.app import default_browser_dir, make_app
from signaling.config import ServerConfig

from .prepare import PREPARE_COMMAND


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server(data_dir: Path, port: int = 0, **overrides: Any) -> tuple[web.AppRunner, str]:
    """Start the signaling server on 127.0.0.1; return its runner and base URL."""
    port = port or free_port()
    overrides.setdefault("prepare_command", PREPARE_COMMAND)
    config = ServerConfig(data_dir=data_dir, browser_dir=default_browser_dir(), **overrides)
    runner = web.AppRunner(make_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@dataclass
class PeerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    metrics: Path
    log: Path
    _offset: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def poll_metrics(self) -> list[dict[str, Any]]:
        """Rows appended since the last call (also kept in ``rows``)."""
        if not self.metrics.exists():
            return []
        with self.metrics.open() as f:
            f.seek(self._offset)
            text = f.read()
        complete = text[: text.rfind("\n") + 1]
        self._offset += len(complete.encode())
        new = [json.loads(line) for line in complete.splitlines() if line.strip()]
        self.rows += new
        return new

    @property
    def latest(self) -> dict[str, Any] | None:
        self.poll_metrics()
        return self.rows[-1] if self.rows else None

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> int | None:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), timeout)
        except TimeoutError:
            self.proc.kill()
            return None


def spawn_peer(join_url: str, workdir: Path, name: str, *extra: str, prefix: list[str] | None = None,
               ice_address: str | None = "127.0.0.1", env: dict[str, str] | None = None) -> PeerProcess:  # fmt: skip
    """Start ``swarm join`` as a subprocess with files under ``workdir``.

    ``ice_address`` is the loopback convenience (None: aioice's own host candidates, as on a
    real network); ``prefix`` runs it inside another command, e.g. ``ip netns exec NS``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    metrics, log = workdir / f"{name}.jsonl", workdir / f"{name}.log"
    ice = ["--ice-address", ice_address] if ice_address else []
    cmd = [*(prefix or []), sys.executable, "-m", "apps.cli", "join", join_url, *ice,
           "--identity", str(workdir / f"{name}.key"), "--metrics-out", str(metrics),
           "--checkpoint-dir", str(workdir / f"{name}-checkpoint"), *([] if os.environ.get("SWARM_PEER_VERBOSE") else ["--quiet"]), *extra]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return PeerProcess(name, proc, metrics, log)
