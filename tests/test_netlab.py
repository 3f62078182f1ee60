"""netlab against the real kernel: NAT mapping and filtering, link shaping, outages, cleanup.

Every test builds its own Internet and checks after exit that nothing with its prefix is left.
Probes run in the namespaces as small stdlib scripts (netlab/probe.py) that print JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netlab import PROFILES, Home, Internet, LinkProfile, NatType, cleanup_stale, probe
from netlab.links import End, netem_argv
from netlab.nat import nat_rules
from netlab.sh import list_namespaces, list_root_links, process_start_time
from netlab.state import STATE_DIR, RunState

REPO = Path(__file__).resolve().parents[1]
def _require_root() -> None:
    """The emulated internet is a core test bed: missing prerequisites fail, they never skip."""
    if os.geteuid() != 0 or shutil.which("iptables") is None or shutil.which("ip") is None:
        raise RuntimeError("netlab needs root, iproute2 and iptables: run the tests as root after ./scripts/setup.sh --browser")


needs_root = pytest.mark.usefixtures("_root")


@pytest.fixture
def _root() -> None:
    _require_root()


def leftovers(prefix: str) -> list[str]:
    return [n for n in list_namespaces() + list_root_links() if n.startswith(prefix)]


def root_network() -> tuple[str, str]:
    """The root namespace's addresses and routes: netlab must never change them."""
    addrs = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    return addrs, routes


@contextlib.contextmanager
def internet(*homes: Home, **kwargs: Any) -> Iterator[Internet]:
    """An Internet that must leave no namespace, root link or state file behind."""
    net = Internet(homes, **kwargs)
    with net:
        yield net
    assert leftovers(net.prefix) == []
    assert not (STATE_DIR / f"{net.run_id}.json").exists()


def udp_echo(net: Internet, *ports: int) -> subprocess.Popen[str]:
    """udp-echo on the server, returned once it has bound its ports."""
    proc = net.popen(net.server, probe.command("udp-echo", *map(str, ports)), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def probe_json(net: Internet, host: Any, *args: str) -> dict[str, Any]:
    out = net.run(host, probe.command(*args), capture_output=True, text=True, check=True, timeout=30).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def rtt(net: Internet, host: Any, count: int = 10, timeout: float = 2.0) -> dict[str, Any]:
    return probe_json(net, host, "udp-rtt", net.server.ip, "3478", "--count", str(count),
                      "--interval", "0.01", "--timeout", str(timeout))


# ---- pure parts: no root needed ---------------------------------------------------------------


def test_profiles_round_trip_through_json() -> None:
    for profile in PROFILES.values():
        assert LinkProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    assert PROFILES["broadband"].rtt_ms == 40 and PROFILES["mobile"].loss_pct == 1
    assert not PROFILES["lan"].shaped and PROFILES["intercontinental"].rtt_ms == 250
    with pytest.raises(ValueError, match="unknown keys"):
        LinkProfile.from_dict({"name": "x", "delay": 3})


def test_netem_command_has_a_limit_for_the_rate() -> None:
    argv = netem_argv(End("ns", "wan"), PROFILES["mobile"])
    assert argv[:8] == ["tc", "-n", "ns", "qdisc", "replace", "dev", "wan", "root"]
    assert argv[argv.index("limit") + 1] == "10000"
    assert argv[argv.index("delay") + 1:argv.index("delay") + 3] == ["60ms", "10ms"]
    assert argv[argv.index("rate") + 1] == "10mbit" and argv[argv.index("loss") + 1] == "1%"


def test_nat_rules_per_type() -> None:
    assert nat_rules(NatType.NONE, "wan") == []
    assert nat_rules(NatType.EIM, "wan")[0][-1] == "MASQUERADE"
    assert nat_rules(NatType.SYMMETRIC, "wan")[0][-2:] == ["MASQUERADE", "--random-fully"]


def test_home_names_cannot_collide() -> None:
    for bad in ("a0", "A", "0a", "toolongname", "a-b"):
        with pytest.raises(ValueError):
            Home(bad)
    with pytest.raises(ValueError, match="one public host"):
        Home("pub", NatType.NONE, hosts=2)
    with pytest.raises(ValueError, match="unknown link profile"):
        Home("a", profile="dialup")


# ---- the real thing ---------------------------------------------------------------------------


@needs_root
def test_home_host_reaches_server_through_nat_and_stays_private() -> None:
    before = root_network()
    with internet(Home("a", NatType.EIM, hosts=2)) as net:
        home = net.homes["a"]
        a0, a1 = home.hosts
        assert (a0.ip, a1.ip, home.public_ip, home.gateway) == ("10.0.1.10", "10.0.1.11", "203.0.113.11", "10.0.1.1")
        assert a0.exec_prefix == ["ip", "netns", "exec", a0.namespace]
        echo = udp_echo(net, 3478)
        seen = probe_json(net, a0, "udp-mapped", f"{net.server.ip}:3478")["seen"][f"{net.server.ip}:3478"]
        assert seen.split(":")[0] == home.public_ip  # the server sees the router, not 10.0.1.10

        sink = net.popen(net.server, probe.command("tcp-sink", "5001"), stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        probe_json(net, a0, "tcp-send", net.server.ip, "5001", "--bytes", "100000")
        received = json.loads(sink.stdout.readline())
        assert received["bytes"] == 100000 and received["peer"].split(":")[0] == home.public_ip

        # Nothing public knows a way to 10.0.0.0/8 ...
        route = net.run(net.server, ["ip", "route", "get", a0.ip], capture_output=True, text=True, check=False)
        assert route.returncode != 0 and "unreachable" in route.stderr
        assert net.run(net.server, ["ip", "route"], capture_output=True, text=True, check=True).stdout.count("10.0.") == 0
        core = subprocess.run(["ip", "-n", f"{net.prefix}-core", "-4", "route"], capture_output=True, text=True, check=True)
        assert core.stdout.strip() == ""
        assert root_network() == before
        # ... and a forged route does not help: the router drops what the inside did not ask for,
        # while the same echo answers a neighbour on the LAN.
        private_echo = net.popen(a0, probe.command("udp-echo", "4000"), stdout=subprocess.PIPE, text=True)
        assert private_echo.stdout is not None and private_echo.stdout.readline().strip() == "ready"
        net.run(net.server, ["ip", "route", "add", "10.0.0.0/8", "via", home.public_ip], check=True)
        forged = probe_json(net, net.server, "udp-rtt", a0.ip, "4000", "--count", "3", "--timeout", "0.3")
        assert forged["received"] == 0
        assert probe_json(net, a1, "udp-rtt", a0.ip, "4000", "--count", "3")["received"] == 3
    assert echo.poll() is not None and sink.poll() is not None and private_echo.poll() is not None
    assert root_network() == before


@needs_root
def test_eim_keeps_one_mapping_symmetric_maps_per_destination() -> None:
    with internet(Home("eim", NatType.EIM), Home("sym", NatType.SYMMETRIC), Home("pub", NatType.NONE)) as net:
        udp_echo(net, 3478, 3479)
        turn = net.add_public_host("turn")
        assert turn.ip == "198.51.100.20" and turn.namespace == f"{net.prefix}-pturn"
        echo = net.popen(turn, probe.command("udp-echo", "3478"), stdout=subprocess.PIPE, text=True)
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        targets = [f"{net.server.ip}:3478", f"{net.server.ip}:3479", f"{turn.ip}:3478"]

        def mappings(home: str) -> set[str]:
            seen = probe_json(net, net.homes[home].hosts[0], "udp-mapped", *targets)["seen"]
            assert all(seen.values()), seen
            return set(seen.values())

        eim, sym, pub = mappings("eim"), mappings("sym"), mappings("pub")
        assert len(eim) == 1 and eim.pop().startswith("203.0.113.11:")
        assert len(sym) == 3 and {s.split(":")[0] for s in sym} == {"203.0.113.12"}
        assert len(pub) == 1 and pub.pop().startswith(net.homes["pub"].hosts[0].ip + ":")


@needs_root
def test_hole_punching_matrix() -> None:
    """EIM<->EIM and symmetric<->public punch through; with a symmetric NAT and a filtering peer, nothing does."""
    homes = [Home("ea", NatType.EIM), Home("eb", NatType.EIM), Home("sa", NatType.SYMMETRIC),
             Home("sb", NatType.SYMMETRIC), Home("pub", NatType.NONE)]
    with internet(*homes) as net:
        udp_echo(net, 3478)
        pairs = {("ea", "eb"): True, ("ea", "pub"): True, ("sa", "pub"): True, ("ea", "sa"): False, ("sa", "sb"): False}
        procs = {}
        for pair in pairs:  # all pairs at once: about one second in total
            procs[pair] = [
                net.popen(net.homes[h].hosts[0], probe.command("udp-punch", net.server.ip, "3478", "--tries", "8"),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for h in pair
            ]
        for left, right in procs.values():
            assert left.stdout and right.stdout and left.stdin and right.stdin
            mapped = json.loads(left.stdout.readline())["mapped"], json.loads(right.stdout.readline())["mapped"]
            left.stdin.write(mapped[1] + "\n")
            right.stdin.write(mapped[0] + "\n")
            left.stdin.flush()
            right.stdin.flush()
        for pair, expected in pairs.items():
            got = [bool(json.loads(p.stdout.readline())["received_from"]) for p in procs[pair] if p.stdout]
            assert got == [expected, expected], pair


@needs_root
def test_profile_rtt_is_applied() -> None:
    with internet(Home("bb", NatType.EIM, "broadband"), Home("lan", NatType.EIM, "lan")) as net:
        udp_echo(net, 3478)
        broadband = rtt(net, net.homes["bb"].hosts[0], count=20)
        lan = rtt(net, net.homes["lan"].hosts[0], count=20)
    expected = PROFILES["broadband"].rtt_ms
    assert broadband["received"] == 20 and 0.9 * expected <= broadband["median_ms"] <= expected + 25
    assert lan["median_ms"] < 5


@needs_root
def test_rate_and_loss_are_applied() -> None:
    slow = LinkProfile("slow", delay_ms=1, rate_mbit=8)
    lossy = LinkProfile("lossy", loss_pct=20)
    with internet(Home("slow", profile=slow), Home("lossy", profile=lossy), seed=7) as net:
        udp_echo(net, 3478)
        sink = net.popen(net.server, probe.command("tcp-sink", "5001"), stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        probe_json(net, net.homes["slow"].hosts[0], "tcp-send", net.server.ip, "5001", "--bytes", "1000000")
        mbit = json.loads(sink.stdout.readline())["mbit_per_s"]
        lost = probe_json(net, net.homes["lossy"].hosts[0], "udp-rtt", net.server.ip, "3478", "--count", "150",
                          "--interval", "0.005", "--timeout", "0.03")
    assert 0.5 * 8 <= mbit <= 1.1 * 8
    # 20% each way: about 64% of round trips survive.
    assert 0.45 <= lost["received"] / 150 <= 0.8


@needs_root
def test_wan_outage_and_recovery() -> None:
    with internet(Home("a", NatType.EIM, "broadband")) as net:
        udp_echo(net, 3478)
        host = net.homes["a"].hosts[0]
        assert rtt(net, host, count=3)["received"] == 3
        net.set_wan("a", False)
        assert rtt(net, host, count=3, timeout=0.3)["received"] == 0
        net.set_wan("a", True)
        assert rtt(net, host, count=3)["received"] == 3


CRASHING_OWNER = """
import sys, time
from netlab import Home, Internet, NatType
with Internet([Home("a", NatType.EIM, "broadband")]) as net:
    print(net.run_id, flush=True)
    time.sleep(60)
"""


def start_owner() -> tuple[subprocess.Popen[str], str]:
    """A separate process that builds an Internet and waits; returns it and its run id."""
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_OWNER], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id and leftovers(f"nl{run_id}")
    return proc, run_id


@needs_root
@pytest.mark.parametrize("cleaner", ["cleanup_stale", "next_internet"])
def test_stale_run_of_a_killed_owner_is_removed(cleaner: str) -> None:
    proc, run_id = start_owner()
    state = RunState.load(STATE_DIR / f"{run_id}.json")
    proc.kill()
    proc.wait()
    assert len(leftovers(f"nl{run_id}")) >= 4  # SIGKILL: nothing could clean up
    if cleaner == "cleanup_stale":
        assert run_id in cleanup_stale()
    else:
        with internet():
            pass
    assert leftovers(f"nl{run_id}") == []
    assert not (STATE_DIR / f"{run_id}.json").exists()
    assert all(process_start_time(pid) != start for pid, start in state.helpers)


@needs_root
def test_sigterm_tears_down() -> None:
    proc, run_id = start_owner()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 128 + signal.SIGTERM
    assert leftovers(f"nl{run_id}") == []
    assert not (STATE_DIR / f"{run_id}.json").exists()


@needs_root
def test_cli_profiles_and_cleanup() -> None:
    cli = [sys.executable, "-m", "netlab"]
    listed = subprocess.run([*cli, "profiles", "--json"], cwd=REPO, capture_output=True, text=True, check=True)
    assert {p["name"] for p in json.loads(listed.stdout)} >= {"lan", "broadband", "mobile", "intercontinental"}
    subprocess.run([*cli, "cleanup"], cwd=REPO, capture_output=True, text=True, check=True)
    up = subprocess.Popen([*cli, "up", "--home", "a:eim:lan", "--home", "b:symmetric:lan:2"], cwd=REPO,
                          stdout=subprocess.PIPE, text=True)
    assert up.stdout is not None
    lines = []
    while not (line := up.stdout.readline()).startswith("Ctrl-C"):
        assert line, "netlab up exited early"
        lines.append(line)
    table = "".join(lines)
    assert "10.0.2.11" in table and "203.0.113.11" in table and "198.51.100.10" in table
    namespace = next(w for w in table.split() if w.endswith("-b1"))
    routes = subprocess.run([*cli, "exec", namespace, "--", "ip", "route"], cwd=REPO, capture_output=True, text=True,
                            check=True)
    assert "default via 10.0.2.1" in routes.stdout
    up.send_signal(signal.SIGINT)
    assert up.wait(10) == 0
    assert leftovers(namespace.split("-")[0]) == []
