"""Tiny network probes to run inside netlab hosts: UDP echo with the observed source, RTT, mapping, TCP rate.

Standard library only and runnable as a script, so any python3 can run it in any namespace::

    ip netns exec NS python3 netlab/probe.py udp-echo 3478 3479     # prints "ready", then serves
    ip netns exec NS python3 netlab/probe.py udp-rtt 198.51.100.10 3478 --count 20
    ip netns exec NS python3 netlab/probe.py udp-mapped 198.51.100.10:3478 198.51.100.10:3479
    ip netns exec NS python3 netlab/probe.py udp-punch 198.51.100.10 3478   # then type the peer's ip:port
    ip netns exec NS python3 netlab/probe.py tcp-sink 5001           # prints "ready", then a JSON result
    ip netns exec NS python3 netlab/probe.py tcp-send 198.51.100.10 5001 --bytes 1000000

Results are one JSON object on stdout. ``command(...)`` builds the argv from Python.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def command(*args: str) -> list[str]:
    """argv running this probe with the current interpreter: ``command("udp-echo", "3478")``."""
    return [sys.executable, str(Path(__file__).resolve()), *args]


def udp_echo(ports: list[int]) -> None:
    """Answer every datagram with ``<payload>|<observed source ip>:<port>``, forever."""
    sel = selectors.DefaultSelector()
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        sel.register(sock, selectors.EVENT_READ, sock)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            server: socket.socket = key.data
            data, (ip, port) = server.recvfrom(65536)
            server.sendto(data + f"|{ip}:{port}".encode(), (ip, port))


def udp_rtt(host: str, port: int, count: int, interval_s: float, timeout_s: float) -> dict[str, Any]:
    """Send ``count`` probes ``interval_s`` apart to an echo server; round trips in ms."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout_s)
    rtts: list[float] = []
    for seq in range(count):
        sent = time.monotonic()
        sock.sendto(f"{seq}".encode(), (host, port))
        deadline = sent + timeout_s
        while True:
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                break
            if data.split(b"|")[0] == f"{seq}".encode():
                rtts.append((time.monotonic() - sent) * 1000)
                break
        time.sleep(max(0.0, interval_s - (time.monotonic() - sent)))
    result: dict[str, Any] = {"sent": count, "received": len(rtts), "rtt_ms": [round(r, 3) for r in rtts]}
    if rtts:
        result.update(min_ms=min(rtts), median_ms=statistics.median(rtts), max_ms=max(rtts))
    return result


def udp_mapped_on(sock: socket.socket, host: str, port: int, timeout_s: float) -> str | None:
    """The ip:port a udp-echo server at host:port sees for ``sock`` (3 tries), None if no reply."""
    sock.settimeout(timeout_s)
    for _ in range(3):  # a lost datagram (lossy profile) is retried
        sock.sendto(b"map", (host, port))
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            continue
        return data.split(b"|", 1)[1].decode()
    return None


def udp_mapped(targets: list[str], timeout_s: float) -> dict[str, Any]:
    """From ONE socket, ask echo servers at each ``ip:port`` target what source address they saw."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    seen = {}
    for target in targets:
        host, port = target.rsplit(":", 1)
        seen[target] = udp_mapped_on(sock, host, int(port), timeout_s)
    return {"local": f"{sock.getsockname()[0]}:{sock.getsockname()[1]}", "seen": seen}


def udp_punch(stun_host: str, stun_port: int, tries: int, interval_s: float) -> dict[str, Any]:
    """UDP hole punching between two hosts, coordinated by whoever reads and writes our stdio.

    Learns this socket's server-reflexive address from a udp-echo server and prints it as
    ``{"mapped": "ip:port"}``; reads the peer's mapped address as one line on stdin; then sends
    to it ``tries`` times, ``interval_s`` apart, while listening, and answers every address a punch
    came from too (a peer-reflexive candidate, as ICE would). Reports which peer addresses got
    through (empty: the NATs would not let the two talk without a relay).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    mapped = udp_mapped_on(sock, stun_host, stun_port, 1.0)
    print(json.dumps({"mapped": mapped}), flush=True)
    peer_ip, peer_port = sys.stdin.readline().strip().rsplit(":", 1)
    peer = (peer_ip, int(peer_port))
    got: set[str] = set()
    targets = {peer}  # plus every address a punch came from: peer-reflexive, as ICE learns it
    for _ in range(tries):
        for target in sorted(targets):
            sock.sendto(b"punch", target)
        until = time.monotonic() + interval_s
        while (left := until - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (ip, port) = sock.recvfrom(65536)
            except TimeoutError:
                break
            if data == b"punch":
                got.add(f"{ip}:{port}")
                targets.add((ip, port))
    return {"mapped": mapped, "peer": f"{peer_ip}:{peer_port}", "received_from": sorted(got)}


def tcp_sink(port: int) -> dict[str, Any]:
    """Accept one connection, read to EOF; bytes and seconds from first byte to EOF."""
    server = socket.create_server(("0.0.0.0", port))
    print("ready", flush=True)
    conn, peer = server.accept()
    total, first = 0, None
    while chunk := conn.recv(1 << 16):
        first = first or time.monotonic()
        total += len(chunk)
    seconds = time.monotonic() - first if first else 0.0
    return {"peer": f"{peer[0]}:{peer[1]}", "bytes": total, "seconds": seconds,
            "mbit_per_s": total * 8 / seconds / 1e6 if seconds else None}


def tcp_send(host: str, port: int, nbytes: int, timeout_s: float) -> dict[str, Any]:
    """Connect and send ``nbytes`` zero bytes, then close."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout_s) as conn:
        conn.sendall(bytes(nbytes))
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
    return {"bytes": nbytes, "seconds": time.monotonic() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probe.py", description="network probes for netlab hosts")
    sub = parser.add_subparsers(dest="cmd", required=True)
    echo = sub.add_parser("udp-echo", help="UDP echo servers replying with the observed source ip:port")
    echo.add_argument("ports", type=int, nargs="+", help="UDP ports to serve")
    rtt = sub.add_parser("udp-rtt", help="round-trip times to a udp-echo server")
    rtt.add_argument("host", help="echo server address")
    rtt.add_argument("port", type=int, help="echo server port")
    rtt.add_argument("--count", type=int, default=10, help="probes to send")
    rtt.add_argument("--interval", type=float, default=0.05, help="seconds between probes")
    rtt.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each reply")
    mapped = sub.add_parser("udp-mapped", help="the public ip:port each echo server sees for one local socket")
    mapped.add_argument("targets", nargs="+", metavar="IP:PORT", help="udp-echo servers, one mapping each")
    mapped.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each reply")
    punch = sub.add_parser("udp-punch", help="hole punching: print our mapped address, read the peer's on stdin, try")
    punch.add_argument("host", help="udp-echo server used as STUN")
    punch.add_argument("port", type=int, help="its port")
    punch.add_argument("--tries", type=int, default=10, help="datagrams to send to the peer")
    punch.add_argument("--interval", type=float, default=0.1, help="seconds between them")
    sink = sub.add_parser("tcp-sink", help="receive one TCP stream and report its rate")
    sink.add_argument("port", type=int, help="TCP port to listen on")
    send = sub.add_parser("tcp-send", help="send bytes to a tcp-sink")
    send.add_argument("host", help="sink address")
    send.add_argument("port", type=int, help="sink port")
    send.add_argument("--bytes", type=int, default=1_000_000, help="how many bytes to send")
    send.add_argument("--timeout", type=float, default=10.0, help="socket timeout in seconds")
    args = parser.parse_args(argv)
    if args.cmd == "udp-echo":
        udp_echo(args.ports)
    elif args.cmd == "udp-rtt":
        result = udp_rtt(args.host, args.port, args.count, args.interval, args.timeout)
    elif args.cmd == "udp-mapped":
        result = udp_mapped(args.targets, args.timeout)
    elif args.cmd == "udp-punch":
        result = udp_punch(args.host, args.port, args.tries, args.interval)
    elif args.cmd == "tcp-sink":
        result = tcp_sink(args.port)
    else:
        result = tcp_send(args.host, args.port, args.bytes, args.timeout)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
