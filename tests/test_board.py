"""The contribution board believes evidence, not members (issue 14, item 5).

A real server on 127.0.0.1, real WebSocket clients that join with real keys, real Ed25519
receipts. Each attack of the security review is repeated: a member that claims accuracy 1.0,
1e12 steps, and vouches a million times for another peer (or for itself) must get nothing from
it; forged, unsigned, replayed and over-claiming receipts give no credit.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.receipts import REFRESH_S, ReceiptBook, make_receipt
from protocols.crypto import receipt_message, verify
from protocols.signaling import PeerJoined, PeerLeft, Ping, Pong, Receipt, Report
from test_signaling_server import (  # noqa: F401  (fixtures)
    Client,
    Server,
    http,
    join,
    join_pair,
    publisher,
    server,
    start,
    swarm,
)
from tiny_swarm import Publication

SESSION = bytes.fromhex("00112233445566aa")


async def handled(*clients: Client) -> None:
    """Every message each client sent before was handled: the pong to a fresh ping comes (after
    any membership news, and never an error)."""
    for c in clients:
        await c.send(Ping())
        while not isinstance(message := await c.recv(), Pong):
            assert isinstance(message, PeerJoined | PeerLeft), message


async def board(http: aiohttp.ClientSession, server: Server, swarm_id: str) -> dict[str, Any]:
    async with http.get(f"{server.base}/api/swarms/{swarm_id}/board") as resp:
        assert resp.status == 200
        return await resp.json()  # type: ignore[no-any-return]


def rows(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["peer_id"]: r for r in body["peers"]}


def receipt(voucher: Client, swarm_id: str, peer_id: str, frames: int, session: bytes = SESSION) -> Receipt:
    return make_receipt(voucher.key, swarm_id, peer_id, session, frames)


async def test_credit_comes_only_from_receipts_other_keys_signed(
    http: aiohttp.ClientSession, swarm: Publication, server: Server
) -> None:
    sid = swarm.swarm_id
    a, b = await join_pair(http, server, sid)
    await a.send(Report(step=100, test_acc=0.5, receipts=[receipt(a, sid, b.peer_id, 7)]))
    await b.send(Report(step=90, test_acc=0.6, receipts=[receipt(b, sid, a.peer_id, 5)]))
    await handled(a, b)
    body = await board(http, server, sid)
    r = rows(body)
    assert (r[a.peer_id]["vouching_peers"], r[a.peer_id]["updates_verified_by_others"]) == (1, 5)
    assert (r[b.peer_id]["vouching_peers"], r[b.peer_id]["updates_verified_by_others"]) == (1, 7)
    assert r[a.peer_id]["claimed_steps"] == 100 and r[a.peer_id]["claimed_test_acc"] == 0.5 and r[a.peer_id]["online"]
    assert body["refused_receipts"] == {}
    # the evidence is public: anyone can re-verify each receipt against the voucher's key
    async with http.get(f"{server.base}/api/swarms/{sid}/board/{a.peer_id}/receipts") as resp:
        (evidence,) = (await resp.json())["receipts"]
    assert evidence["voucher"] == b.peer_id and evidence["frames"] == 5
    verify(bytes.fromhex(evidence["voucher_key"]), bytes.fromhex(evidence["signature"]),
           receipt_message(sid, b.peer_id, a.peer_id, bytes.fromhex(evidence["session"]), evidence["frames"]))  # fmt: skip
    async with http.get(f"{server.base}/api/swarms/{sid}/board/{'0' * 32}/receipts") as resp:
        assert resp.status == 404
    async with http.get(f"{server.base}/api/swarms/{'0' * 32}/board") as resp:
        assert resp.status == 404


async def test_forged_unsigned_replayed_self_and_unknown_receipts_give_no_credit(
    http: aiohttp.ClientSession, swarm: Publication, server: Server
) -> None:
    sid = swarm.swarm_id
    a, b = await join_pair(http, server, sid)
    outsider = Ed25519PrivateKey.generate()  # never joined
    good = receipt(a, sid, b.peer_id, 3)
    forged = [
        make_receipt(outsider, sid, b.peer_id, SESSION, 9),  # signed by a key that is not the reporter's
        good.model_copy(update={"frames": 30}),  # a's signature over 3 frames, claiming 30
        make_receipt(a.key, "ab" * 16, b.peer_id, SESSION, 11),  # signed for another swarm
        good.model_copy(update={"peer_id": "cd" * 16}),  # about a peer that never joined
        receipt(a, sid, a.peer_id, 12),  # about itself
    ]
    await a.send(Report(step=1, receipts=forged))
    await handled(a)
    assert rows(await board(http, server, sid))[b.peer_id]["vouching_peers"] == 0
    # unsigned: the message is refused whole at the boundary
    unsigned = '{"v":1,"type":"report","step":1,"receipts":[{"peer_id":"%s","session":"%s","frames":3}]}'
    await a.send(unsigned % (b.peer_id, SESSION.hex()))
    await a.expect_error("malformed")
    await a.send(Report(step=1, receipts=[good]))
    await a.send(Report(step=1, receipts=[good, good]))  # replayed: nothing new
    await handled(a)
    body = await board(http, server, sid)
    assert (rows(body)[b.peer_id]["vouching_peers"], rows(body)[b.peer_id]["updates_verified_by_others"]) == (1, 3)
    assert body["refused_receipts"] == {"bad_signature": 3, "unknown_peer": 1, "self": 1, "stale": 2}, body


async def test_one_member_raises_another_peer_by_at_most_one_voucher(
    http: aiohttp.ClientSession, swarm: Publication, server: Server
) -> None:
    """The review's attack: a member raised another peer's "verified by others" count by a million."""
    sid = swarm.swarm_id
    a, b = await join_pair(http, server, sid)
    await a.send(Report(step=1, receipts=[receipt(a, sid, b.peer_id, 10**6)]))  # over-claiming: refused
    await a.send(Report(step=1, receipts=[receipt(a, sid, b.peer_id, 20)]))
    # many sessions of one key: still one voucher, and its frames stay within the rate bound
    await a.send(Report(step=1, receipts=[receipt(a, sid, b.peer_id, 20, os.urandom(8)) for _ in range(3)]))
    await handled(a)
    body = await board(http, server, sid)
    r = rows(body)[b.peer_id]
    assert r["vouching_peers"] == 1 and r["updates_verified_by_others"] <= 80, r
    assert body["refused_receipts"]["over_claim"] >= 1, body


async def test_claims_neither_top_the_board_nor_set_the_swarm_accuracy(
    http: aiohttp.ClientSession, swarm: Publication, server: Server
) -> None:
    """The review's attack: one member set the best accuracy to 1.0 and its steps to 1e12."""
    sid = swarm.swarm_id
    liar, h1 = await join_pair(http, server, sid)
    h2, _ = await join(http, server, sid)
    await liar.send(Report(step=10**12, test_acc=1.0, receipts=[receipt(liar, sid, h1.peer_id, 4)]))
    await h1.send(Report(step=300, test_acc=0.71, receipts=[receipt(h1, sid, h2.peer_id, 6), receipt(h1, sid, liar.peer_id, 2)]))
    await h2.send(Report(step=310, test_acc=0.73, receipts=[receipt(h2, sid, h1.peer_id, 6)]))
    await handled(liar, h1, h2)
    body = await board(http, server, sid)
    order = [r["peer_id"] for r in body["peers"]]
    assert order[0] == h1.peer_id and order[-1] == liar.peer_id, body  # h1: 2 vouchers; the liar: 1 and few frames
    assert rows(body)[liar.peer_id]["claimed_steps"] == 10**12  # shown, as a claim
    assert body["swarm_accuracy"] == 0.73, body  # the median of [0.71, 0.73, 1.0]
    async with http.get(f"{server.base}/api/swarms?details=1") as resp:
        (row,) = (await resp.json())["swarms"]
    assert row["swarm_accuracy"] == 0.73


async def test_a_lone_claim_is_no_swarm_accuracy(http: aiohttp.ClientSession, swarm: Publication, server: Server) -> None:
    sid = swarm.swarm_id
    a, b = await join_pair(http, server, sid)
    await a.send(Report(step=5, test_acc=1.0))  # nobody vouches for a
    await b.send(Report(step=5, test_acc=0.4, receipts=[receipt(b, sid, a.peer_id, 1)]))
    await handled(a, b)
    assert (await board(http, server, sid))["swarm_accuracy"] is None  # one vouched claim corroborates nothing


async def test_reports_are_rate_limited(http: aiohttp.ClientSession, swarm: Publication, server: Server) -> None:
    sid = swarm.swarm_id
    a, b = await join_pair(http, server, sid)
    for frames in range(1, 11):  # ten reports at once: the burst (4) is taken, the rest refused whole
        await a.send(Report(step=frames, receipts=[receipt(a, sid, b.peer_id, frames)]))
    for _ in range(6):  # each refusal is answered: the sender knows to send those receipts again
        await a.expect_error("rate_limited")
    await handled(a)
    body = await board(http, server, sid)
    assert rows(body)[b.peer_id]["updates_verified_by_others"] == 4 and rows(body)[a.peer_id]["claimed_steps"] == 4
    assert body["refused_receipts"] == {"report_rate": 6}


def test_a_receipt_book_sends_what_changed_and_all_again_on_request() -> None:
    key = Ed25519PrivateKey.generate()
    counts = {"aa" * 16: 3, "bb" * 16: 1}
    book = ReceiptBook(key, "5eed" * 8, counts, session=SESSION)
    assert [(r.peer_id, r.frames) for r in book.due()] == [("aa" * 16, 3), ("bb" * 16, 1)]
    assert book.due() == []
    counts["bb" * 16] = 2
    (only,) = book.due()
    assert (only.peer_id, only.frames, only.session) == ("bb" * 16, 2, SESSION.hex())
    book.resend_all()
    assert len(book.due(limit=1)) == 1 and len(book.due()) == 1  # the rest follows in the next report
    assert book.due() == []


def test_a_receipt_book_sends_unchanged_receipts_again_after_a_minute() -> None:
    """A report the server dropped (rate limits, a session ending in flight) costs a minute at most."""
    now = [0.0]
    counts = {"aa" * 16: 3, "bb" * 16: 1}
    book = ReceiptBook(Ed25519PrivateKey.generate(), "5eed" * 8, counts, session=SESSION, clock=lambda: now[0])
    assert len(book.due()) == 2
    now[0] = 30.0
    counts["bb" * 16] = 5
    assert [r.peer_id for r in book.due()] == ["bb" * 16]
    now[0] = REFRESH_S + 1
    assert [r.peer_id for r in book.due()] == ["aa" * 16]  # bb was sent 31 s ago
    now[0] = 30.0 + REFRESH_S
    assert [r.peer_id for r in book.due()] == ["bb" * 16]


@pytest.mark.parametrize("frames", [0, 10**12 + 1])
def test_a_receipt_vouches_for_one_to_a_trillion_frames(frames: int) -> None:
    with pytest.raises(ValueError):
        receipt_message("5eed" * 8, "aa" * 16, "bb" * 16, SESSION, frames)
