"""``python -m netlab``: bring an emulated internet up by hand, run commands in it, clean up."""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from . import probe
from .internet import Home, Internet
from .nat import NatType
from .profiles import PROFILES, load_profiles
from .state import cleanup_stale, list_runs

HOME_SPEC = "NAME:NAT[:PROFILE[:HOSTS]]"


def parse_home(spec: str, default_hosts: int) -> Home:
    """``a:eim:broadband:2`` -> Home("a", NatType.EIM, "broadband", 2); PROFILE defaults to lan."""
    parts = spec.split(":")
    if not 2 <= len(parts) <= 4:
        raise argparse.ArgumentTypeError(f"--home {spec!r}: expected {HOME_SPEC}")
    try:
        nat = NatType(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--home {spec!r}: NAT must be one of {[n.value for n in NatType]}") from None
    profile = parts[2] if len(parts) > 2 else "lan"
    hosts = int(parts[3]) if len(parts) > 3 else (1 if nat is NatType.NONE else default_hosts)
    try:
        return Home(parts[0], nat, profile, hosts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--home {spec!r}: {exc}") from None


def print_table(net: Internet) -> None:
    rows = [("host", "namespace", "ip", "behind")]
    rows.append((net.server.name, net.server.namespace, net.server.ip, "public"))
    rows += [(h.name, h.namespace, h.ip, "public") for h in net.public_hosts.values()]
    for home in net.homes.values():
        behind = f"{home.nat.value} NAT {home.public_ip}" if home.router else "public (no NAT)"
        if home.router:
            rows.append((home.router.name, home.router.namespace, f"{home.public_ip} / {home.gateway}", "router"))
        rows += [(h.name, h.namespace, h.ip, f"{behind}, {home.profile.name}") for h in home.hosts]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    first = next(iter(net.homes.values()), None)
    print(f"\nrun {net.run_id}, link shaping: {net.shaper}. Try:")
    print(f"  ip netns exec {net.server.namespace} python3 netlab/probe.py udp-echo 3478 3479")
    if first:
        host = first.hosts[0]
        print(f"  ip netns exec {host.namespace} python3 netlab/probe.py udp-mapped {net.server.ip}:3478 {net.server.ip}:3479")
        print(f"  ip netns exec {host.namespace} python3 netlab/probe.py udp-rtt {net.server.ip} 3478")
        print(f"  python3 -m netlab exec {host.namespace} -- ip route")
    print("Ctrl-C tears everything down.", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    try:
        homes = [parse_home(spec, args.hosts) for spec in args.home]
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"netlab up: {exc}") from None
    with Internet(homes, shaper=args.shaper, seed=args.seed) as net:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(net.to_dict(), f, indent=1)
        print_table(net)
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            print("\ntearing down", flush=True)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise SystemExit("netlab exec: give a command after --")
    os.execvp("ip", ["ip", "netns", "exec", args.namespace, *argv])


def cmd_cleanup(args: argparse.Namespace) -> int:
    removed = cleanup_stale()
    print(f"removed stale runs: {', '.join(removed)}" if removed else "nothing stale")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    for state, alive in list_runs():
        status = "alive" if alive else "stale"
        print(f"{state.run_id}  pid {state.pid} ({status})  {' '.join(state.namespaces)}")
    return 0


def measure_profile(net: Internet, home: str, nbytes: int) -> dict[str, Any]:
    """Median UDP round trip and one TCP transfer from ``home``'s host to the server."""
    host = net.homes[home].hosts[0]
    run = functools.partial(net.run, capture_output=True, text=True, check=True, timeout=120)
    rtt = json.loads(run(host, probe.command("udp-rtt", net.server.ip, "3478", "--count", "30",
                                             "--interval", "0.02")).stdout)
    sink = net.popen(net.server, probe.command("tcp-sink", "5001"), stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    run(host, probe.command("tcp-send", net.server.ip, "5001", "--bytes", str(nbytes), "--timeout", "60"))
    tcp = json.loads(sink.stdout.readline())
    sink.wait()
    profile = net.homes[home].profile
    return {"profile": profile.to_dict(), "udp_rtt_median_ms": rtt.get("median_ms"), "udp_rtt_min_ms": rtt.get("min_ms"),
            "udp_received": f"{rtt['received']}/{rtt['sent']}", "tcp_bytes": nbytes, "tcp_mbit_per_s": tcp["mbit_per_s"]}


def cmd_measure(args: argparse.Namespace) -> int:
    names = args.profile or list(PROFILES)
    rows = []
    for name in names:  # one topology per profile: the shaper of one does not load another's figure
        with Internet([Home("m", NatType.EIM, name)], shaper=args.shaper) as net:
            echo = net.popen(net.server, probe.command("udp-echo", "3478"), stdout=subprocess.PIPE, text=True)
            assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
            rows.append({**measure_profile(net, "m", args.bytes), "shaper": net.homes["m"].wan.kind})
    print(f"{'profile':<17}{'link':<10}{'RTT target':>11}{'median':>8}{'min':>8}{'received':>10}{'TCP Mbit/s':>12}{'of':>6}")
    for row in rows:
        p = row["profile"]
        rate = f"{p['rate_mbit']:g}" if p["rate_mbit"] else "-"
        print(f"{p['name']:<17}{row['shaper']:<10}{p['rtt_ms']:>11g}{row['udp_rtt_median_ms']:>8.1f}"
              f"{row['udp_rtt_min_ms']:>8.1f}{row['udp_received']:>10}{row['tcp_mbit_per_s']:>12.1f}{rate:>6}")
    if args.json:
        record = {"command": " ".join(["python -m netlab", *sys.argv[1:]]), "machine": platform.platform(),
                  "cpus": os.cpu_count(), "python": platform.python_version(), "results": rows}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([p.to_dict() for p in PROFILES.values()], indent=1))
        return 0
    print(f"{'name':<17}{'RTT ms':>7}{'one-way':>9}{'jitter':>8}{'Mbit/s':>8}{'loss %':>8}  description")
    for p in PROFILES.values():
        rate = f"{p.rate_mbit:g}" if p.rate_mbit else "-"
        print(f"{p.name:<17}{p.rtt_ms:>7g}{p.delay_ms:>9g}{p.jitter_ms:>8g}{rate:>8}{p.loss_pct:>8g}  {p.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m netlab", description=__doc__)
    parser.add_argument("--profiles-file", metavar="JSON",
                        help="extra link profiles (a JSON list of LinkProfile.to_dict() objects), usable by name")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build a topology, print its hosts, wait for Ctrl-C, tear it down")
    up.add_argument("--home", action="append", default=[], metavar=HOME_SPEC,
                    help="a home, repeatable: NAT is eim|symmetric|none, PROFILE a profile name (default lan)")
    up.add_argument("--hosts", type=int, default=1, help="hosts per home when the --home spec gives none (default 1)")
    up.add_argument("--shaper", choices=["auto", "netem", "userspace"], default="auto",
                    help="how shaped links are emulated: kernel netem, the userspace TAP shaper, or auto")
    up.add_argument("--seed", type=int, default=None, help="seed for the userspace shaper's loss and jitter")
    up.add_argument("--json", metavar="FILE", help="also write the topology (Internet.to_dict()) to FILE")
    up.set_defaults(func=cmd_up)
    ex = sub.add_parser("exec", help="run a command inside a namespace: exec NAMESPACE -- CMD...")
    ex.add_argument("namespace", help="namespace name, as printed by `up`")
    ex.add_argument("argv", nargs=argparse.REMAINDER, help="the command, after --")
    ex.set_defaults(func=cmd_exec)
    cl = sub.add_parser("cleanup", help="remove namespaces, links and state of runs whose owner died")
    cl.set_defaults(func=cmd_cleanup)
    rn = sub.add_parser("runs", help="list runs with a state file under /run/netlab and whether they are alive")
    rn.set_defaults(func=cmd_runs)
    me = sub.add_parser("measure", help="measure each profile here: UDP RTT and one TCP transfer, home to server")
    me.add_argument("--profile", action="append", metavar="NAME", help="profile to measure, repeatable (default: all)")
    me.add_argument("--bytes", type=int, default=8_000_000, help="bytes of the TCP transfer, slow start included (default 8000000)")
    me.add_argument("--shaper", choices=["auto", "netem", "userspace"], default="auto", help="as for `up`")
    me.add_argument("--json", metavar="FILE", help="also write the figures, command and machine to FILE")
    me.set_defaults(func=cmd_measure)
    pr = sub.add_parser("profiles", help="list the WAN link profiles")
    pr.add_argument("--json", action="store_true", help="print them as JSON (LinkProfile.to_dict())")
    pr.set_defaults(func=cmd_profiles)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.profiles_file:
        PROFILES.update(load_profiles(args.profiles_file))
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
