"""coturn for tests: Debian's ``turnserver`` configured by ``swarm turn-config`` (use-auth-secret).

Not a test module. ``coturn()`` starts it with the generated config on one address (127.0.0.1,
or a network namespace's), waits until it listens and stops it on exit. ``allocate()`` asks
for a relay allocation with given credentials through aioice's TURN client, so a test can
show that coturn accepts the credentials the signaling server issues and refuses forged or
expired ones.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aioice import stun, turn

from signaling.ice import coturn_config


@contextmanager
def coturn(workdir: Path, secret_file: Path, *, ip: str, port: int, prefix: list[str] | None = None,
           loopback_peers: bool = False) -> Iterator[Path]:  # fmt: skip
    """Run coturn on ``ip:port`` (inside ``prefix``, e.g. ``ip netns exec NS``); yield its log file."""
    exe = shutil.which("turnserver")
    if exe is None:
        raise RuntimeError("coturn's turnserver is missing: run ./scripts/setup.sh --browser (it installs coturn)")
    low = 40000 + port % 20000
    conf, log = workdir / "turnserver.conf", workdir / "turnserver.log"
    conf.write_text(coturn_config(secret_file=secret_file, realm="gossip-swarm", listening_ip=ip, port=port,
                                  min_port=low, max_port=low + 200, loopback_peers=loopback_peers))  # fmt: skip
    cmd = [*(prefix or []), exe, "-c", str(conf), "--log-file", str(log), "--simple-log",
           "--pidfile", str(workdir / "turnserver.pid"), "--verbose"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not (log.exists() and "listener opened" in log.read_text(errors="replace").lower()):
            assert proc.poll() is None, f"turnserver exited: {log.read_text(errors='replace') if log.exists() else ''}"
            assert time.monotonic() < deadline, "turnserver did not start listening"
            time.sleep(0.1)
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def allocate(server: tuple[str, int], username: str, password: str) -> tuple[str, int] | None:
    """The relayed address coturn allocates for these credentials, or None if it refuses them."""
    try:
        transport, _ = await asyncio.wait_for(
            turn.create_turn_endpoint(asyncio.DatagramProtocol, server_addr=server, username=username, password=password),
            timeout=10,
        )
    except stun.TransactionFailed as exc:  # coturn answered with an error: 401 for bad credentials
        code = exc.response.attributes.get("ERROR-CODE", (0, ""))[0]
        if code == 401:
            return None
        raise
    relayed = transport.get_extra_info("sockname")
    transport.close()
    return (str(relayed[0]), int(relayed[1]))


if __name__ == "__main__":  # a probe to run inside a namespace: python tests/turn.py HOST PORT USERNAME PASSWORD
    import sys

    relayed = asyncio.run(allocate((sys.argv[1], int(sys.argv[2])), sys.argv[3], sys.argv[4]))
    print(f"allocated {relayed[0]}:{relayed[1]}" if relayed else "refused")
