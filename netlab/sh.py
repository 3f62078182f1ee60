"""The only place netlab runs ``ip``, ``iptables``, ``tc`` and ``sysctl``: argv lists, never a shell."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence


class NetlabError(RuntimeError):
    """A network-setup command failed; the message names the command, its stderr and a remedy."""


def _hint(stderr: str) -> str:
    if "Operation not permitted" in stderr or "Permission denied" in stderr:
        return " (netlab needs root: CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    if "iptables" in stderr and "not found" in stderr:
        return " (install Debian's iptables package)"
    return ""


def sh(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command, output captured; raise ``NetlabError`` on failure when ``check``."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise NetlabError(f"{argv[0]} not found: install iproute2 and iptables (Debian packages)") from exc
    if check and proc.returncode != 0:
        err = proc.stderr.strip()
        raise NetlabError(f"{' '.join(argv)} failed ({proc.returncode}): {err}{_hint(err)}")
    return proc


def in_ns(ns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed to run inside network namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    out = sh(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_root_links() -> list[str]:
    """Interface names in the root namespace."""
    out = sh(["ip", "-o", "link", "show"]).stdout
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def namespace_pids(ns: str) -> list[int]:
    """Processes whose network namespace is ``ns`` (``ip netns pids``)."""
    proc = sh(["ip", "netns", "pids", ns], check=False)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal ``pid``, ignoring one that already exited."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def delete_namespace(ns: str) -> None:
    """Kill every process left in ``ns``, then delete it (its interfaces and rules go with it).

    A namespace whose processes survive is only unnamed by ``ip netns del``, not destroyed, and
    its veth peers would stay up in the core: so the kill comes first.
    """
    for _ in range(3):
        pids = namespace_pids(ns)
        if not pids:
            break
        for pid in pids:
            kill_pid(pid)
        time.sleep(0.02)
    sh(["ip", "netns", "del", ns], check=False)


def process_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks, None when it is gone or a zombie.

    Start time plus pid names a process uniquely, so a recycled pid is not mistaken for an owner.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])
