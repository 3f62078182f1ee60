"""Splitting frames into data-channel messages and reassembling them under strict bounds.

Chunk message layout (big-endian)::

    magic "GC" | transfer_id u32 | index u32 | count u32 | total_len u32 | data

Senders fill every chunk but the last; receivers only require that the chunks of a
transfer add up to exactly ``total_len``. A transfer that is not complete within the timeout,
that exceeds the declared size or chunk count, or that contradicts its first chunk is dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .errors import ChunkError

CHUNK_MAGIC = b"GC"
_CHUNK = struct.Struct(">2sIIII")
CHUNK_HEADER_SIZE = _CHUNK.size  # 18
MAX_MESSAGE_SIZE = 262144  # SCTP max message size accepted by aiortc and Chromium
DEFAULT_MESSAGE_SIZE = MAX_MESSAGE_SIZE


def split_frame(data: bytes, transfer_id: int, message_size: int = DEFAULT_MESSAGE_SIZE) -> Iterator[bytes]:
    """Yield data-channel messages of at most ``message_size`` bytes carrying ``data``."""
    if not CHUNK_HEADER_SIZE < message_size <= MAX_MESSAGE_SIZE:
        raise ValueError(f"message_size must be in ({CHUNK_HEADER_SIZE}, {MAX_MESSAGE_SIZE}]")
    body = message_size - CHUNK_HEADER_SIZE
    count = max(1, -(-len(data) // body))
    view = memoryview(data)
    for index in range(count):
        part = view[index * body : (index + 1) * body]
        yield _CHUNK.pack(CHUNK_MAGIC, transfer_id, index, count, len(data)) + bytes(part)


@dataclass
class _Transfer:
    count: int
    total: int
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)
    received: int = 0


class Reassembler:
    """Collects chunks per transfer id; returns a frame's bytes when its last chunk arrives.

    Bounds: ``max_frame_size`` per transfer, ``max_transfers`` in flight (the oldest is
    dropped beyond it), ``timeout`` seconds per transfer (checked on every chunk and by
    ``expire()``), and total buffered bytes below ``max_transfers * max_frame_size``.
    """

    def __init__(
        self,
        max_frame_size: int,
        max_transfers: int = 4,
        timeout: float = 30.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.max_frame_size = max_frame_size
        self.max_transfers = max_transfers
        self.timeout = timeout
        self._clock = clock or time.monotonic
        self._transfers: dict[int, _Transfer] = {}
        self.dropped: dict[str, int] = {}

    @property
    def buffered(self) -> int:
        return sum(t.received for t in self._transfers.values())

    def _drop(self, transfer_id: int, reason: str) -> None:
        self._transfers.pop(transfer_id, None)
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def expire(self) -> None:
        now = self._clock()
        for tid, t in list(self._transfers.items()):
            if now - t.started > self.timeout:
                self._drop(tid, "timeout")

    def feed(self, message: bytes) -> bytes | None:
        """Add one message; return the complete frame bytes, or None while incomplete.

        Raises ChunkError (and forgets the transfer) on any violation of the bounds.
        """
        self.expire()
        if len(message) < CHUNK_HEADER_SIZE or len(message) > MAX_MESSAGE_SIZE:
            raise ChunkError(f"chunk of {len(message)} bytes outside [{CHUNK_HEADER_SIZE}, {MAX_MESSAGE_SIZE}]")
        magic, tid, index, count, total = _CHUNK.unpack_from(message)
        data = message[CHUNK_HEADER_SIZE:]
        if magic != CHUNK_MAGIC:
            raise ChunkError(f"bad chunk magic {magic!r}")
        if total > self.max_frame_size:
            self._drop(tid, "oversize")
            raise ChunkError(f"declared frame size {total} exceeds {self.max_frame_size}", reason="oversize")
        if count == 0 or index >= count or count > max(1, total):
            self._drop(tid, "bad_count")
            raise ChunkError(f"chunk {index} of {count} for a {total}-byte frame is impossible")
        transfer = self._transfers.get(tid)
        if transfer is None:
            if len(self._transfers) >= self.max_transfers:
                oldest = min(self._transfers, key=lambda k: self._transfers[k].started)
                self._drop(oldest, "too_many_transfers")
            transfer = self._transfers[tid] = _Transfer(count, total, self._clock())
        if (count, total) != (transfer.count, transfer.total):
            self._drop(tid, "inconsistent")
            raise ChunkError("chunk contradicts its transfer's count or size")
        if index in transfer.parts:
            self._drop(tid, "duplicate")
            raise ChunkError(f"duplicate chunk {index}")
        if transfer.received + len(data) > total:
            self._drop(tid, "overflow")
            raise ChunkError("chunks exceed the declared frame size", reason="oversize")
        transfer.parts[index] = data
        transfer.received += len(data)
        if len(transfer.parts) < count:
            return None
        del self._transfers[tid]
        if transfer.received != total:
            self.dropped["short"] = self.dropped.get("short", 0) + 1
            raise ChunkError(f"chunks add up to {transfer.received} bytes, declared {total}")
        return b"".join(transfer.parts[i] for i in range(count))
