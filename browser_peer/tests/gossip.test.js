// The browser's gossip engine and transport under node (driven by tests/test_js_gossip.py): the
// cases of tests/test_averaging.py and tests/test_gossip_propose.py, on the same rules as
// peer/gossip.py and peer/transport.py. Run: node --test browser_peer/tests/gossip.test.js
import assert from "node:assert/strict";
import { test } from "node:test";

import { pairAverage } from "../src/averaging.js";
import {
  DEFAULT_RATE_BYTES_S, GossipEngine, Lock, Outcome, exchangeDeadlineMs, withTimeout,
} from "../src/gossip.js";
import { PeerLink } from "../src/link.js";
import { generateIdentity } from "../src/protocol/crypto.js";
import { FRAME_KIND, frameSize } from "../src/protocol/frame.js";
import { MeshTransport } from "../src/transport.js";
import { FrameVerifier } from "../src/verifier.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const A = "a".repeat(32);
const B = "b".repeat(32);
const C = "c".repeat(32);

function rng(seed) { // mulberry32: the same cases every run
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const randomModel = (r) => [Float32Array.from({ length: 12 }, () => r() * 4 - 2), Float32Array.from({ length: 3 }, () => r() * 4 - 2)];

class ArrayModel {
  constructor(weights, n) {
    this.lock = new Lock();
    this.weights = weights;
    this.n = n;
    this.step = 0;
  }

  current() { return { weights: this.weights.map((w) => w.slice()), weight: this.n, step: this.step }; }

  assign(weights, weight) {
    this.weights = weights;
    this.n = weight;
  }
}

/** Delivers proposals and requests straight to the other engine, telling it who asked (the live transport knows the link). */
class InMemoryTransport {
  constructor(engines, sender, latencyMs = 0, { proposes = true } = {}) {
    Object.assign(this, { engines, sender, latencyMs });
    this.requests = 0; // weight transfers: requests sent
    if (!proposes) this.propose = undefined; // an older peer: the request is the proposal
  }

  async propose(peer) {
    await sleep(this.latencyMs);
    const accepted = this.engines[peer].onPropose(this.sender);
    await sleep(this.latencyMs);
    return accepted;
  }

  async request(peer, update) {
    this.requests += 1;
    await sleep(this.latencyMs);
    const reply = await this.engines[peer].respond(update, this.sender);
    await sleep(this.latencyMs);
    return reply;
  }
}

const weightedMean = (models) => {
  const total = models.reduce((s, m) => s + m.n, 0);
  return models[0].weights.map((_, i) => models[0].weights[i].map((_, j) => models.reduce((s, m) => s + m.weights[i][j] * m.n, 0) / total));
};

function assertClose(got, want, atol) {
  got.forEach((g, i) => g.forEach((v, j) => assert.ok(Math.abs(v - want[i][j]) <= atol, `[${i}][${j}] ${v} vs ${want[i][j]}`)));
}

const consensus = (models) => {
  const mean = weightedMean(models.map((m) => ({ weights: m.weights, n: 1 })));
  return Math.sqrt(models.reduce((s, m) => s + m.weights.reduce((t, w, i) => t + w.reduce((u, v, j) => u + (v - mean[i][j]) ** 2, 0), 0), 0));
};

// ---- deadlines ------------------------------------------------------------------------------

test("the exchange deadline: floor, default rate, measured rate and RTT, ceiling (peer/gossip.py exchange_deadline)", () => {
  assert.equal(DEFAULT_RATE_BYTES_S, 1e6);
  assert.equal(exchangeDeadlineMs(1000, null, null, { floorMs: 10000 }), 10000); // small frame: the floor
  // 50 MB at the default 1 MB/s: 2 x (2 x 50 s) = 200 s
  assert.equal(exchangeDeadlineMs(50e6, null, null, { floorMs: 10000 }), 200000);
  assert.equal(exchangeDeadlineMs(50e6, 0, undefined, { floorMs: 10000 }), 200000);
  // 50 MB at 10 MB/s with 0.25 s RTT: 2 x (10 + 1) s
  assert.equal(exchangeDeadlineMs(50e6, 10e6, 0.25, { floorMs: 10000 }), 22000);
  assert.equal(exchangeDeadlineMs(5e9, 1e6, 0, { floorMs: 10000 }), 600000); // the ceiling
  assert.equal(exchangeDeadlineMs(400000, null, null, { floorMs: 10000 }), 10000); // the default model: the floor
  assert.equal(exchangeDeadlineMs(38e6, null, null, { floorMs: 10000 }), 2000 * (2 * 38)); // 38 MB at the default rate
});

// ---- the engine -------------------------------------------------------------------------------

test("random pairwise gossip with proposals converges to the exact weighted mean", async () => {
  const r = rng(4);
  const models = [10, 20, 30, 40, 50, 60].map((n) => new ArrayModel(randomModel(r), n));
  const target = weightedMean(models);
  const ids = models.map((_, i) => String(i).padStart(32, "0"));
  const engines = Object.fromEntries(ids.map((id, i) => [id, new GossipEngine(models[i], pairAverage, id)]));
  const transports = Object.fromEntries(ids.map((id) => [id, new InMemoryTransport(engines, id)]));
  const ring = (i) => [ids[(i + 5) % 6], ids[(i + 1) % 6]];
  const before = consensus(models);
  for (let round = 0; round < 300; round++) {
    await Promise.all(ids.map(async (id, i) => {
      await sleep(r() * 3); // live peers desynchronize the same way after a decline
      return engines[id].initiate(ring(i)[Math.floor(r() * 2)], transports[id], 1000);
    }));
  }
  assert.ok(consensus(models) < 1e-5 * before, `consensus distance ${consensus(models)}`);
  for (const m of models) assertClose(m.weights, target, 1e-5);
  const total = (o) => Object.values(engines).reduce((s, e) => s + e.outcomes[o], 0);
  assert.ok(total(Outcome.MERGED) > 0);
  assert.equal(Object.values(Outcome).reduce((s, o) => s + total(o), 0), 1800);
  assert.equal(total(Outcome.TIMEOUT) + total(Outcome.FAILED), 0);
  for (const e of Object.values(engines)) assert.equal(e.busy, false);
});

test("crossing proposals make one exchange decided by peer id", async () => {
  const r = rng(7);
  const a = new ArrayModel(randomModel(r), 1);
  const b = new ArrayModel(randomModel(r), 3);
  const want = weightedMean([a, b]);
  const engines = { [A]: new GossipEngine(a, pairAverage, A), [B]: new GossipEngine(b, pairAverage, B) };
  const ta = new InMemoryTransport(engines, A, 50); // slow links: both proposals in flight at once
  const tb = new InMemoryTransport(engines, B, 50);
  const outcomes = await Promise.all([engines[A].initiate(B, ta, 1000), engines[B].initiate(A, tb, 1000)]);
  assert.deepEqual(outcomes, [Outcome.MERGED, Outcome.CROSSED]); // a's proposal was the exchange; b accepted it
  assert.equal(engines[B].crossed, 1);
  assert.equal(engines[A].declinedRequests, 1);
  assert.equal(ta.requests + tb.requests, 1); // b's crossed attempt sent no weights
  a.weights.forEach((w, i) => assert.deepEqual(w, b.weights[i])); // one pairwise average on both sides
  assertClose(a.weights, want, 1e-6);
  assert.equal(a.n, 2);
  assert.equal(b.n, 2);
  assert.equal(engines[A].busy || engines[B].busy, false);
});

test("without peer ids, simultaneous proposals decline instead of deadlocking", async () => {
  const r = rng(5);
  const a = new ArrayModel(randomModel(r), 1);
  const b = new ArrayModel(randomModel(r), 1);
  const engines = { a: new GossipEngine(a), b: new GossipEngine(b) };
  const ta = new InMemoryTransport(engines, "a", 10);
  const tb = new InMemoryTransport(engines, "b", 10);
  const outcomes = await Promise.all([engines.a.initiate("b", ta, 1000), engines.b.initiate("a", tb, 1000)]);
  assert.deepEqual(outcomes, [Outcome.DECLINED, Outcome.DECLINED]);
  assert.equal(ta.requests + tb.requests, 0);
  assert.equal(await engines.a.initiate("b", ta, 1000), Outcome.MERGED);
  a.weights.forEach((w, i) => assert.deepEqual(w, b.weights[i]));
});

test("a decline costs no weights: a responder holding for another proposer declines the proposal", async () => {
  const r = rng(8);
  const [a, b, c] = [1, 2, 3].map((n) => new ArrayModel(randomModel(r), n));
  const engines = { [A]: new GossipEngine(a, pairAverage, A), [B]: new GossipEngine(b, pairAverage, B, 5000), [C]: new GossipEngine(c, pairAverage, C) };
  assert.equal(engines[B].onPropose(C), true); // b holds for c
  assert.equal(engines[B].busy, true);
  let reads = 0;
  const current = a.current.bind(a);
  a.current = () => { reads += 1; return current(); };
  const ta = new InMemoryTransport(engines, A);
  assert.equal(await engines[A].initiate(B, ta, 1000), Outcome.DECLINED);
  assert.equal(ta.requests, 0); // only the two small frames moved
  assert.equal(reads, 0); // our weights were not even read
  assert.equal(engines[B].declinedRequests, 1);
  assert.equal(await engines[B].initiate(A, new InMemoryTransport(engines, B), 1000), Outcome.BUSY); // holding: starts nothing
  assert.equal(await engines[B].respond(a.current(), A), null); // nor serves another peer's request
  // c's request is the held one: served, and b is free again
  assert.notEqual(await engines[B].respond(c.current(), C), null);
  assert.equal(engines[B].busy, false);
  assert.equal(engines[B].served, 1);
  engines[B]._releaseHold();
});

test("a peer initiating with one neighbor serves another's proposal and its merge keeps both (peer/gossip.py)", async () => {
  const r = rng(12);
  const [a, b, c] = [1, 1, 1].map(() => new ArrayModel(randomModel(r), 1));
  const before = [a, b, c].map((m) => m.current().weights);
  const engines = { [A]: new GossipEngine(a, pairAverage, A), [B]: new GossipEngine(b, pairAverage, B), [C]: new GossipEngine(c, pairAverage, C) };
  const aExchange = engines[A].initiate(B, new InMemoryTransport(engines, A, 50), 2000); // slow ...
  await sleep(120); // ... and in flight when c proposes to a
  assert.equal(engines[A].busy, true);
  assert.equal(await engines[C].initiate(A, new InMemoryTransport(engines, C), 2000), Outcome.MERGED);
  assert.equal(await aExchange, Outcome.MERGED);
  assert.equal(engines[A].declinedRequests, 0);
  assert.equal(engines[A].served, 1);
  assert.equal(engines[A].interleaved, 1);
  assertClose(a.weights, before[1].map((w, i) => w.map((v, j) => (v + before[2][i][j]) / 2)), 1e-5);
  const total = (ms) => ms[0].map((w, i) => w.map((_, j) => ms.reduce((s, m) => s + m[i][j], 0)));
  assertClose(total([a.weights, b.weights, c.weights]), total(before), 1e-4); // push-pull keeps the sum
  assert.equal(a.n, 1);
});

test("a hold expires when the accepted proposer never sends its request", async () => {
  const r = rng(9);
  const [a, b, c] = [1, 2, 3].map((n) => new ArrayModel(randomModel(r), n));
  const held = [];
  const engines = {
    [A]: new GossipEngine(a, pairAverage, A),
    [B]: new GossipEngine(b, pairAverage, B, (peer) => { held.push(peer); return 100; }),
    [C]: new GossipEngine(c, pairAverage, C),
  };
  class ProposesOnly extends InMemoryTransport { // accepted, then silent: its request never comes
    async request() { this.requests += 1; await new Promise(() => {}); }
  }
  const silent = new ProposesOnly(engines, A);
  const before = b.weights.map((w) => w.slice());
  assert.equal(await engines[A].initiate(B, silent, 50), Outcome.TIMEOUT);
  assert.deepEqual(held, [A]); // the hold lasts the deadline of the proposer's link
  assert.equal(engines[B].busy, true);
  assert.equal(engines[B].onPropose(C), false); // still holding for a
  await sleep(150);
  assert.equal(engines[B].expiredHolds, 1);
  assert.equal(engines[B].busy, false);
  b.weights.forEach((w, i) => assert.deepEqual(w, before[i])); // nothing merged
  assert.equal(await engines[C].initiate(B, new InMemoryTransport(engines, C), 1000), Outcome.MERGED);
  // a's late request after the hold expired is served like any request from a peer that did not propose
  assert.notEqual(await engines[B].respond(a.current(), A), null);
});

test("a proposer proposing again re-arms the same hold", async () => {
  const b = new ArrayModel(randomModel(rng(10)), 1);
  const engine = new GossipEngine(b, pairAverage, B, 80);
  assert.equal(engine.onPropose(A), true);
  await sleep(50);
  assert.equal(engine.onPropose(A), true); // its request was lost: it asks again
  await sleep(50);
  assert.equal(engine.busy, true); // 100 ms after the first accept, 50 ms after the second
  await sleep(60);
  assert.equal(engine.busy, false);
  assert.equal(engine.expiredHolds, 1);
});

test("a request with no proposal before it is served when free (an older peer)", async () => {
  const r = rng(11);
  const a = new ArrayModel(randomModel(r), 1);
  const b = new ArrayModel(randomModel(r), 1);
  const engines = { [A]: new GossipEngine(a, pairAverage, A), [B]: new GossipEngine(b, pairAverage, B) };
  const legacy = new InMemoryTransport(engines, A, 0, { proposes: false });
  assert.equal(await engines[A].initiate(B, legacy, 1000), Outcome.MERGED);
  a.weights.forEach((w, i) => assert.deepEqual(w, b.weights[i]));
});

test("the merge beside training adds the averaging step to the model trained meanwhile", async () => {
  const r = rng(12);
  const a = new ArrayModel(randomModel(r), 1);
  const b = new ArrayModel(randomModel(r), 3);
  const reply = b.current();
  const engines = { [A]: new GossipEngine(a, pairAverage, A), [B]: new GossipEngine(b, pairAverage, B) };
  const delta = randomModel(r).map((w) => w.map((v) => v / 10));
  let sent = null;
  let trained = null;
  class TrainsMeanwhile extends InMemoryTransport { // our weights are on their way: the trainer goes on
    async request(peer, update) {
      sent = update;
      await a.lock.run(() => {
        a.weights = a.weights.map((w, i) => w.map((v, j) => v + delta[i][j]));
        a.step += 5;
      });
      trained = a.current();
      return super.request(peer, update);
    }
  }
  assert.equal(await engines[A].initiate(B, new TrainsMeanwhile(engines, A, 10), 1000), Outcome.MERGED);
  const [avg, weight] = pairAverage(sent.weights, sent.weight, reply.weights, reply.weight);
  const want = trained.weights.map((n, i) => Float32Array.from(n, (v, j) => v + (avg[i][j] - sent.weights[i][j])));
  a.weights.forEach((w, i) => assert.deepEqual(w, want[i])); // w_now + (average(sent, reply) - sent)
  b.weights.forEach((w, i) => assert.deepEqual(w, avg[i])); // the responder merged with what we sent
  assert.equal(a.n, weight);
  // the local progress is kept: a minus b is what a trained meanwhile (up to float32 rounding)
  assertClose(a.weights.map((w, i) => w.map((v, j) => v - b.weights[i][j])), delta, 1e-5);
  // what both hold sums to what they held plus the local steps: the gossip sums are kept (equal gossip weights)
  const c = new ArrayModel(randomModel(r), 1);
  const d = new ArrayModel(randomModel(r), 1);
  const [c0, d0] = [c.current().weights, d.current().weights];
  const twins = { [A]: new GossipEngine(c, pairAverage, A), [B]: new GossipEngine(d, pairAverage, B) };
  class Trains extends InMemoryTransport {
    async request(peer, update) {
      const reply = await super.request(peer, update);
      await c.lock.run(() => { c.weights = c.weights.map((w, i) => w.map((v, j) => v + delta[i][j])); c.step += 5; });
      return reply; // local steps landed while the reply was in flight
    }
  }
  assert.equal(await twins[A].initiate(B, new Trains(twins, A, 5), 1000), Outcome.MERGED);
  assertClose(c.weights.map((w, i) => w.map((v, j) => v + d.weights[i][j])),
    c0.map((w, i) => w.map((v, j) => v + d0[i][j] + delta[i][j])), 1e-5);
});

test("with no training in between the merge is exactly the pairwise average", async () => {
  const r = rng(13);
  const a = new ArrayModel(randomModel(r), 2);
  const b = new ArrayModel(randomModel(r), 5);
  const [avg] = pairAverage(a.weights, 2, b.weights, 5);
  const engines = { [A]: new GossipEngine(a, pairAverage, A), [B]: new GossipEngine(b, pairAverage, B) };
  assert.equal(await engines[A].initiate(B, new InMemoryTransport(engines, A, 5), 1000), Outcome.MERGED);
  a.weights.forEach((w, i) => assert.deepEqual(w, avg[i]));
});

test("a silent peer times out and nothing is merged", async () => {
  const model = new ArrayModel(randomModel(rng(6)), 1);
  const before = model.current().weights;
  const silent = { propose: () => new Promise(() => {}), request: () => new Promise(() => {}) };
  assert.equal(await new GossipEngine(model).initiate("x", silent, 50), Outcome.TIMEOUT);
  model.weights.forEach((w, i) => assert.deepEqual(w, before[i]));
});

test("withTimeout aborts the signal of the work it gave up on", async () => {
  let aborted = false;
  await assert.rejects(withTimeout((signal) => {
    signal.addEventListener("abort", () => { aborted = true; });
    return new Promise(() => {});
  }, 20, "probe"), /timed out/);
  assert.equal(aborted, true);
  assert.equal(await withTimeout(Promise.resolve(7), 20), 7);
});

// ---- the transport over real frames ------------------------------------------------------------

const SHAPES = [[12], [3]];
const SWARM = new Uint8Array(16).fill(1);
const MODEL = new Uint8Array(32).fill(2);

/** Two transports joined by in-memory links that carry real signed frames; `drop(kind)` loses frames of that kind. */
async function pair({ latencyMs = 5, drop = () => false, holdMs = 10000 } = {}) {
  const sides = {};
  for (const id of [A, B]) sides[id] = { id, identity: await generateIdentity(), links: new Map() };
  for (const [me, other] of [[A, B], [B, A]]) {
    const side = sides[me];
    side.metrics = { framesSent: 0, framesAccepted: 0, rejected: {}, acceptedFrom: {} };
    side.model = new ArrayModel(randomModel(rng(me === A ? 1 : 2)), me === A ? 1 : 3);
    side.engine = new GossipEngine(side.model, pairAverage, me, holdMs);
    side.verifier = new FrameVerifier({
      swarmId: SWARM, modelId: MODEL, ownKey: side.identity.publicKey, isKnown: () => true, shapes: SHAPES,
      maxFrameSize: frameSize(SHAPES),
    });
    side.transport = new MeshTransport(side.identity, {
      swarmId: SWARM, modelId: MODEL, verifier: side.verifier, engine: side.engine, metrics: side.metrics,
      links: () => side.links, shapes: SHAPES, frameBytes: frameSize(SHAPES), exchangeTimeoutS: 0.2,
    });
    side.sentKinds = [];
    side.other = other;
  }
  for (const side of Object.values(sides)) {
    const remote = sides[side.other];
    side.links.set(remote.id, {
      peerId: remote.id, remoteKey: remote.identity.publicKey, state: "open", refusals: 0, rateBytesPerS: null,
      iceInfo: { rtt_ms: null },
      async send(build) {
        const bytes = await build();
        const kind = bytes[5];
        side.sentKinds.push(kind);
        if (drop(kind, side.id)) return;
        setTimeout(() => remote.transport.onFrame(remote.links.get(side.id), bytes), latencyMs);
      },
    });
  }
  return sides;
}

test("propose, accept, then the request reuses the accepted exchange id; both hold one average", async () => {
  const sides = await pair();
  const [a, b] = [sides[A], sides[B]];
  const want = pairAverage(a.model.weights, a.model.n, b.model.weights, b.model.n)[0];
  assert.equal(await a.engine.initiate(B, a.transport, a.transport.deadline(B)), Outcome.MERGED);
  assert.deepEqual(a.sentKinds, [FRAME_KIND.EXCHANGE_PROPOSE, FRAME_KIND.EXCHANGE_REQUEST]);
  assert.deepEqual(b.sentKinds, [FRAME_KIND.EXCHANGE_ACCEPT, FRAME_KIND.EXCHANGE_RESPONSE]);
  a.model.weights.forEach((w, i) => assert.deepEqual(w, want[i]));
  b.model.weights.forEach((w, i) => assert.deepEqual(w, want[i]));
  assert.equal(a.transport._pending.size + b.transport._pending.size, 0);
  assert.equal(b.engine.busy, false);
  assert.deepEqual(b.metrics.rejected, {}); // the request's exchange id was the accepted one: nothing unexpected
  assert.deepEqual(a.metrics.rejected, {});
});

test("crossing proposals over real frames: one exchange, the larger id's attempt ends CROSSED", async () => {
  const sides = await pair({ latencyMs: 30 });
  const [a, b] = [sides[A], sides[B]];
  const outcomes = await Promise.all([
    a.engine.initiate(B, a.transport, a.transport.deadline(B)), b.engine.initiate(A, b.transport, b.transport.deadline(A)),
  ]);
  assert.deepEqual(outcomes, [Outcome.MERGED, Outcome.CROSSED]);
  a.model.weights.forEach((w, i) => assert.deepEqual(w, b.model.weights[i]));
  assert.equal(b.sentKinds.filter((k) => k === FRAME_KIND.EXCHANGE_REQUEST).length, 0); // b sent no weights
  assert.equal(a.transport._pending.size + b.transport._pending.size, 0);
});

test("a timed-out exchange is no longer pending; its one late reply is no strike, a second one is", async () => {
  let late = true;
  const sides = await pair({ latencyMs: 5, drop: (kind) => kind === FRAME_KIND.EXCHANGE_RESPONSE && late });
  const [a, b] = [sides[A], sides[B]];
  const strikes = [];
  const strike = a.transport.strike.bind(a.transport);
  a.transport.strike = (peer, why) => { strikes.push(why); strike(peer, why); };
  for (let i = 0; i < 3; i++) assert.equal(await a.engine.initiate(B, a.transport, 100), Outcome.TIMEOUT);
  assert.equal(a.transport._pending.size, 0); // the leak: entries of timed-out exchanges stayed forever
  // b's reply to a's last request arrives late: counted, no strike
  late = false;
  const response = (exchangeId) => b.transport.send(b.links.get(A), FRAME_KIND.EXCHANGE_RESPONSE, exchangeId, b.model.current());
  const lastRequest = a.transport._exchange; // the request reused its proposal's id, the newest
  await response(lastRequest);
  await sleep(30);
  assert.equal(a.metrics.rejected.unexpected, 1);
  assert.deepEqual(strikes, []);
  await response(lastRequest); // the same late reply again
  await response(9999n); // an exchange a never asked about
  await sleep(30);
  assert.equal(a.metrics.rejected.unexpected, 3);
  assert.deepEqual(strikes, ["unexpected", "unexpected"]);
  b.engine._releaseHold();
});

test("a declined proposal resolves the pending exchange and moves no weights", async () => {
  const sides = await pair();
  const [a, b] = [sides[A], sides[B]];
  assert.equal(b.engine.onPropose(C), true); // b holds for someone else
  assert.equal(await a.engine.initiate(B, a.transport, 1000), Outcome.DECLINED);
  assert.deepEqual(a.sentKinds, [FRAME_KIND.EXCHANGE_PROPOSE]);
  assert.deepEqual(b.sentKinds, [FRAME_KIND.EXCHANGE_DECLINE]);
  assert.equal(a.transport._pending.size, 0);
  b.engine._releaseHold();
});

test("the transport's deadline comes from the frame size and the link's measured rate and RTT", async () => {
  const sides = await pair();
  const t = sides[A].transport;
  t.frameBytes = 50e6;
  assert.equal(t.deadline(B), 200000); // unmeasured: 1 MB/s
  Object.assign(sides[A].links.get(B), { rateBytesPerS: 10e6, iceInfo: { rtt_ms: 250 } });
  assert.equal(t.deadline(B), 22000);
  assert.equal(t.deadline("nobody"), 200000);
  t.frameBytes = 100;
  assert.ok(Math.abs(t.deadline(B) - 2000.04) < 1e-6); // 2 x (200 B at 10 MB/s + 4 x 0.25 s): above the floor
  sides[A].links.get(B).iceInfo = { rtt_ms: null };
  assert.equal(t.deadline(B), 200); // the floor: exchange_timeout_s // the floor: exchange_timeout_s
});

test("a link measures its send rate from large sends only (EWMA)", () => {
  const link = Object.create(PeerLink.prototype);
  link.rateBytesPerS = null;
  link.measureRate(1e6, 0.1); // small: only fills the buffer
  assert.equal(link.rateBytesPerS, null);
  link.measureRate(16e6, 2);
  assert.equal(link.rateBytesPerS, 8e6);
  link.measureRate(16e6, 4);
  assert.equal(link.rateBytesPerS, 6e6); // 0.5 x 4 + 0.5 x 8 MB/s
  link.measureRate(16e6, 0);
  assert.equal(link.rateBytesPerS, 6e6);
});
