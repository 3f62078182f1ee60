"""patches/aiortc-sctp-burst-after-idle.patch: applied by scripts/setup.sh, and what it changes.

Two real aiortc peer connections on this machine. After a warm-up has grown SCTP's congestion
window, one or two messages queued on the idle association leave with the window (patched),
not four packets (stock aiortc's Max.Burst cap with nothing in flight), and not the first
message and four packets (the patch's first version, which capped again once the first
message was in flight).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcsctptransport import USERDATA_MAX_LENGTH

from benchmarks.aiortc_variant import installed_is_patched, stock_overlay
from peer.link import enlarge_socket_buffers

MESSAGE = b"x" * 262144


def test_setup_applied_the_patch_and_the_stock_overlay_reverses_it(tmp_path: Path) -> None:
    assert installed_is_patched(), "run scripts/setup.sh: it applies patches/aiortc-sctp-burst-after-idle.patch"
    overlay = stock_overlay(tmp_path)
    out = subprocess.run([sys.executable, "-c", "import aiortc.rtcsctptransport as m; print(m.__file__)"],
                         env={"PYTHONPATH": str(overlay)}, capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == str(overlay / "aiortc" / "rtcsctptransport.py")
    assert "nothing in flight" not in (overlay / "aiortc" / "rtcsctptransport.py").read_text()


async def _first_flight_after_idle(messages: int) -> tuple[int, int]:
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
            for pc in (a, b):  # as the peers' links do: no loopback drops to shrink the window
                enlarge_socket_buffers(pc, 4 * 1024 * 1024)  # explicit: benchmarks.transfer zeroes the default on import
            sctp = a.sctp
            for _ in range(5):  # warm-up until the window holds the messages (a loss under load shrinks it)
                for _ in range(16):
                    channel.send(MESSAGE)
                for _ in range(16):
                    await got.get()
                while sctp._flight_size:  # idle: everything acknowledged
                    await asyncio.sleep(0.01)
                if sctp._cwnd > messages * len(MESSAGE) + 8 * USERDATA_MAX_LENGTH:
                    break
            cwnd = sctp._cwnd
            # what left before the first SACK came back: everything sent after idle, unclocked
            at_first_sack: list[int] = []
            receive_sack = sctp._receive_sack_chunk

            async def recording(chunk: Any) -> None:
                if not at_first_sack:
                    at_first_sack.append(sctp._flight_size)
                await receive_sack(chunk)

            sctp._receive_sack_chunk = recording  # type: ignore[method-assign]
            for _ in range(messages):  # a gossip frame of the default model is two messages
                channel.send(MESSAGE)
            for _ in range(messages):
                await got.get()
        return cwnd, at_first_sack[0]
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("messages", [1, 2])
def test_messages_sent_after_idle_leave_with_the_window_not_four_packets(messages: int) -> None:
    cwnd, first_flight = asyncio.run(_first_flight_after_idle(messages))
    assert cwnd > messages * len(MESSAGE) + 8 * USERDATA_MAX_LENGTH, "the warm-up should have opened the window"
    # stock aiortc: four packets; the first version of the patch: the first message and four packets
    assert first_flight > (messages - 1) * len(MESSAGE) + 4 * USERDATA_MAX_LENGTH, (
        f"only {first_flight} bytes of {messages} x {len(MESSAGE)} left at once with a {cwnd}-byte window")
