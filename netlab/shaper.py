"""Userspace link shaper: delay, jitter, rate and loss between two TAP devices.

Used when the kernel has no ``sch_netem`` (``CONFIG_NET_SCH_NETEM`` unset, as on the Firecracker
kernels this project runs on). The parent opens both TAP file descriptors, moves the devices
into their namespaces and passes the descriptors here; this process copies Ethernet frames
between them with the same model as netem with a rate: each frame waits for the link to be free,
takes ``len * 8 / rate`` seconds to serialize, then ``delay +/- jitter`` (uniform) to arrive,
never overtaking the frame before it. Loss is drawn per frame. Each direction holds at most
``--limit`` frames; more are dropped at the tail.

Standard library only, run as a script: ``python3 shaper.py --inside FD --outside FD ...``.
Exits when its stdin closes (the owner died or closed it) or a device disappears.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import select
import sys
import time

READ_BURST = 64  # frames read from one device per wake-up, so a flood cannot starve the timers
FRAME_MAX = 65536


class Direction:
    """One way of the link: frames read from ``src`` are written to ``dst`` when due."""

    def __init__(self, src: int, dst: int, args: argparse.Namespace, rng: random.Random) -> None:
        self.src, self.dst, self.rng = src, dst, rng
        self.delay = args.delay_ms / 1000.0
        self.jitter = args.jitter_ms / 1000.0
        self.bits_per_s = args.rate_mbit * 1e6 if args.rate_mbit else 0.0
        self.loss = args.loss_pct / 100.0
        self.limit = args.limit
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.link_free = 0.0  # monotonic time the serializer finishes the last admitted frame
        self.last_release = 0.0
        self.dropped = 0

    def admit(self, frame: bytes, now: float) -> None:
        """Schedule ``frame`` (or drop it: random loss, full queue)."""
        if (self.loss and self.rng.random() < self.loss) or len(self.queue) >= self.limit:
            self.dropped += 1
            return
        sent = max(now, self.link_free)
        if self.bits_per_s:
            sent += len(frame) * 8 / self.bits_per_s
        self.link_free = sent
        wait = self.delay + (self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        release = max(sent + max(wait, 0.0), self.last_release)
        self.last_release = release
        self.queue.append((release, frame))

    def flush(self, now: float) -> None:
        """Deliver every frame that is due."""
        while self.queue and self.queue[0][0] <= now:
            _, frame = self.queue.popleft()
            try:
                os.write(self.dst, frame)
            except OSError:  # the receiving device is down: the frame is lost, as on a wire
                self.dropped += 1

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def read_burst(self, now: float) -> bool:
        """Admit up to READ_BURST waiting frames; False once the device is gone."""
        for _ in range(READ_BURST):
            try:
                frame = os.read(self.src, FRAME_MAX)
            except BlockingIOError:
                return True
            except OSError:  # EBADFD: the namespace holding the device was deleted
                return False
            self.admit(frame, now)
        return True


def run(args: argparse.Namespace) -> int:
    """Shuttle frames until stdin closes or a device disappears."""
    rng = random.Random(args.seed)
    for fd in (args.inside, args.outside):
        os.set_blocking(fd, False)
    up = Direction(args.inside, args.outside, args, rng)
    down = Direction(args.outside, args.inside, args, rng)
    by_fd = {args.inside: up, args.outside: down}
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    poller.register(sys.stdin.fileno(), select.EPOLLIN)
    while True:
        dues = [t for t in (up.next_due(), down.next_due()) if t is not None]
        timeout = max(0.0, min(dues) - time.monotonic()) if dues else -1
        events = poller.poll(timeout)
        now = time.monotonic()
        for fd, _ in events:
            if fd not in by_fd:  # stdin readable means EOF (the owner never writes)
                return 0
            if not by_fd[fd].read_burst(now):
                return 0
        up.flush(now)
        down.flush(now)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inside", type=int, required=True, help="TAP fd of the home side (its reads are uploads)")
    parser.add_argument("--outside", type=int, required=True, help="TAP fd of the core side (its reads are downloads)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay in milliseconds, each direction")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="+/- uniform jitter in milliseconds")
    parser.add_argument("--rate-mbit", type=float, default=0.0, help="Mbit/s per direction, 0 = unlimited")
    parser.add_argument("--loss-pct", type=float, default=0.0, help="percent of frames dropped, each direction")
    parser.add_argument("--limit", type=int, default=10_000, help="frames queued per direction before tail drop")
    parser.add_argument("--seed", type=int, default=None, help="seed for loss and jitter (default: random)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        os.nice(-10)  # timers matter more than throughput; best effort
    except OSError:
        pass
    sys.exit(run(parse_args()))
