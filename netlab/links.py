"""Links between namespaces: plain veth pairs, and WAN links shaped by netem or the userspace shaper.

A WAN link joins an *inside* end (a home router's ``wan``, or a public host's ``eth0``) to an
*outside* port on the core bridge. Shaping applies to both directions: egress of the inside end
is the upload, egress of the outside end the download.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .profiles import QUEUE_LIMIT_PACKETS, LinkProfile
from .sh import NetlabError, sh

SHAPER_SCRIPT = Path(__file__).with_name("shaper.py")
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000

_netem_available: bool | None = None


@dataclass(frozen=True)
class End:
    """One end of a link: interface ``ifname`` in namespace ``ns``."""

    ns: str
    ifname: str


def veth(a: End, b: End) -> None:
    """A veth pair created directly in its two namespaces (it never appears in the root one)."""
    sh(["ip", "link", "add", "name", a.ifname, "netns", a.ns, "type", "veth", "peer", "name", b.ifname, "netns", b.ns])


def netem_argv(end: End, profile: LinkProfile) -> list[str]:
    """``tc`` argv putting ``profile`` on the egress of ``end``."""
    argv = ["tc", "-n", end.ns, "qdisc", "replace", "dev", end.ifname, "root", "netem"]
    argv += ["limit", str(QUEUE_LIMIT_PACKETS), "delay", f"{profile.delay_ms:g}ms", f"{profile.jitter_ms:g}ms"]
    if profile.rate_mbit:
        argv += ["rate", f"{profile.rate_mbit:g}mbit"]
    if profile.loss_pct:
        argv += ["loss", f"{profile.loss_pct:g}%"]
    return argv


def shaper_argv(profile: LinkProfile, inside_fd: int, outside_fd: int, seed: int | None) -> list[str]:
    """argv of the userspace shaper carrying ``profile`` between two TAP descriptors."""
    argv = [sys.executable, str(SHAPER_SCRIPT), "--inside", str(inside_fd), "--outside", str(outside_fd)]
    argv += ["--delay-ms", str(profile.delay_ms), "--jitter-ms", str(profile.jitter_ms)]
    argv += ["--rate-mbit", str(profile.rate_mbit or 0), "--loss-pct", str(profile.loss_pct)]
    argv += ["--limit", str(QUEUE_LIMIT_PACKETS)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    return argv


def netem_available(probe_ns: str) -> bool:
    """Whether this kernel has ``sch_netem``, probed once per process on ``lo`` of ``probe_ns``."""
    global _netem_available
    if _netem_available is None:
        probe = sh(["tc", "-n", probe_ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], check=False)
        _netem_available = probe.returncode == 0
        if _netem_available:
            sh(["tc", "-n", probe_ns, "qdisc", "del", "dev", "lo", "root"], check=False)
    return _netem_available


def open_tap(name: str) -> int:
    """Create TAP device ``name`` in the root namespace; it lives as long as the returned fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TAP | _IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise NetlabError(f"cannot create TAP {name}: {exc} (needs root and /dev/net/tun)") from exc
    return fd


def move_link(name: str, end: End) -> None:
    """Move root-namespace link ``name`` into ``end.ns`` and rename it ``end.ifname``."""
    sh(["ip", "link", "set", name, "netns", end.ns])
    sh(["ip", "-n", end.ns, "link", "set", name, "name", end.ifname])


@dataclass
class WanLink:
    """A home's link to the core, shaped by ``profile`` in both directions.

    kind: "veth" (unshaped profile), "netem" (veth with netem on both ends) or "userspace"
    (two TAP devices joined by ``shaper.py``; ``tap_names`` are their temporary root names).
    """

    inside: End
    outside: End
    profile: LinkProfile
    kind: str
    tap_names: tuple[str, str]
    shaper: subprocess.Popen[bytes] | None = None

    def create(self, seed: int | None = None) -> None:
        """Build the link; the ends are left down, unaddressed and unbridged."""
        if self.kind == "userspace":
            self._create_shaped_taps(seed)
            return
        veth(self.inside, self.outside)
        if self.kind == "netem":
            sh(netem_argv(self.inside, self.profile))
            sh(netem_argv(self.outside, self.profile))

    def _create_shaped_taps(self, seed: int | None) -> None:
        fds = [open_tap(self.tap_names[0])]
        try:
            fds.append(open_tap(self.tap_names[1]))
            self.shaper = subprocess.Popen(
                shaper_argv(self.profile, fds[0], fds[1], seed),
                pass_fds=fds, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            for fd in fds:
                os.close(fd)
        move_link(self.tap_names[0], self.inside)
        move_link(self.tap_names[1], self.outside)

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the shaper (closing its stdin asks it to exit; then SIGKILL)."""
        proc, self.shaper = self.shaper, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
