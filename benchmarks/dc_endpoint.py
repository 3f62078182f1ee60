"""One end of a two-process data-channel benchmark, on aiortc or on libdatachannel.

Run by ``benchmarks/dc_rate.py``, never by hand. It imports nothing of this project, so the
same file runs in the project's venv (aiortc, Python 3.11) and in the native-stack venv
(``aiolibdatachannel``, Python >= 3.12, made by ``scripts/setup.sh``).

Signaling is JSON lines on stdin/stdout: the sender prints ``{"sdp": offer}`` (every candidate
in the SDP, no trickle), reads ``{"sdp": answer}``; the receiver does the reverse. Then the
sender sends ``--warmup`` bytes, waits for the receiver's short "warmed up" message (so the
measurement starts on an empty channel), sends ``--bytes`` bytes in ``--message-size`` messages
with its own high-water loop (4 MiB high, 1 MiB low, as ``peer.link``), and waits for the
receiver's "received" message. Each side prints one result line: the measured bytes, the
wall-clock seconds and the CPU seconds of the whole process (every thread: libdatachannel
sends and receives on its own threads) over the measured part; the sender's wall time, first
measured send to the receiver's reply, is the one the rate is taken from.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1 * 1024 * 1024
WARM = b"warmed up"
DONE = b"received"
DEADLINE_S = 300.0


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_line() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("dc_endpoint: the parent closed stdin before the handshake ended")
    return json.loads(line)


class Clock:
    """Wall and process CPU time from ``start`` to ``stop``."""

    def start(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall0, time.process_time() - self.cpu0


# ---- aiortc ------------------------------------------------------------------------------


async def aiortc_end(args: argparse.Namespace) -> dict[str, Any]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN server on loopback
    got: asyncio.Queue[bytes] = asyncio.Queue()
    opened = asyncio.Event()
    channel_box: list[Any] = []

    def attach(channel: Any) -> None:
        channel_box.append(channel)
        channel.on("message", got.put_nowait)
        if channel.readyState == "open":
            opened.set()
        channel.on("open", opened.set)

    try:
        if args.role == "send":
            attach(pc.createDataChannel("bench", ordered=True))
            await pc.setLocalDescription(await pc.createOffer())
            emit({"sdp": pc.localDescription.sdp})
            answer = await read_line()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        else:
            pc.on("datachannel", attach)
            offer = await read_line()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            emit({"sdp": pc.localDescription.sdp})
        async with asyncio.timeout(30):
            await opened.wait()
        channel = channel_box[0]
        if args.role == "send":
            low = asyncio.Event()
            channel.bufferedAmountLowThreshold = LOW_WATER
            channel.on("bufferedamountlow", low.set)

            async def send(data: bytes) -> None:
                if channel.bufferedAmount > HIGH_WATER:
                    low.clear()
                    await low.wait()
                channel.send(data)

            return await sender(args, send, got.get)
        return await receiver(args, got.get, lambda data: _async(channel.send, data))
    finally:
        await pc.close()


async def _async(fn: Any, *a: Any) -> None:
    fn(*a)


# ---- libdatachannel (aiolibdatachannel) --------------------------------------------------


async def native_end(args: argparse.Namespace) -> dict[str, Any]:
    import aiolibdatachannel as ldc

    pc = ldc.PeerConnection(ldc.RTCConfiguration(ice_servers=[], max_message_size=args.message_size))
    try:
        if args.role == "send":
            channel = await pc.create_data_channel("bench", ldc.DataChannelOptions(ordered=True))
            offer = await pc.create_offer()
            emit({"sdp": offer.sdp})
            answer = await read_line()
            await pc.set_remote_description(answer["sdp"], "answer")
        else:
            offer = await read_line()
            await pc.set_remote_description(offer["sdp"], "offer")
            answer = await pc.create_answer()
            emit({"sdp": answer.sdp})
            async with asyncio.timeout(30):
                channel = await pc.accept_data_channel()
        async with asyncio.timeout(30):
            await channel.wait_open()
        if args.role == "send":
            # its own send(wait_for_drain=True) can wait forever (issue 15): a plain high-water
            # loop over buffered_amount instead, polled because the low event is edge-triggered
            async def send(data: bytes) -> None:
                while channel.buffered_amount > HIGH_WATER:
                    await asyncio.sleep(0.001)
                await channel.send(data, wait_for_drain=False)

            return await sender(args, send, channel.recv)
        return await receiver(args, channel.recv, lambda data: channel.send(data, wait_for_drain=False))
    finally:
        await pc.aclose()


# ---- the measurement, the same on both stacks ---------------------------------------------


async def sender(args: argparse.Namespace, send: Any, recv: Any) -> dict[str, Any]:
    payload = bytes(range(256)) * (args.message_size // 256)
    for _ in range(max(1, args.warmup // args.message_size)):
        await send(payload)
    async with asyncio.timeout(DEADLINE_S):
        warm = await recv()  # the pipe is empty now: both clocks start on the same empty channel
    if warm != WARM:
        raise SystemExit(f"dc_endpoint: unexpected reply {warm!r}")
    count = args.bytes // args.message_size
    clock = Clock()
    clock.start()
    for _ in range(count):
        await send(payload)
    async with asyncio.timeout(DEADLINE_S):
        reply = await recv()
    wall, cpu = clock.stop()
    if reply != DONE:
        raise SystemExit(f"dc_endpoint: unexpected reply {reply!r}")
    return {"role": "send", "bytes": count * len(payload), "wall_s": wall, "cpu_s": cpu}


async def receiver(args: argparse.Namespace, recv: Any, send: Any) -> dict[str, Any]:
    warmup = max(1, args.warmup // args.message_size) * args.message_size
    total = warmup + (args.bytes // args.message_size) * args.message_size
    clock, seen = Clock(), 0
    async with asyncio.timeout(DEADLINE_S):
        while seen < total:
            data = await recv()
            seen += len(data)
            if seen == warmup:
                clock.start()
                await send(WARM)
    wall, cpu = clock.stop()
    await send(DONE)
    await asyncio.sleep(0.5)  # let the reply leave before the connection closes
    return {"role": "receive", "bytes": total - warmup, "wall_s": wall, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=["aiortc", "native"], required=True)
    parser.add_argument("--role", choices=["send", "receive"], required=True)
    parser.add_argument("--bytes", type=int, default=48 * 1024 * 1024)
    parser.add_argument("--warmup", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--message-size", type=int, default=262144)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    run = aiortc_end if args.stack == "aiortc" else native_end
    emit({"result": asyncio.run(run(args))})


if __name__ == "__main__":
    main()
