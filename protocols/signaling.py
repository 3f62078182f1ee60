"""Signaling messages: JSON text frames on the server's WebSocket (``/ws``).

One pydantic model per message type, discriminated by ``type``; every message carries the
protocol version ``v``. The server fills ``from`` on relayed messages itself: a client can
never speak for another peer. ``parse_client_message`` / ``parse_server_message`` are the
only entry points for bytes from the network.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from . import PROTOCOL_VERSION
from .errors import ProtocolError

HEX_KEY = r"^[0-9a-f]{64}$"
HEX_SIG = r"^[0-9a-f]{128}$"
PEER_ID = r"^[0-9a-f]{32}$"
SWARM_ID = r"^[0-9a-f]{32}$"
MAX_SDP = 64 * 1024
MAX_SIGNAL_MESSAGE = 128 * 1024


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    v: Literal[1] = PROTOCOL_VERSION


class PeerInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    peer_id: str = Field(pattern=PEER_ID)
    public_key: str = Field(pattern=HEX_KEY)
    client: Literal["python", "browser"] = "python"


class IceServer(BaseModel):
    """As in RTCIceServer: STUN/TURN URLs with optional TURN credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    urls: list[str] = Field(min_length=1, max_length=8)
    username: str | None = Field(default=None, max_length=256)
    credential: str | None = Field(default=None, max_length=256)


ICE_URL_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def ice_server_from_spec(spec: str) -> IceServer:
    """``URL`` or ``URL,USERNAME,CREDENTIAL`` (the ``--ice-server`` form) as an ``IceServer``.

    ValueError, naming the spec and the accepted forms, for anything else: a URL without a
    ``stun:``/``stuns:``/``turn:``/``turns:`` scheme (RFC 7064/7065), one credential field
    without the other, or a TURN URL without credentials.
    """
    url, *cred = (part.strip() for part in spec.split(","))
    if len(cred) not in (0, 2) or not url.lower().startswith(ICE_URL_SCHEMES):
        raise ValueError(f"{spec!r}: use stun:HOST[:PORT], or turn:HOST[:PORT]?transport=udp,USERNAME,CREDENTIAL")
    if url.lower().startswith(("turn:", "turns:")) and not cred:
        raise ValueError(f"{spec!r}: a TURN server needs USERNAME,CREDENTIAL after the URL")
    return IceServer(urls=[url], username=cred[0] if cred else None, credential=cred[1] if cred else None)


# ---- server -> client -------------------------------------------------------------------


class Challenge(_Message):
    """First message on every connection: sign this nonce to prove key possession."""

    type: Literal["challenge"] = "challenge"
    nonce: str = Field(pattern=r"^[0-9a-f]{64}$")


class Welcome(_Message):
    type: Literal["welcome"] = "welcome"
    peer_id: str = Field(pattern=PEER_ID)
    swarm_id: str = Field(pattern=SWARM_ID)
    peers: list[PeerInfo] = Field(max_length=4096)
    shard: int = Field(ge=0, description="dataset shard this peer should train on")
    ice_servers: list[IceServer] = Field(default_factory=list, max_length=16)


class PeerJoined(_Message):
    type: Literal["peer_joined"] = "peer_joined"
    peer: PeerInfo


class PeerLeft(_Message):
    type: Literal["peer_left"] = "peer_left"
    peer_id: str = Field(pattern=PEER_ID)


class ErrorCode:
    """Codes of ``error`` messages; each a one-line meaning."""

    MALFORMED = "malformed"  # not JSON, unknown type, or fields out of bounds
    TOO_LARGE = "too_large"  # message above the size limit
    NOT_JOINED = "not_joined"  # relay or leave before a successful join
    BAD_PROOF = "bad_proof"  # join signature does not verify against the nonce
    UNKNOWN_SWARM = "unknown_swarm"  # no manifest published under this swarm id
    SWARM_FULL = "swarm_full"  # per-swarm peer limit reached
    ALREADY_JOINED = "already_joined"  # key already connected, or second join
    UNKNOWN_PEER = "unknown_peer"  # relay target is not in the swarm
    RATE_LIMITED = "rate_limited"  # too many messages


class Error(_Message):
    type: Literal["error"] = "error"
    code: str = Field(max_length=64)
    message: str = Field(max_length=1024)


# ---- client -> server (and relayed to one peer with ``from`` set) -----------------------


class Join(_Message):
    type: Literal["join"] = "join"
    swarm_id: str = Field(pattern=SWARM_ID)
    public_key: str = Field(pattern=HEX_KEY)
    signature: str = Field(pattern=HEX_SIG, description="Ed25519 over crypto.join_message(nonce, swarm_id)")
    client: Literal["python", "browser"] = "python"


class Leave(_Message):
    type: Literal["leave"] = "leave"


class Ping(_Message):
    type: Literal["ping"] = "ping"


class Pong(_Message):
    type: Literal["pong"] = "pong"


MAX_RECEIPTS = 64  # per report: peers send the receipts that changed since their last report


class Receipt(BaseModel):
    """A signed vouch: the reporting peer verified and accepted ``frames`` frames from ``peer_id``
    during its ``session``. Ed25519 by the reporter's identity key over
    ``crypto.receipt_message(swarm_id, reporter's peer id, peer_id, session, frames)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    peer_id: str = Field(pattern=PEER_ID, description="the neighbor credited")
    session: str = Field(pattern=r"^[0-9a-f]{16}$", description="8 random bytes, fresh per process start of the signer")
    frames: int = Field(ge=1, le=10**12, description="frames accepted from peer_id in this session, cumulative")
    signature: str = Field(pattern=HEX_SIG)


class Report(_Message):
    """A peer's progress for the swarm's contribution board: claims and receipts, never weights.

    ``step`` and ``test_acc`` are the peer's own claims, shown as such. Credit comes only from
    ``receipts``: each one signed by the peer that accepted the frames, about another peer, so
    nobody can vouch for itself, and the server counts each vouching key once.
    """

    type: Literal["report"] = "report"
    step: int = Field(ge=0, le=10**12)
    test_acc: float | None = Field(default=None, ge=0.0, le=1.0)
    receipts: list[Receipt] = Field(default_factory=list, max_length=MAX_RECEIPTS)


class _Relayed(_Message):
    to: str = Field(pattern=PEER_ID)
    from_: str | None = Field(default=None, alias="from", pattern=PEER_ID)


class LinkAuth(BaseModel):
    """The sender's proof that the DTLS certificate in ``sdp`` is its own: Ed25519 by its identity
    key over ``crypto.offer_message`` / ``crypto.answer_message`` (fingerprints, both peer ids,
    the swarm id, this ``nonce`` and, in an answer, the offer's nonce)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    nonce: str = Field(pattern=r"^[0-9a-f]{64}$", description="32 random bytes, fresh per offer or answer")
    signature: str = Field(pattern=HEX_SIG)


class Offer(_Relayed):
    type: Literal["offer"] = "offer"
    sdp: str = Field(max_length=MAX_SDP)
    auth: LinkAuth


class Answer(_Relayed):
    type: Literal["answer"] = "answer"
    sdp: str = Field(max_length=MAX_SDP)
    auth: LinkAuth


class Candidate(_Relayed):
    """One trickled ICE candidate; ``candidate`` null means end-of-candidates."""

    type: Literal["candidate"] = "candidate"
    candidate: str | None = Field(max_length=1024)
    sdp_mid: str | None = Field(default=None, max_length=64)
    sdp_mline_index: int | None = Field(default=None, ge=0, le=64)


# ---- DTLS fingerprints of an SDP (what link auth signs) -----------------------------------

MAX_FINGERPRINTS = 16
# every character some SDP parser could take as a line break, besides "\n" and a "\r" before it
# (Python's str.splitlines breaks on all of these): refused, so every parser sees the same lines
_ODD_BREAKS = re.compile("\r(?!\n)|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# ASCII-only case folding, as JavaScript's /i: the same lines match in both languages
_FINGERPRINT_ATTR = re.compile(r"^[ \t]*a=fingerprint:", re.IGNORECASE | re.ASCII)
_FINGERPRINT = re.compile(r"^[ \t]*a=fingerprint:([a-z0-9-]{1,16})[ \t]+((?:[0-9a-f]{2}:){0,63}[0-9a-f]{2})[ \t]*$",
                          re.IGNORECASE | re.ASCII)  # fmt: skip


def sdp_fingerprints(sdp: str) -> list[str]:
    """The DTLS certificate fingerprints an SDP declares, canonical: ``"<algorithm> <VALUE>"`` with
    the algorithm lowercase and the value uppercase hex pairs, unique, sorted; [] when there are none.

    Raises ``ProtocolError`` (reason ``bad_sdp``) for an SDP with ambiguous line breaks, a
    fingerprint attribute that does not parse, or more than 16 fingerprints. Every line that
    looks like a fingerprint attribute counts, at any level and in any letter case, so no SDP
    parser can find a fingerprint here that the signature does not cover.
    """
    if _ODD_BREAKS.search(sdp):
        raise ProtocolError("SDP line breaks must be \\r\\n or \\n", reason="bad_sdp")
    found: set[str] = set()
    for line in sdp.split("\n"):
        line = line.removesuffix("\r")
        if not _FINGERPRINT_ATTR.match(line):
            continue
        m = _FINGERPRINT.match(line)
        if m is None:
            raise ProtocolError(f"unparsable fingerprint attribute {line[:120]!r}", reason="bad_sdp")
        found.add(f"{m.group(1).lower()} {m.group(2).upper()}")
    if len(found) > MAX_FINGERPRINTS:
        raise ProtocolError(f"{len(found)} fingerprints in one SDP (at most {MAX_FINGERPRINTS})", reason="bad_sdp")
    return sorted(found)


ClientMessage = Annotated[Join | Leave | Ping | Report | Offer | Answer | Candidate, Field(discriminator="type")]
ServerMessage = Annotated[
    Challenge | Welcome | PeerJoined | PeerLeft | Error | Pong | Offer | Answer | Candidate,
    Field(discriminator="type"),
]
RELAYED_TYPES = ("offer", "answer", "candidate")

_client_adapter: TypeAdapter[Any] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[Any] = TypeAdapter(ServerMessage)


def _parse(adapter: TypeAdapter[Any], text: str | bytes) -> Any:
    if len(text) > MAX_SIGNAL_MESSAGE:
        raise ProtocolError(f"message of {len(text)} bytes exceeds {MAX_SIGNAL_MESSAGE}", reason="too_large")
    try:
        # strict: a JSON string is never coerced to a number or a bool (JSON Schema's rule too,
        # so the browser's schema validation refuses exactly what this refuses)
        return adapter.validate_json(text, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ProtocolError(f"invalid signaling message at {where}: {first['msg']}") from None


def parse_client_message(text: str | bytes) -> Join | Leave | Ping | Report | Offer | Answer | Candidate:
    return _parse(_client_adapter, text)  # type: ignore[no-any-return]


def parse_server_message(text: str | bytes) -> Any:
    return _parse(_server_adapter, text)


def dump(message: BaseModel) -> str:
    """Serialize with wire names (``from``), omitting nulls only where the model allows."""
    return message.model_dump_json(by_alias=True, exclude_none=False)


def json_schemas() -> dict[str, Any]:
    """JSON Schema of both directions, for the browser peer and other implementations."""
    return {
        "client_to_server": _client_adapter.json_schema(by_alias=True),
        "server_to_client": _server_adapter.json_schema(by_alias=True),
    }


def schema_text() -> str:
    return json.dumps(json_schemas(), indent=2, sort_keys=True) + "\n"
