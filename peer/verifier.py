"""Admission of update frames: every check a frame must pass before its weights are used.

Checks run cheapest first; the replay window only advances after the signature verified,
so a forged frame can never burn a legitimate sequence number. Each reject is counted by
reason (the reason strings of docs/PROTOCOL.md, shared with the browser peer).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from protocols.codecs import Shape
from protocols.errors import ProtocolError
from protocols.frame import Frame, FrameKind, decode_frame, parse_header

WEIGHT_KINDS = (FrameKind.EXCHANGE_REQUEST, FrameKind.EXCHANGE_RESPONSE, FrameKind.PULL_RESPONSE)


class FrameRejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class FrameVerifier:
    def __init__(
        self,
        *,
        swarm_id: bytes,
        model_id: bytes,
        own_key: bytes,
        is_known: Callable[[bytes], bool],
        shapes: Sequence[Shape],
        max_frame_size: int,
        max_sessions: int = 4096,
    ) -> None:
        self.swarm_id, self.model_id, self.own_key = swarm_id, model_id, own_key
        self.is_known = is_known
        self.shapes = tuple(tuple(s) for s in shapes)
        self.max_frame_size = max_frame_size
        self._last_seq: OrderedDict[tuple[bytes, int], int] = OrderedDict()
        self._max_sessions = max_sessions
        self.rejected: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()  # by sender key hex

    def reject(self, reason: str, detail: str) -> FrameRejected:
        self.rejected[reason] += 1
        return FrameRejected(reason, detail)

    def admit(self, data: bytes, link_key: bytes) -> tuple[Frame, list[np.ndarray]]:
        """Return the verified frame and its decoded tensors, or raise FrameRejected."""
        if len(data) > self.max_frame_size:
            raise self.reject("oversize", f"{len(data)} bytes > {self.max_frame_size}")
        try:
            header, _ = parse_header(data)
        except ProtocolError as exc:
            raise self.reject(exc.reason, str(exc)) from None
        if header.sender != link_key:
            raise self.reject("wrong_sender", "frame signed by a key other than this link's peer")
        if not self.is_known(header.sender):
            raise self.reject("unknown_sender", "sender is not a member of this swarm")
        if header.swarm_id != self.swarm_id:
            raise self.reject("wrong_swarm", header.swarm_id.hex())
        if header.model_id != self.model_id:
            raise self.reject("wrong_model", header.model_id.hex())
        if header.receiver != self.own_key:
            raise self.reject("wrong_receiver", header.receiver.hex())
        try:
            frame = decode_frame(data)
        except ProtocolError as exc:
            raise self.reject(exc.reason, str(exc)) from None
        session = (header.sender, header.session)
        if header.seq <= self._last_seq.get(session, -1):
            raise self.reject("replay", f"seq {header.seq} already seen")
        self._remember(session, header.seq)
        tensors: list[np.ndarray] = []
        if header.kind in WEIGHT_KINDS:
            if header.shapes != self.shapes:
                raise self.reject("bad_shape", "tensor layout differs from the swarm's model")
            try:
                tensors = frame.tensors()
            except ProtocolError as exc:
                raise self.reject(exc.reason, str(exc)) from None
        self.accepted[header.sender.hex()] += 1
        return frame, tensors

    def _remember(self, session: tuple[bytes, int], seq: int) -> None:
        self._last_seq[session] = seq
        self._last_seq.move_to_end(session)
        while len(self._last_seq) > self._max_sessions:
            self._last_seq.popitem(last=False)
