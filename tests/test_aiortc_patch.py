"""patches/aiortc-sctp-burst-after-idle.patch: applied by scripts/setup.sh, and what it changes.

Two real aiortc peer connections on this machine. After a warm-up has grown SCTP's congestion
window, a message queued on the idle association leaves with the window (patched), not four
packets (stock aiortc's Max.Burst cap with nothing in flight).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcsctptransport import USERDATA_MAX_LENGTH

from benchmarks.aiortc_variant import installed_is_patched, stock_overlay

MESSAGE = b"x" * 262144


def test_setup_applied_the_patch_and_the_stock_overlay_reverses_it(tmp_path: Path) -> None:
    assert installed_is_patched(), "run scripts/setup.sh: it applies patches/aiortc-sctp-burst-after-idle.patch"
    overlay = stock_overlay(tmp_path)
    out = subprocess.run([sys.executable, "-c", "import aiortc.rtcsctptransport as m; print(m.__file__)"],
                         env={"PYTHONPATH": str(overlay)}, capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == str(overlay / "aiortc" / "rtcsctptransport.py")
    assert "nothing in flight" not in (overlay / "aiortc" / "rtcsctptransport.py").read_text()


async def _first_flight_after_idle() -> tuple[int, int]:
    a, b = RTCPeerConnection(RTCConfiguration(iceServers=[])), RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got: asyncio.Queue[bytes] = asyncio.Queue()
    b.on("datachannel", lambda ch: ch.on("message", got.put_nowait))
    channel = a.createDataChannel("t")
    try:
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        async with asyncio.timeout(30):
            while channel.readyState != "open":
                await asyncio.sleep(0.01)
            for _ in range(8):  # warm-up: the window grows
                channel.send(MESSAGE)
            for _ in range(8):
                await got.get()
            sctp = a.sctp
            while sctp._flight_size:  # idle: everything acknowledged
                await asyncio.sleep(0.01)
            cwnd = sctp._cwnd
            channel.send(MESSAGE)
            await asyncio.sleep(0)  # the send task queues the chunks and transmits once
            await asyncio.sleep(0)
            first_flight = sctp._flight_size
            await got.get()
        return cwnd, first_flight
    finally:
        await a.close()
        await b.close()


def test_a_message_after_idle_leaves_with_the_window_not_four_packets() -> None:
    cwnd, first_flight = asyncio.run(_first_flight_after_idle())
    assert cwnd > 8 * USERDATA_MAX_LENGTH, "the warm-up should have opened the window"
    assert first_flight > 4 * USERDATA_MAX_LENGTH, f"only {first_flight} bytes left at once with a {cwnd}-byte window"
