"""Signaling messages: every type survives the wire, and anything off-contract is a ProtocolError."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from protocols.errors import ProtocolError
from protocols.signaling import (
    MAX_SDP,
    MAX_SIGNAL_MESSAGE,
    Answer,
    Candidate,
    Challenge,
    Error,
    ErrorCode,
    IceServer,
    Join,
    Leave,
    LinkAuth,
    Offer,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Ping,
    Receipt,
    Report,
    Pong,
    Welcome,
    dump,
    json_schemas,
    parse_client_message,
    parse_server_message,
)

A, B = "a" * 32, "b" * 32
KEY, SIG = "c" * 64, "d" * 128
PEER = PeerInfo(peer_id=A, public_key=KEY, client="browser")
AUTH = LinkAuth(nonce="f" * 64, signature=SIG)
WIRE_AUTH = {"nonce": "f" * 64, "signature": SIG}

CLIENT: list[BaseModel] = [
    Join(swarm_id=B, public_key=KEY, signature=SIG, client="browser"),
    Leave(),
    Ping(),
    Report(step=120, test_acc=0.91, receipts=[Receipt(peer_id=A, session="0" * 16, frames=3, signature=SIG)]),
    Offer(to=B, sdp="v=0\r\n", auth=AUTH),
    Answer(to=B, sdp="v=0\r\n", auth=AUTH),
    Candidate(to=B, candidate="candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host", sdp_mid="0", sdp_mline_index=0),
    Candidate(to=B, candidate=None),
]
SERVER: list[BaseModel] = [
    Challenge(nonce="e" * 64),
    Welcome(peer_id=A, swarm_id=B, peers=[PEER], shard=2,
            ice_servers=[IceServer(urls=["turn:turn.example:3478"], username="u", credential="p")]),  # fmt: skip
    PeerJoined(peer=PEER),
    PeerLeft(peer_id=A),
    Error(code=ErrorCode.BAD_PROOF, message="no"),
    Pong(),
    Offer(to=B, sdp="v=0\r\n", auth=AUTH, **{"from": A}),
    Answer(to=B, sdp="v=0\r\n", auth=AUTH, **{"from": A}),
    Candidate(to=B, candidate=None, **{"from": A}),
]


@pytest.mark.parametrize("message", CLIENT, ids=lambda m: m.type)  # type: ignore[attr-defined]
def test_client_messages_round_trip(message: BaseModel) -> None:
    text = dump(message)
    assert parse_client_message(text) == message
    assert parse_client_message(text.encode("utf-8")) == message
    assert json.loads(text)["v"] == 1


@pytest.mark.parametrize("message", SERVER, ids=lambda m: m.type)  # type: ignore[attr-defined]
def test_server_messages_round_trip(message: BaseModel) -> None:
    assert parse_server_message(dump(message)) == message


def test_relayed_messages_use_the_from_alias_on_the_wire() -> None:
    relayed = Offer(to=B, sdp="x", auth=AUTH).model_copy(update={"from_": A})
    wire = json.loads(dump(relayed))
    assert wire["from"] == A and "from_" not in wire and wire["auth"] == WIRE_AUTH
    parsed = parse_server_message(json.dumps({"v": 1, "type": "offer", "to": B, "from": A, "sdp": "x", "auth": WIRE_AUTH}))
    assert isinstance(parsed, Offer) and parsed.from_ == A and parsed.auth == AUTH
    assert json.loads(dump(Offer(to=B, sdp="x", auth=AUTH)))["from"] is None  # clients leave it to the server


@pytest.mark.parametrize("kind", ["offer", "answer"])
@pytest.mark.parametrize("auth", [None, {"nonce": "f" * 64}, {"nonce": "f" * 62, "signature": SIG},
                                  {"nonce": "F" * 64, "signature": SIG}, {**WIRE_AUTH, "key": KEY}])  # fmt: skip
def test_offers_and_answers_carry_a_well_formed_link_auth(kind: str, auth: dict | None) -> None:
    message = {"v": 1, "type": kind, "to": B, "sdp": "x"} | ({} if auth is None else {"auth": auth})
    for parse in (parse_client_message, parse_server_message):
        with pytest.raises(ProtocolError, match="auth") as info:
            parse(json.dumps(message))
        assert info.value.reason == "malformed"


def test_a_null_candidate_means_end_of_candidates_but_must_be_present() -> None:
    parsed = parse_client_message(json.dumps({"v": 1, "type": "candidate", "to": B, "candidate": None}))
    assert isinstance(parsed, Candidate) and parsed.candidate is None
    with pytest.raises(ProtocolError, match="candidate"):
        parse_client_message(json.dumps({"v": 1, "type": "candidate", "to": B}))


@pytest.mark.parametrize(
    "payload",
    [
        {"v": 1, "type": "ping", "extra": True},
        {"v": 1, "type": "offer", "to": B, "sdp": "x", "auth": WIRE_AUTH, "ttl": 3},
        {"v": 1, "type": "join", "swarm_id": B, "public_key": KEY, "signature": SIG, "admin": True},
    ],
)
def test_extra_fields_are_rejected(payload: dict) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(json.dumps(payload))
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    "payload",
    [
        {"v": 2, "type": "ping"},  # another protocol version
        {"v": 1, "type": "welcome", "peer_id": A, "swarm_id": B, "peers": [], "shard": 0},  # server-only type
        {"v": 1, "type": "dance"},
        {"v": 1},
        {"v": 1, "type": "offer", "to": A.upper(), "sdp": "x", "auth": WIRE_AUTH},  # peer ids are lowercase hex
        {"v": 1, "type": "join", "swarm_id": B, "public_key": KEY, "signature": SIG[:-2]},
        {"v": 1, "type": "join", "swarm_id": B, "public_key": KEY, "signature": SIG, "client": "curl"},
        {"v": 1, "type": "candidate", "to": B, "candidate": None, "sdp_mline_index": -1},
        {"v": 1, "type": "report", "step": 1, "accepted_from": {A: 10**6}},  # unsigned counts: gone for receipts
        {"v": 1, "type": "report", "step": 1, "receipts": [{"peer_id": A, "session": "0" * 16, "frames": 0, "signature": SIG}]},
        {"v": 1, "type": "report", "step": 1, "receipts": [{"peer_id": A, "session": "0" * 15, "frames": 1, "signature": SIG}]},
        {"v": 1, "type": "report", "step": 1, "receipts": [{"peer_id": A, "session": "0" * 16, "frames": 1}]},
        {"v": 1, "type": "report", "step": 1,
         "receipts": [{"peer_id": A, "session": "0" * 16, "frames": 1, "signature": SIG}] * 65},  # fmt: skip
    ],
)
def test_values_out_of_contract_are_rejected(payload: dict) -> None:
    with pytest.raises(ProtocolError):
        parse_client_message(json.dumps(payload))


def test_oversize_messages_are_rejected_before_parsing() -> None:
    huge = json.dumps({"v": 1, "type": "offer", "to": B, "sdp": "x" * MAX_SIGNAL_MESSAGE})
    with pytest.raises(ProtocolError) as info:
        parse_client_message(huge)
    assert info.value.reason == "too_large"
    with pytest.raises(ProtocolError, match="sdp"):  # a field above its own bound, inside the message limit
        parse_client_message(json.dumps({"v": 1, "type": "offer", "to": B, "sdp": "x" * (MAX_SDP + 1), "auth": WIRE_AUTH}))


@pytest.mark.parametrize("text", [b"", b"{", b"not json", b"\xff\xfe{}", b"[]", b"null", b'{"v": 1, "type": "ping"} x'])
def test_malformed_json_is_a_protocol_error(text: bytes) -> None:
    for parse in (parse_client_message, parse_server_message):
        with pytest.raises(ProtocolError) as info:
            parse(text)
        assert info.value.reason == "malformed"


def test_the_schema_names_every_message_type_of_each_direction() -> None:
    schemas = json_schemas()
    client = set(schemas["client_to_server"]["discriminator"]["mapping"])
    server = set(schemas["server_to_client"]["discriminator"]["mapping"])
    assert client == {m.type for m in CLIENT}  # type: ignore[attr-defined]
    assert server == {m.type for m in SERVER}  # type: ignore[attr-defined]
