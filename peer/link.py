"""One neighbor: an RTCPeerConnection with one reliable, ordered data channel.

Frames are split into <= 256 KiB messages (``protocols.chunking``) and sent with
backpressure: the sender waits for ``bufferedamountlow`` whenever more than ``high_water``
bytes are queued, because aiortc buffers without limit and Chromium throws past 16 MiB.
Sends are serialized per link so frames (and their sequence numbers) arrive in order.

What arrives is refused and reported before it costs more (``on_chunk_error``; ``refusals``
counts them per link, and the transport makes each a strike against the sender): a text
message, a message above 256 KiB, a chunk that breaks the reassembly rules. The rest of a
refused transfer is dropped unseen, so one bad frame is one strike, not one per chunk. A
watchdog reads aiortc's SCTP reassembly: a message that passes 256 KiB while still arriving is
refused at once and the link closed (aiortc would buffer all of it, and an ordered channel
cannot skip it); a link with a message or transfer in flight that makes no progress for
``STALL_TIMEOUT_S`` is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from enum import Enum

from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.rtcsctptransport import SCTP_DATA_FIRST_FRAG, SCTP_DATA_LAST_FRAG

from protocols.chunking import (
    CHUNK_HEADER_SIZE,
    CHUNK_MAGIC,
    DEFAULT_MESSAGE_SIZE,
    MAX_MESSAGE_SIZE,
    Reassembler,
    split_frame,
)
from protocols.errors import ChunkError
from protocols.signaling import PeerInfo

log = logging.getLogger("peer.link")

HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1 * 1024 * 1024
STALL_TIMEOUT_S = 10.0  # a message or transfer in flight and nothing more of it for this long: drop the link
WATCH_INTERVAL_S = 0.25
RATE_SAMPLE_MIN = HIGH_WATER  # this many bytes drained from the buffer during one send measure the link's rate
RATE_SMOOTHING = 0.5  # weight of the newest rate sample (exponential moving average)
SEND_TIMEOUT_CEILING_S = 600.0
DEFAULT_RATE_BYTES_S = 1e6  # peer.gossip.DEFAULT_RATE_BYTES_S: until a large send measured the link
REFUSED_TRANSFERS = 16  # refused transfers remembered per link, so the rest of their chunks is no new strike
_CHUNK_FIELDS = struct.Struct(">III")  # transfer_id, index, count after the magic (protocols.chunking layout)


SOCKET_BUFFER = 4 * 1024 * 1024


def enlarge_socket_buffers(pc: RTCPeerConnection, size: int | None = None) -> None:
    """Give the ICE sockets 4 MiB receive buffers (best effort; aiortc exposes no option).

    SCTP bursts overflow the default ~208 KB UDP receive buffer even on loopback; each drop
    costs a retransmission timeout. Measured in benchmarks/transfer.py: 0% resent instead of
    10-20%, and a gossip round trip without multi-second stalls.
    """
    size = SOCKET_BUFFER if size is None else size
    if size <= 0:  # 0: keep the OS default (benchmarks compare against it)
        return
    try:
        connection = pc.sctp.transport.transport._connection  # type: ignore[union-attr]
        for protocol in connection._protocols:
            sock = protocol.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except (AttributeError, OSError) as exc:
        log.debug("could not enlarge socket buffers: %s", exc)


def quiet_closed_transport_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log aiortc's SCTP send task failing on a DTLS transport we closed as debug, not as an error.

    Closing a link while aiortc's ``RTCSctpTransport._transmit`` task is sending makes that task
    end with ``OpenSSL.SSL.Error('protocol is shutdown')``, an exception aiortc never retrieves;
    it is the expected end of that task, not a fault. Everything else goes to the usual handler.
    """

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc, task = context.get("exception"), context.get("future")
        coro = getattr(task, "get_coro", lambda: None)()
        if "protocol is shutdown" in str(exc) and "RTCSctpTransport._transmit" in getattr(coro, "__qualname__", ""):
            log.debug("SCTP send ended by a closed DTLS transport: %s", exc)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


# the pair's kind is its least direct side: a relayed pair is "relay" whichever end relays
_PAIR_ORDER = ("relay", "srflx", "prflx", "host")


def pair_type(local_type: str | None, remote_type: str | None) -> str | None:
    """Kind of a selected candidate pair (host, srflx, prflx, relay) from its two candidate types."""
    kinds = {local_type, remote_type}
    return next((kind for kind in _PAIR_ORDER if kind in kinds), None)


class LinkState(Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


FrameHandler = Callable[["PeerLink", bytes], Awaitable[None]]


def sctp_inbound(pc: RTCPeerConnection) -> tuple[int, int, object]:
    """(bytes in aiortc's SCTP reassembly, the largest message seen so far in it, a progress marker).

    The largest message counts a run of consecutive fragments from a first fragment, so it never
    overstates a message's size, whatever arrives out of order. Zeros when aiortc's internals
    differ (then only the chunk-level checks apply).
    """
    try:
        sctp = pc.sctp
        held = largest = 0
        for stream in sctp._inbound_streams.values():  # type: ignore[union-attr]
            run, expected = 0, None
            for chunk in stream.reassembly:
                held += len(chunk.user_data)
                if chunk.flags & SCTP_DATA_FIRST_FRAG:
                    run, expected = 0, chunk.tsn
                if chunk.tsn != expected:
                    run, expected = 0, None
                    continue
                run += len(chunk.user_data)
                largest = max(largest, run)
                expected = None if chunk.flags & SCTP_DATA_LAST_FRAG else (chunk.tsn + 1) & 0xFFFFFFFF
        return held, largest, (sctp._last_received_tsn, held)  # type: ignore[union-attr]
    except AttributeError:
        return 0, 0, None


class PeerLink:
    def __init__(
        self,
        remote: PeerInfo,
        pc: RTCPeerConnection,
        *,
        max_frame_size: int,
        on_frame: FrameHandler,
        on_closed: Callable[[PeerLink], None],
        on_chunk_error: Callable[[PeerLink, str], None],
        message_size: int = DEFAULT_MESSAGE_SIZE,
        send_timeout: float = 30.0,
        stall_timeout: float = STALL_TIMEOUT_S,
    ) -> None:
        self.remote = remote
        self.remote_key = bytes.fromhex(remote.public_key)
        self.pc = pc
        self.state = LinkState.CONNECTING
        self.channel: RTCDataChannel | None = None
        self.reassembler = Reassembler(max_frame_size=max_frame_size)
        self.message_size = message_size
        self.send_timeout = send_timeout
        self.send_lock = asyncio.Lock()
        self.opened = asyncio.Event()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.rate_bytes_s: float | None = None  # measured send rate (large sends only), bytes per second
        self._transfer_id = 0
        self._low = asyncio.Event()
        self._on_frame, self._on_closed, self._on_chunk_error = on_frame, on_closed, on_chunk_error
        self.refusals = 0  # messages refused as abuse of this link (transport.collect_abuse strikes them)
        self.last_refusal: str | None = None
        self.stall_timeout = stall_timeout
        self.closed_reason: str | None = None
        self._refused: OrderedDict[int, tuple[int, int, int]] = OrderedDict()  # transfer -> (count, total, chunks left)
        self._progress: object = None
        self._progress_at = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()
        pc.on("connectionstatechange", self._on_connection_state)

    @property
    def peer_id(self) -> str:
        return self.remote.peer_id

    def _set_state(self, state: LinkState) -> None:
        if state == self.state:
            return
        # opens and closes are rare (a few per neighbor per run) and are what a mesh that did not form is read from
        level = logging.INFO if state in (LinkState.OPEN, LinkState.CLOSED) else logging.DEBUG
        log.log(level, "link %s (%s): %s -> %s", self.peer_id[:8], self.remote.client, self.state.value, state.value)
        self.state = state
        if state == LinkState.OPEN:
            enlarge_socket_buffers(self.pc)
            self.opened.set()
            self._spawn(self._watch())
        elif state == LinkState.CLOSED:
            self._low.set()  # wake blocked senders so they notice the close
            for task in self._tasks:
                task.cancel()
            self._on_closed(self)

    def attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.bufferedAmountLowThreshold = LOW_WATER
        channel.on("bufferedamountlow", self._low.set)
        channel.on("message", self._on_message)
        channel.on("close", lambda: asyncio.ensure_future(self.close()))
        if channel.readyState == "open":
            self._set_state(LinkState.OPEN)
        else:
            channel.on("open", lambda: self._set_state(LinkState.OPEN))

    def ice_info(self) -> dict[str, object]:
        """The selected ICE candidate pair and the SCTP smoothed RTT, best effort.

        aiortc has no ``getStats()`` for ICE or SCTP, so this reads aioice's nominated pair and
        SCTP's RFC 4960 SRTT estimate; either is ``None`` when aiortc changes those internals.
        Keys: ``local_type``, ``remote_type``, ``pair`` (host/srflx/prflx/relay), ``remote_address``,
        ``rtt_ms`` (float milliseconds, or None before the first acknowledged chunk).
        """
        info: dict[str, object] = {"local_type": None, "remote_type": None, "pair": None,
                                   "remote_address": None, "rtt_ms": None}  # fmt: skip
        try:
            connection = self.pc.sctp.transport.transport._connection  # type: ignore[union-attr]
            pair = next(iter(connection._nominated.values()), None)
            if pair is not None:
                info["local_type"] = pair.local_candidate.type
                info["remote_type"] = pair.remote_candidate.type
                info["remote_address"] = f"{pair.remote_addr[0]}:{pair.remote_addr[1]}"
                info["pair"] = pair_type(pair.local_candidate.type, pair.remote_candidate.type)
            srtt = self.pc.sctp._srtt  # type: ignore[union-attr]
            info["rtt_ms"] = round(srtt * 1000.0, 2) if srtt is not None else None
        except AttributeError as exc:
            log.debug("no ICE pair information: %s", exc)
        return info

    @property
    def rtt_s(self) -> float | None:
        """SCTP's smoothed round-trip time in seconds, or None before it is known."""
        rtt_ms = self.ice_info()["rtt_ms"]
        return float(rtt_ms) / 1000.0 if isinstance(rtt_ms, (int, float)) else None

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            asyncio.ensure_future(self.close())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse(self, reason: str, detail: str) -> None:
        """Count what the neighbor sent as abuse under ``reason``, then report it (a strike, in the transport)."""
        log.debug("refused from %s: %s (%s)", self.peer_id[:8], detail, reason)
        self.refusals += 1
        self.last_refusal = reason
        self._on_chunk_error(self, reason)

    def _on_message(self, message: bytes | str) -> None:
        if self.state == LinkState.CLOSED or self.closed_reason is not None:
            return  # the tail of a link we drop (a ban, an oversized message) costs nothing more
        if isinstance(message, str):
            self._refuse("malformed", "a text message")
            return
        self.bytes_received += len(message)
        if len(message) > MAX_MESSAGE_SIZE:
            self._refuse("oversize", f"a message of {len(message)} bytes, above {MAX_MESSAGE_SIZE}")
            return
        if self._rest_of_refused(message):
            return
        try:
            frame = self.reassembler.feed(message)
        except ChunkError as exc:
            self._remember_refused(message)
            self._refuse(exc.reason, str(exc))
            return
        if frame is not None:
            self._spawn(self._on_frame(self, frame))

    def _fields(self, message: bytes) -> tuple[int, int, int, int] | None:
        """(transfer id, index, count, total) of a chunk with a good magic, else None."""
        if len(message) < CHUNK_HEADER_SIZE or message[:2] != CHUNK_MAGIC:
            return None
        tid, index, count = _CHUNK_FIELDS.unpack_from(message, 2)
        return tid, index, count, int.from_bytes(message[14:18], "big")

    def _remember_refused(self, message: bytes) -> None:
        fields = self._fields(message)
        if fields is None:
            return  # no transfer to speak of: every such message is its own strike
        tid, _, count, total = fields
        # as many more chunks as a sender of full-size messages needs for ``total`` bytes, at most
        per = MAX_MESSAGE_SIZE - CHUNK_HEADER_SIZE
        self._refused[tid] = (count, total, max(0, min(count, math.ceil(total / per)) - 1))
        self._refused.move_to_end(tid)
        while len(self._refused) > REFUSED_TRANSFERS:
            self._refused.popitem(last=False)

    def _rest_of_refused(self, message: bytes) -> bool:
        """Whether ``message`` is a further chunk of a transfer already refused (dropped, no new strike)."""
        fields = self._fields(message)
        entry = self._refused.get(fields[0]) if fields is not None else None
        if fields is None or entry is None or (fields[2], fields[3]) != entry[:2] or entry[2] == 0:
            return False
        self._refused[fields[0]] = (entry[0], entry[1], entry[2] - 1)
        return True

    async def _watch(self) -> None:
        """While open: refuse a message above MAX_MESSAGE_SIZE as it arrives, and drop a stalled link."""
        while self.state == LinkState.OPEN:
            await asyncio.sleep(WATCH_INTERVAL_S)
            self.check_inbound(time.monotonic())

    def check_inbound(self, now: float) -> None:
        held, largest, progress = sctp_inbound(self.pc)
        if largest > MAX_MESSAGE_SIZE:
            self._refuse("oversize", f"a message still arriving, already {largest} bytes, above {MAX_MESSAGE_SIZE}")
            self._spawn_close("oversize message")
            return
        marker = (progress, self.bytes_received)
        if marker != self._progress:
            self._progress, self._progress_at = marker, now
        elif (held or self.reassembler.buffered) and now - self._progress_at > self.stall_timeout:
            log.info("dropping %s: a transfer in flight made no progress for %.0f s", self.peer_id[:8], self.stall_timeout)
            self._spawn_close("stalled")

    def _spawn_close(self, reason: str) -> None:
        self.closed_reason = self.closed_reason or reason
        asyncio.ensure_future(self.close(reason))

    async def send(self, build: Callable[[], bytes]) -> None:
        """Build a frame under the link's send lock and send it in chunks with backpressure.

        Raises TimeoutError when the send buffer did not drain to low water within the allowance
        (``send_timeout``, or 4x the frame's time at the measured rate), counted afresh after each
        drain, or when the whole send passed ``SEND_TIMEOUT_CEILING_S``; ConnectionError when the
        link is or becomes closed.
        """
        async with self.send_lock:
            if self.state != LinkState.OPEN or self.channel is None:
                raise ConnectionError(f"link to {self.peer_id[:8]} is {self.state.value}")
            data = build()
            self._transfer_id = (self._transfer_id + 1) & 0xFFFFFFFF
            # a large model on a slow link takes longer than the default: allow 4x what the link's rate says
            timeout = min(SEND_TIMEOUT_CEILING_S, max(self.send_timeout, 4.0 * len(data) / (self.rate_bytes_s or DEFAULT_RATE_BYTES_S)))
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            ceiling = loop.time() + SEND_TIMEOUT_CEILING_S
            async with asyncio.timeout(timeout) as allowance:
                for chunk in split_frame(data, self._transfer_id, self.message_size):
                    while self.channel.bufferedAmount > HIGH_WATER and self.state == LinkState.OPEN:
                        self._low.clear()
                        await self._low.wait()
                        # drained to low water: the link moves, so the allowance starts again. A
                        # lossy link slower than its estimate (1% loss at 120 ms drains 3 MiB in
                        # ~30 s) finishes; a neighbor that stops reading still times out, and the
                        # ceiling bounds the whole send
                        allowance.reschedule(min(loop.time() + timeout, ceiling))
                    if self.state != LinkState.OPEN:
                        raise ConnectionError(f"link to {self.peer_id[:8]} closed while sending")
                    self.channel.send(chunk)
                    self.bytes_sent += len(chunk)
            self._measure_rate(len(data) - self.channel.bufferedAmount, time.monotonic() - started)

    def _measure_rate(self, drained: int, seconds: float) -> None:
        """Fold one large send (bytes that left the buffer, in seconds) into ``rate_bytes_s``."""
        if drained < RATE_SAMPLE_MIN or seconds <= 0:
            return  # small sends only fill the buffer: they say nothing about the link
        sample = drained / seconds
        self.rate_bytes_s = sample if self.rate_bytes_s is None else (
            RATE_SMOOTHING * sample + (1.0 - RATE_SMOOTHING) * self.rate_bytes_s)

    async def close(self, reason: str = "closed") -> None:
        if self.state == LinkState.CLOSED:
            return
        self.closed_reason = self.closed_reason or reason
        self._set_state(LinkState.CLOSED)
        await self.pc.close()
