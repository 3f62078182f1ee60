"""An emulated internet in network namespaces: a public core, a server, and homes behind NATs.

    server 198.51.100.10 ──┐
    public hosts .20.. ────┤ core bridge (one L2 segment, no addresses, no routes off-box)
    router a 203.0.113.11 ─┤ ── wan link shaped by its profile ── router a ── LAN 10.0.1.0/24
    router b 203.0.113.12 ─┘                                        (hosts 10.0.1.10, .11, ...)

Both public ranges share the bridge with on-link routes (servers: ``203.0.113.0/24 dev eth0``,
routers: ``198.51.100.0/24 dev wan``), so nothing is routed by the core and no namespace has a
default route out of this machine. Nothing public has a route to 10.0.0.0/8.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Literal, Self

from .links import End, WanLink, netem_available, veth
from .nat import NatType, nat_rules, outage_rules
from .profiles import LinkProfile, resolve_profile
from .sh import delete_namespace, in_ns, kill_pid, process_start_time, sh
from .state import STATE_DIR, RunState, claim_run, cleanup_stale, remove_run

SERVER_IP = "198.51.100.10"
SERVERS_NET = ipaddress.ip_network("198.51.100.0/24")
HOMES_NET = ipaddress.ip_network("203.0.113.0/24")
FIRST_PUBLIC_HOST = 20  # auto-assigned public hosts: 198.51.100.20, .21, ...
MAX_HOMES = 200  # home k (1-based) has WAN 203.0.113.(10+k) and LAN 10.0.k.0/24
MAX_HOSTS = 200  # host i (0-based) of home k is 10.0.k.(10+i)
NAME_RE = re.compile(r"^[a-z]([a-z0-9]{0,6}[a-z])?$")  # ends in a letter: "a" + "0" never meets "a0"
ShaperKind = Literal["auto", "netem", "userspace"]


@dataclass(frozen=True)
class Host:
    """A machine: a network namespace with one address that matters.

    name: role inside the run ("srv", "a0", "ra"); namespace: its network namespace;
    ip: its address (a router's is its WAN address).
    """

    name: str
    namespace: str
    ip: str

    @property
    def exec_prefix(self) -> list[str]:
        """argv prefix that runs a command in this host: ``["ip", "netns", "exec", NS]``."""
        return in_ns(self.namespace, [])

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "namespace": self.namespace, "ip": self.ip}


@dataclass(frozen=True)
class Home:
    """What to build for one home: ``hosts`` machines behind one router of type ``nat``.

    profile: a name in ``PROFILES`` or a ``LinkProfile``; it shapes the home's WAN link.
    ``NatType.NONE`` puts a single host directly on the public segment (``hosts`` must be 1).
    """

    name: str
    nat: NatType = NatType.EIM
    profile: str | LinkProfile = "lan"
    hosts: int = 1

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"home name {self.name!r}: use 1-8 lowercase letters/digits, starting and ending with a letter")
        if not 1 <= self.hosts <= MAX_HOSTS:
            raise ValueError(f"home {self.name!r}: hosts must be 1..{MAX_HOSTS}, got {self.hosts}")
        if NatType(self.nat) is NatType.NONE and self.hosts != 1:
            raise ValueError(f"home {self.name!r}: NatType.NONE means one public host; got hosts={self.hosts}")
        resolve_profile(self.profile)


@dataclass
class HomeNet:
    """A built home. ``router`` is None for ``NatType.NONE`` (then ``hosts[0].ip == public_ip``)."""

    name: str
    index: int
    nat: NatType
    profile: LinkProfile
    public_ip: str
    subnet: str
    gateway: str | None
    router: Host | None
    hosts: list[Host]
    wan: WanLink
    wan_up: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "nat": self.nat.value, "profile": self.profile.to_dict(),
            "public_ip": self.public_ip, "subnet": self.subnet, "gateway": self.gateway,
            "router": self.router.to_dict() if self.router else None,
            "hosts": [h.to_dict() for h in self.hosts], "link": self.wan.kind,
        }


@dataclass
class _Tracked:
    proc: subprocess.Popen[Any]
    own_group: bool


class Internet:
    """Context manager that builds the topology on ``__enter__`` and removes all of it on exit.

    shaper: how shaped profiles are applied: "netem" (kernel qdisc), "userspace" (TAP devices and
    ``netlab/shaper.py``, for kernels without ``sch_netem``), or "auto" (netem when the kernel has
    it). seed: seeds the userspace shaper's loss and jitter (netem cannot be seeded).

    Once started: ``server`` (Host 198.51.100.10), ``homes`` (name -> HomeNet, in the order
    given), ``public_hosts`` (name -> Host), ``run_id`` (4 hex digits), ``prefix`` ("nl" + run_id,
    the start of every name), ``shaper`` (the kind in use: "netem" or "userspace").
    """

    def __init__(self, homes: Sequence[Home] = (), *, shaper: ShaperKind = "auto", seed: int | None = None) -> None:
        names = [h.name for h in homes]
        if len(set(names)) != len(names):
            raise ValueError(f"home names must be unique, got {names}")
        if len(homes) > MAX_HOMES:
            raise ValueError(f"at most {MAX_HOMES} homes, got {len(homes)}")
        self._specs = list(homes)
        self._shaper_choice = shaper
        self._seed = seed
        self.run_id = ""
        self.prefix = ""
        self.shaper = ""  # the kind in use once started: "netem" or "userspace"
        self.server: Host
        self.homes: dict[str, HomeNet] = {}
        self.public_hosts: dict[str, Host] = {}
        self._state: RunState | None = None
        self._tracked: list[_Tracked] = []
        self._old_handlers: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> Self:
        """Remove stale runs, claim a run id, build everything; on any failure, undo and re-raise."""
        if self._state is not None:
            raise RuntimeError("Internet already started")
        cleanup_stale()
        self._state = claim_run(os.getpid())
        self.run_id = self._state.run_id
        self.prefix = f"nl{self.run_id}"
        self._install_signal_handlers()
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill tracked processes, stop shapers, delete namespaces and the state file. Idempotent."""
        with self._lock:
            if self._closed or self._state is None:
                return
            self._closed = True
        ignoring = self._ignore_signals()
        try:
            self._kill_tracked()
            for home in self.homes.values():
                home.wan.stop()
            for ns in reversed(self._state.namespaces):
                delete_namespace(ns)
            remove_run(self._state)  # anything left: links in the root namespace, the file
        finally:
            atexit.unregister(self.close)
            self._restore_signal_handlers(ignoring)

    # ---- running things in hosts ------------------------------------------------------------

    def run(self, host: Host, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` of ``argv`` inside ``host``'s namespace (kwargs passed through)."""
        return subprocess.run(host.exec_prefix + list(argv), **kwargs)  # noqa: PLW1510 (check is the caller's)

    def popen(self, host: Host, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` of ``argv`` inside ``host``; killed (its process group) at exit.

        ``start_new_session`` defaults to True so that the whole group can be killed and a Ctrl-C
        meant for the owner does not reach the child before cleanup does.
        """
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(host.exec_prefix + list(argv), **kwargs)
        self._tracked.append(_Tracked(proc, bool(kwargs["start_new_session"])))
        return proc

    # ---- changing the network ---------------------------------------------------------------

    def set_wan(self, home_name: str, up: bool) -> None:
        """Black-hole a home's WAN in both directions (``up=False``) or restore it (``up=True``).

        The link stays up and the NAT keeps its conntrack mappings, as in an ISP outage: after a
        short outage the same public ports work again (UDP mappings time out after 30 s without
        a reply, 120 s for flows that had replies: Linux's nf_conntrack_udp_timeout{,_stream}).
        """
        home = self.homes[home_name]
        if home.wan_up == up:
            return
        for argv in outage_rules(home.wan.inside.ifname, "-D" if up else "-A"):
            sh(in_ns(home.wan.inside.ns, argv))
        home.wan_up = up

    def add_public_host(self, name: str, ip: str | None = None) -> Host:
        """A host on the public segment, like the server: ``ip`` in 198.51.100.0/24 (default: next free from .20).

        Its namespace is ``nl<id>-p<name>``; ``name`` follows the rules of home names.
        """
        if self._state is None or self._closed:
            raise RuntimeError("add_public_host needs a started Internet")
        if not NAME_RE.match(name) or name in self.public_hosts:
            raise ValueError(f"public host name {name!r}: must be new, 1-8 lowercase letters/digits, ending in a letter")
        addr = self._public_ip(ip)
        host = Host(name, f"{self.prefix}-p{name}", addr)
        self._record(host.namespace)
        self._public_host(host, f"p{len(self.public_hosts) + 1}")
        self.public_hosts[name] = host
        return host

    # ---- inspection --------------------------------------------------------------------------

    @property
    def hosts(self) -> list[Host]:
        """Every host: server, public hosts, then each home's hosts (routers not included)."""
        homes = [h for home in self.homes.values() for h in home.hosts]
        return [self.server, *self.public_hosts.values(), *homes]

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of this run, core included."""
        return list(self._state.namespaces) if self._state else []

    def to_dict(self) -> dict[str, Any]:
        """The topology as JSON-ready data, for benchmarks to record beside their figures."""
        return {
            "run_id": self.run_id, "shaper": self.shaper, "server": self.server.to_dict(),
            "public_hosts": [h.to_dict() for h in self.public_hosts.values()],
            "homes": [home.to_dict() for home in self.homes.values()],
        }

    # ---- building ----------------------------------------------------------------------------

    def _build(self) -> None:
        core = f"{self.prefix}-core"
        self._record(core)
        self._namespace(core)
        sh(["ip", "-n", core, "link", "add", "br0", "type", "bridge"])
        sh(["ip", "-n", core, "link", "set", "br0", "up"])
        self.shaper = self._pick_shaper(core)
        self.server = Host("srv", f"{self.prefix}-srv", SERVER_IP)
        self._record(self.server.namespace)
        self._public_host(self.server, "srv")
        for index, spec in enumerate(self._specs, start=1):
            self._home(spec, index)

    def _pick_shaper(self, core: str) -> str:
        choice = self._shaper_choice
        if choice == "auto":
            return "netem" if netem_available(core) else "userspace"
        if choice == "netem" and not netem_available(core):
            raise RuntimeError("shaper='netem' but this kernel has no sch_netem; use 'userspace' or 'auto'")
        return choice

    def _record(self, namespace: str = "", link: str = "") -> None:
        """Add names to the state file *before* creating them, so a crash leaves nothing unnamed."""
        assert self._state is not None
        if namespace:
            self._state.namespaces.append(namespace)
        if link:
            self._state.links.append(link)
        self._state.save(STATE_DIR)

    def _namespace(self, ns: str) -> None:
        """A namespace with ``lo`` up and IPv6 off (the emulated internet is IPv4 only)."""
        sh(["ip", "netns", "add", ns])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(in_ns(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]))

    def _attach(self, port: str) -> None:
        core = f"{self.prefix}-core"
        sh(["ip", "-n", core, "link", "set", port, "master", "br0"])
        sh(["ip", "-n", core, "link", "set", port, "up"])

    def _address(self, end: End, cidr: str, onlink: str) -> None:
        """Address ``end``, bring it up, and route the *other* public range on-link."""
        sh(["ip", "-n", end.ns, "addr", "add", cidr, "dev", end.ifname])
        sh(["ip", "-n", end.ns, "link", "set", end.ifname, "up"])
        sh(["ip", "-n", end.ns, "route", "add", onlink, "dev", end.ifname])

    def _public_host(self, host: Host, port: str) -> None:
        self._namespace(host.namespace)
        end = End(host.namespace, "eth0")
        veth(end, End(f"{self.prefix}-core", port))
        self._attach(port)
        self._address(end, f"{host.ip}/{SERVERS_NET.prefixlen}", str(HOMES_NET))

    def _public_ip(self, ip: str | None) -> str:
        taken = {self.server.ip, *(h.ip for h in self.public_hosts.values())}
        if ip is None:
            free = (str(SERVERS_NET[n]) for n in range(FIRST_PUBLIC_HOST, 255) if str(SERVERS_NET[n]) not in taken)
            return next(free)
        addr = ipaddress.ip_address(ip)
        if addr not in SERVERS_NET or addr in (SERVERS_NET.network_address, SERVERS_NET.broadcast_address) or ip in taken:
            raise ValueError(f"public host ip {ip}: must be a free host address in {SERVERS_NET}")
        return ip

    def _home(self, spec: Home, index: int) -> HomeNet:
        nat, profile = NatType(spec.nat), resolve_profile(spec.profile)
        public_ip = str(HOMES_NET[10 + index])
        direct = nat is NatType.NONE
        router = None if direct else Host(f"r{spec.name}", f"{self.prefix}-r{spec.name}", public_ip)
        lan = ipaddress.IPv4Network(f"10.0.{index}.0/24")
        hosts = [
            Host(f"{spec.name}{i}", f"{self.prefix}-{spec.name}{i}", public_ip if direct else str(lan[10 + i]))
            for i in range(spec.hosts)
        ]
        inside = End(hosts[0].namespace, "eth0") if direct else End(router.namespace, "wan")  # type: ignore[union-attr]
        kind = self.shaper if profile.shaped else "veth"
        taps = (f"{self.prefix}t{index}i", f"{self.prefix}t{index}o")
        link = WanLink(inside, End(f"{self.prefix}-core", f"h{index}"), profile, kind, taps)
        home = HomeNet(spec.name, index, nat, profile, public_ip, str(lan), None if direct else str(lan[1]),
                       router, hosts, link)
        self.homes[spec.name] = home  # before creating, so close() stops its shaper on failure
        for h in ([router] if router else []) + hosts:
            self._record(h.namespace)
        if kind == "userspace":
            for tap in taps:
                self._record(link=tap)
        for h in ([router] if router else []) + hosts:
            self._namespace(h.namespace)
        link.create(None if self._seed is None else self._seed * 1000 + index)
        if link.shaper is not None:
            self._record_helper(link.shaper.pid)
        self._attach(link.outside.ifname)
        self._address(inside, f"{public_ip}/{HOMES_NET.prefixlen}", str(SERVERS_NET))
        if router is not None:
            self._router(home, router, lan)
        return home

    def _record_helper(self, pid: int) -> None:
        assert self._state is not None
        self._state.helpers.append((pid, process_start_time(pid)))
        self._state.save(STATE_DIR)

    def _router(self, home: HomeNet, router: Host, lan: ipaddress.IPv4Network) -> None:
        """LAN bridge, one veth per host with a default route via the router, forwarding, NAT."""
        ns = router.namespace
        sh(["ip", "-n", ns, "link", "add", "lan", "type", "bridge"])
        sh(["ip", "-n", ns, "addr", "add", f"{home.gateway}/{lan.prefixlen}", "dev", "lan"])
        sh(["ip", "-n", ns, "link", "set", "lan", "up"])
        for i, host in enumerate(home.hosts):
            port = f"h{i}"
            veth(End(host.namespace, "eth0"), End(ns, port))
            sh(["ip", "-n", ns, "link", "set", port, "master", "lan"])
            sh(["ip", "-n", ns, "link", "set", port, "up"])
            sh(["ip", "-n", host.namespace, "addr", "add", f"{host.ip}/{lan.prefixlen}", "dev", "eth0"])
            sh(["ip", "-n", host.namespace, "link", "set", "eth0", "up"])
            sh(["ip", "-n", host.namespace, "route", "add", "default", "via", str(home.gateway)])
        sh(in_ns(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
        for argv in nat_rules(home.nat, "wan"):
            sh(in_ns(ns, argv))

    # ---- processes and signals ---------------------------------------------------------------

    def _kill_tracked(self, grace_s: float = 1.0) -> None:
        """SIGTERM every tracked process group still running, SIGKILL what remains after ``grace_s``."""
        alive = [t for t in self._tracked if t.proc.poll() is None]
        for t in alive:
            self._signal(t, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for t in alive:
            try:
                t.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(t, signal.SIGKILL)
                t.proc.wait()
        for t in self._tracked:  # children of exited group leaders may linger in the group
            if t.own_group:
                self._signal(t, signal.SIGKILL)

    @staticmethod
    def _signal(t: _Tracked, sig: int) -> None:
        try:
            if t.own_group:
                os.killpg(t.proc.pid, sig)
            else:
                kill_pid(t.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _install_signal_handlers(self) -> None:
        """Turn SIGTERM/SIGHUP (and SIGINT if it is not already KeyboardInterrupt) into exceptions.

        Only in the main thread, only over default handlers: a handler someone else installed
        (asyncio's runner, for one) is their own exit path and stays.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                self._old_handlers[sig] = signal.signal(sig, _raise_on_signal)

    def _ignore_signals(self) -> dict[int, Any]:
        """Hold off SIGINT/SIGTERM/SIGHUP while tearing down; returns the handlers to put back."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def _restore_signal_handlers(self, during_close: dict[int, Any]) -> None:
        for sig, handler in during_close.items():
            signal.signal(sig, self._old_handlers.get(sig, handler) if handler is _raise_on_signal else handler)
        self._old_handlers.clear()


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGINT raises KeyboardInterrupt, others SystemExit(128 + signum): ``with`` blocks unwind."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)

