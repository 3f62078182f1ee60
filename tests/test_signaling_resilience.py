"""No message another peer can send ends a peer's signaling session (security review, items 2-3).

The review's attack: an offer with junk SDP, then a ``candidate`` with a malformed candidate
string. aiortc accepts the junk SDP (no media sections) and raises ``AssertionError`` on the
candidate; before the fix that exception ended the signaling loop for good. Then a flood of
1,000 offers: a peer answers at most a few (per-sender offer rate limit), refuses and counts
the rest, stays registered, and still links with an honest newcomer.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.link import LinkState, PeerLink
from peer.mesh import OFFER_BURST, Mesh, MeshConfig
from protocols.crypto import offer_message, sign
from protocols.signaling import Answer, Candidate, LinkAuth, Offer, sdp_fingerprints

from test_mesh_link import MAX_FRAME, TIMEOUT, eventually, swarm_url  # noqa: F401  (swarm_url is a fixture)


async def _ignore(link: PeerLink, data: bytes) -> None:
    return None


def signed_offer(sender: Mesh, to: str, sdp: str) -> Offer:
    """An offer ``sender`` signs as the protocol asks (a member can sign junk), so what refuses it is the SDP."""
    nonce = secrets.token_bytes(32)
    fingerprints = sdp_fingerprints(sdp) or ["sha-256 00"]  # junk has none; the receiver refuses it before verifying
    signature = sign(sender.key, offer_message(sender.swarm_id, sender.peer_id, to, nonce, fingerprints))
    return Offer(to=to, sdp=sdp, auth=LinkAuth(nonce=nonce.hex(), signature=signature.hex()))


async def _joined(ws_url: str, swarm_id: str, **config: object) -> Mesh:
    mesh = Mesh(Ed25519PrivateKey.generate(), ws_url, swarm_id, MeshConfig(**config), max_frame_size=MAX_FRAME,  # type: ignore[arg-type]
                on_frame=_ignore)  # fmt: skip
    await asyncio.wait_for(mesh.start(), TIMEOUT)
    mesh.accept_links()
    return mesh


@pytest.mark.timeout(120)
async def test_junk_offers_and_candidates_and_a_flood_leave_the_peer_registered_and_linking(
    swarm_url: tuple[str, str],  # noqa: F811
) -> None:
    from peer.ice import use_candidate_addresses

    ws_url, swarm_id = swarm_url
    use_candidate_addresses(["127.0.0.1"])
    meshes: list[Mesh] = []
    try:
        victim = await _joined(ws_url, swarm_id, degree=0, max_degree=4, maintain_interval=0.1)
        attacker = await _joined(ws_url, swarm_id, degree=0, max_degree=4)
        meshes += [victim, attacker]
        await eventually(lambda: victim.peer_id in attacker.known and attacker.peer_id in victim.known, TIMEOUT,
                         "victim and attacker know each other")  # fmt: skip
        replies: list[str] = []  # what the victim sent the attacker
        real_dispatch = attacker._dispatch

        async def count(msg: object) -> None:
            if isinstance(msg, Offer | Answer | Candidate) and msg.from_ == victim.peer_id:
                replies.append(msg.type)
            await real_dispatch(msg)

        attacker._dispatch = count  # type: ignore[method-assign]

        # 1. the review's two messages: junk SDP (aiortc parses it as an offer with no sections), a malformed candidate
        await attacker._send(signed_offer(attacker, victim.peer_id, "junk"))
        await attacker._send(Candidate(to=victim.peer_id, candidate="candidate:garbage", sdp_mid="0"))
        # 2. the same candidate after a real offer, when the victim holds a link the candidate would go to
        await attacker.connect_to(attacker.known[victim.peer_id])
        await attacker._send(Candidate(to=victim.peer_id, candidate="candidate:garbage", sdp_mid="0"))
        await attacker._send(Candidate(to=victim.peer_id, candidate="candidate:1 1 udp 1 1.2.3.4 x typ host", sdp_mid="0"))
        await eventually(lambda: victim.stats.signal_rejects.get("bad_candidate", 0) >= 2, TIMEOUT,
                         "the malformed candidates were refused and counted")  # fmt: skip
        assert victim.stats.signal_rejects.get("bad_sdp", 0) == 1  # the junk offer got no answer
        # 3. a flood of offers, paced under the server's own per-connection limit so all of them reach the victim
        for i in range(1000):
            await attacker._send(signed_offer(attacker, victim.peer_id, "junk" if i % 2 else "v=0\r\n"))
            if i % 50 == 49:
                await asyncio.sleep(0.3)
        await eventually(lambda: sum(victim.stats.signal_rejects.values()) >= 1000, TIMEOUT, "every offer was seen")
        await asyncio.sleep(0.5)  # any late answer would have arrived by now

        assert victim.stats.sessions == 1, "the victim's signaling session was ended"
        assert victim.connected.is_set()
        assert victim.stats.signal_rejects_by_sender[attacker.peer_id] >= 1000
        assert victim.stats.signal_rejects.get("offer_rate", 0) >= 900
        print(f"victim refused {dict(victim.stats.signal_rejects)}; sent the attacker {len(replies)} messages: {replies}")
        assert len(replies) <= 2 * (OFFER_BURST + 2), replies  # no amplification: a handful of answers, not 2,000

        # the victim is still registered and links with an honest newcomer
        honest = await _joined(ws_url, swarm_id, degree=0, max_degree=4)
        meshes.append(honest)
        await eventually(lambda: victim.peer_id in honest.known and honest.peer_id in victim.known, TIMEOUT,
                         "the newcomer sees the victim")  # fmt: skip
        link = await honest.connect_to(honest.known[victim.peer_id])
        await asyncio.wait_for(link.opened.wait(), TIMEOUT)
        assert link.state == LinkState.OPEN
    finally:
        await asyncio.gather(*(m.close() for m in meshes), return_exceptions=True)
        use_candidate_addresses(None)


async def test_the_signaling_loop_reconnects_whatever_ends_the_session(swarm_url: tuple[str, str], tmp_path: Path) -> None:  # noqa: F811
    """A bug in a handler (here: an exception no handler expects) ends the session; the peer rejoins."""
    from peer.ice import use_candidate_addresses

    ws_url, swarm_id = swarm_url
    use_candidate_addresses(["127.0.0.1"])
    mesh = await _joined(ws_url, swarm_id, degree=0, reconnect_max_delay=0.5)
    try:
        real_session = mesh._session
        calls = 0

        async def broken_once(ws: object) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug in a signaling handler")
            await real_session(ws)  # type: ignore[arg-type]

        mesh._session = broken_once  # type: ignore[method-assign]
        assert mesh._ws is not None
        await mesh._ws.close()  # end the current session; the next one fails with the bug, the one after works
        await eventually(lambda: mesh.stats.sessions >= 3 and mesh.connected.is_set(), TIMEOUT, "the peer rejoined")
    finally:
        await mesh.close()
        use_candidate_addresses(None)
