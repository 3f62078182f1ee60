// The tab's live partner choice under node (driven by tests/test_skew_live.py): skew.js against
// protocols/vectors/skew.json (the exponential graph and the partners a peer links to first, as
// peer/skew.py computes them), the rules of what is random (a fallback link, fanout's extra
// partners), and the mesh's offers (mesh.js _toOffer) on a real Mesh that has not joined.
// Run: node --test browser_peer/tests/skew.test.js protocols/vectors/skew.json
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { Mesh } from "../src/mesh.js";
import {
  choosePartners, exponentialLinks, exponentialNeighbors, exponentialPartner, fanoutPartners, partnersToLink,
} from "../src/skew.js";

const VECTORS = JSON.parse(readFileSync(new URL("../../protocols/vectors/skew.json", import.meta.url), "utf8"));

/** A seeded [0, 1) generator (mulberry32): random choices repeatable per seed. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("the exponential graph is Python's: neighbors and the partner of every round", () => {
  for (const { members, peers } of VECTORS.graphs) {
    for (const { me, neighbors, links, partners_by_round: rounds } of peers) {
      assert.deepEqual(exponentialNeighbors(me, members), neighbors, `${members.length} members, ${me}`);
      assert.deepEqual(exponentialLinks(me, members), links, `${members.length} members, ${me}: links`);
      rounds.forEach((want, r) => assert.equal(exponentialPartner(me, members, r), want, `${me} round ${r}`));
    }
  }
});

test("the partners a peer links to first are Python's", () => {
  for (const c of VECTORS.to_link) {
    assert.deepEqual(partnersToLink(c.me, c.members, new Set(c.skip), c.room), c.want, c.name);
  }
});

test("a round's exponential partner is chosen when it is an open link, a random open link when not", () => {
  const { members } = VECTORS.graphs.at(-1);
  const me = members[0];
  const open = exponentialNeighbors(me, members);
  for (let r = 0; r < 8; r += 1) {
    assert.deepEqual(choosePartners(me, open, members, r, { mixing: "exponential" }), [exponentialPartner(me, members, r)]);
  }
  const others = members.filter((p) => p !== me && !open.includes(p)).slice(0, 3);
  const random = seeded(1);
  for (let r = 0; r < 20; r += 1) {
    const [got] = choosePartners(me, others, members, r, { mixing: "exponential", random });
    assert.ok(others.includes(got), "the fallback is an open link");
  }
  assert.deepEqual(choosePartners(me, [], members, 0, { mixing: "exponential" }), []);
});

test("fanout k: k distinct open links (all of them if fewer), the exponential partner first", () => {
  const { members } = VECTORS.graphs.at(-1);
  const me = members[0];
  const open = members.slice(1, 7);
  const random = seeded(2);
  for (let r = 0; r < 20; r += 1) {
    const got = choosePartners(me, open, members, r, { fanout: 3, random });
    assert.equal(new Set(got).size, 3);
    assert.ok(got.every((p) => open.includes(p)));
  }
  assert.equal(choosePartners(me, open.slice(0, 2), members, 0, { fanout: 5 }).length, 2);
  const partner = exponentialPartner(me, members, 1);
  const withPartner = [...open.filter((p) => p !== partner), partner];
  const got = choosePartners(me, withPartner, members, 1, { mixing: "exponential", fanout: 3, random });
  assert.equal(got[0], partner);
  assert.equal(new Set(got).size, 3);
  assert.throws(() => fanoutPartners(open, 0), RangeError);
  assert.throws(() => choosePartners(me, open, members, 0, { mixing: "ring" }), RangeError);
});

test("random mixing picks every open link now and then (no partner is favoured for good)", () => {
  const open = ["a", "b", "c"].map((c) => c.repeat(32));
  const seen = new Set();
  const random = seeded(3);
  for (let r = 0; r < 60; r += 1) seen.add(choosePartners("d".repeat(32), open, [...open, "d".repeat(32)], r, { random })[0]);
  assert.deepEqual([...seen].sort(), open);
});

function meshOf(me, members, config) {
  const mesh = new Mesh(null, "ws://127.0.0.1:1/ws", "0".repeat(32), config, { maxFrameSize: 1 << 20 });
  mesh.peerId = me; // set by start() from the identity; this mesh never joins
  for (const p of members) if (p !== me) mesh.known.set(p, { peer_id: p, public_key: "", client: "python" });
  return mesh;
}

test("an exponential mesh offers its exponential links first, within maxDegree, then random peers up to degree", () => {
  const { members } = VECTORS.graphs.find((g) => g.members.length === 8); // 8 members: +-1, +-2, +4 (5 links)
  const me = members[0];
  const links = exponentialLinks(me, members);
  assert.equal(links.length, 5);
  const mesh = meshOf(me, members, { degree: 6, maxDegree: 8, mixing: "exponential" });
  assert.deepEqual(mesh.exponentialPartners(), exponentialNeighbors(me, members));
  const offers = mesh._toOffer([...mesh.known.values()]).map((c) => c.peer_id);
  assert.deepEqual(offers.slice(0, 5), links);
  assert.equal(new Set(offers).size, 6); // and one random peer up to degree

  const few = meshOf(me, members, { degree: 2, maxDegree: 3, mixing: "exponential" }); // links beyond degree, within maxDegree
  assert.deepEqual(few._toOffer([...few.known.values()]).map((c) => c.peer_id), links.slice(0, 3));

  const skipFirst = [...mesh.known.values()].filter((c) => c.peer_id !== links[0]); // linked, banned or retried later
  assert.deepEqual(mesh._toOffer(skipFirst).map((c) => c.peer_id).slice(0, 4), links.slice(1));
});

test("a random mesh offers random peers up to degree only", () => {
  const { members } = VECTORS.graphs.at(-1);
  const mesh = meshOf(members[0], members, { degree: 2, maxDegree: 8 });
  assert.equal(mesh.config.mixing, "random");
  assert.deepEqual(mesh.exponentialPartners(), []);
  assert.equal(mesh._toOffer([...mesh.known.values()]).length, 2);
  assert.equal(mesh.members().length, members.length);
  assert.deepEqual(mesh.members(), [...members].sort());
});
