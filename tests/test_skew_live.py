"""Live partner choice against label skew (``gossip.mixing``, ``gossip.fanout``) in both languages.

``peer/skew.py`` is what the simulator and live peers both call; ``protocols/vectors/skew.json``
pins its exponential graph for ``browser_peer/src/skew.js`` (checked under node by
``browser_peer/tests/skew.test.js``). The mesh's offers (``Mesh._to_offer``) run on a real
``Mesh`` that has not joined: its known peers are set as a welcome would set them.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.mesh import Mesh, MeshConfig
from peer.skew import choose_partners, exponential_links, exponential_neighbors, exponential_partner, partners_to_link
from peer.skew_vectors import PATH, skew_vectors
from protocols.crypto import peer_id_of, public_key_bytes
from protocols.make_vectors import render
from protocols.manifest import GossipConfig
from protocols.signaling import PeerInfo

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_vectors_are_the_generator_output() -> None:
    assert PATH.read_text(encoding="utf-8") == render(skew_vectors()), (
        "regenerate with `.venv/bin/python -m peer.skew_vectors` and commit protocols/vectors/skew.json")


def test_the_manifest_options_default_to_plain_gossip_and_are_bounded() -> None:
    g = GossipConfig()
    assert (g.mixing, g.fanout) == ("random", 1)
    assert GossipConfig(mixing="exponential", fanout=3).fanout == 3
    for bad in ({"mixing": "ring"}, {"fanout": 0}, {"fanout": 17}):
        with pytest.raises(ValueError):
            GossipConfig(**bad)


def test_every_member_is_some_members_partner_and_rounds_cycle_through_the_neighbors() -> None:
    for case in skew_vectors()["graphs"]:
        members = case["members"]
        linked = {p for me in members for p in exponential_neighbors(me, members)}
        assert linked == set(members)
        for me in members:
            hops = len(case["peers"][0]["partners_by_round"]) // 2
            by_round = [exponential_partner(me, members, r) for r in range(hops)]
            assert list(dict.fromkeys(p for p in by_round if p != me)) == exponential_neighbors(me, members)


def test_a_peer_links_both_ways_skips_what_is_linked_and_fits_the_room() -> None:
    members = [f"{i:032x}" for i in range(16)]
    me = members[3]
    partners = exponential_neighbors(me, members)
    assert partners == [members[4], members[5], members[7], members[11]]
    links = exponential_links(me, members)  # then i - 2^k: 2, 1, 15 (11 is already there)
    assert links == [*partners, members[2], members[1], members[15]]
    assert all(me in exponential_neighbors(p, members) for p in links[4:])
    assert partners_to_link(me, members, {members[5]}, 8) == [m for m in links if m != members[5]]
    assert partners_to_link(me, members, set(), 2) == partners[:2]
    assert partners_to_link(me, members, set(), -3) == []
    assert exponential_links(me, [me]) == [] and exponential_links(members[0], members[:2]) == [members[1]]


def test_a_round_takes_its_exponential_partner_if_open_else_a_random_open_link_and_fanout_adds_distinct_ones() -> None:
    members = [f"{i:032x}" for i in range(8)]
    me, rng = members[0], random.Random(0)
    for r in range(6):
        assert choose_partners(me, members[1:], members, r, rng, "exponential") == [members[2 ** (r % 3)]]
    for r in range(20):
        assert choose_partners(me, members[3:4] + members[5:], members, r, rng, "exponential")[0] in members[3:]
    for r in range(20):
        got = choose_partners(me, members[1:], members, r, rng, "exponential", 3)
        assert got[0] == members[2 ** (r % 3)] and len(set(got)) == 3
        assert len(set(choose_partners(me, members[1:], members, r, rng, "random", 4))) == 4
    assert choose_partners(me, members[1:3], members, 0, rng, "random", 5) in ([members[1], members[2]], [members[2], members[1]])


def _mesh_with(members: int, config: MeshConfig) -> tuple[Mesh, list[str]]:
    keys = [Ed25519PrivateKey.generate() for _ in range(members)]
    mesh = Mesh(keys[0], "ws://127.0.0.1:1/ws", "0" * 32, config, max_frame_size=1 << 20)
    for key in keys[1:]:
        info = PeerInfo(peer_id=peer_id_of(public_key_bytes(key)), public_key=public_key_bytes(key).hex())
        mesh.known[info.peer_id] = info  # as the welcome's peer list sets it
    return mesh, mesh.members()


async def test_an_exponential_mesh_offers_its_links_first_within_max_degree_then_random_peers_up_to_degree() -> None:
    mesh, members = _mesh_with(9, MeshConfig(degree=6, max_degree=8, mixing="exponential"))
    partners, links = exponential_neighbors(mesh.peer_id, members), exponential_links(mesh.peer_id, members)
    assert mesh.exponential_partners() == partners and len(partners) == 4 and len(links) == 6  # 9 members: +-1, +-2, +-4
    offers = [c.peer_id for c in mesh._to_offer(list(mesh.known.values()))]
    assert offers == links  # more than degree, within max_degree: no random ones
    mesh.config.degree, mesh.config.max_degree = 2, 3  # more links than max_degree: the first ones
    assert [c.peer_id for c in mesh._to_offer(list(mesh.known.values()))] == links[:3]
    unlinked = [c for c in mesh.known.values() if c.peer_id != links[0]]  # the first is linked, banned or retried later
    assert [c.peer_id for c in mesh._to_offer(unlinked)] == links[1:4]
    mesh.config.degree, mesh.config.max_degree = 7, 8
    offers = [c.peer_id for c in mesh._to_offer(list(mesh.known.values()))]
    assert offers[:6] == links and len(set(offers)) == 7  # then random peers up to degree


async def test_a_random_mesh_offers_random_peers_up_to_degree_only() -> None:
    mesh, members = _mesh_with(6, MeshConfig(degree=2, max_degree=8))
    assert mesh.exponential_partners() == [] and len(members) == 6 and mesh.peer_id in members
    offers = mesh._to_offer(list(mesh.known.values()))
    assert len(offers) == 2 and len({c.peer_id for c in offers}) == 2


def test_the_browser_partner_choice_passes_its_node_tests() -> None:
    node = shutil.which("node")
    assert node is not None, "node is missing: ./scripts/setup.sh installs nodejs"
    out = subprocess.run([node, "--test", "browser_peer/tests/skew.test.js"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout and "# pass 7" in out.stdout
