// The tab's FedAvg client rules under node (driven by tests/test_js_fedavg.py), as peer/fedavg.py
// and peer/node.py: adopt takes the aggregator's model and keeps our sample count; the role comes
// from the manifest's aggregator key; the aggregator's peer id is the hash of that key. A client
// engine that exchanges with a model of weight 3000 keeps its own weight, where a pairwise
// average would have moved it. Run: node --test browser_peer/tests/fedavg.test.js
import assert from "node:assert/strict";
import { test } from "node:test";

import { pairAverage } from "../src/averaging.js";
import { adopt, aggregatorPeerId, roleOf } from "../src/fedavg.js";
import { GossipEngine, Lock, Outcome } from "../src/gossip.js";

const KEY = process.env.FEDAVG_KEY || "11".repeat(32);
const manifest = (method, aggregator = null) => ({ gossip: { method, aggregator } });

test("adopt takes the aggregator's model, as copies, and keeps our weight", () => {
  const theirs = [Float32Array.of(1, 2), Float32Array.of(3)];
  const [weights, weight] = adopt([Float32Array.of(9, 9), Float32Array.of(9)], 2000, theirs, 3000);
  assert.deepEqual(weights.map((w) => Array.from(w)), [[1, 2], [3]]);
  assert.equal(weight, 2000);
  assert.notEqual(weights[0], theirs[0]); // our model never aliases a received buffer
  assert.throws(() => adopt([Float32Array.of(1)], 1, [Float32Array.of(1, 2)], 1), /layout/);
});

test("the role comes from the manifest: gossip, client, or the aggregator's own key", () => {
  assert.equal(roleOf(manifest("gossip"), KEY), "gossip");
  assert.equal(roleOf(manifest("central", KEY), "22".repeat(32)), "client");
  assert.equal(roleOf(manifest("central", KEY), KEY), "aggregator");
});

test("the aggregator's peer id is the hash of its key (Python's peer_id_of)", async () => {
  const id = await aggregatorPeerId(manifest("central", KEY));
  assert.match(id, /^[0-9a-f]{32}$/);
  if (process.env.FEDAVG_PEER_ID) assert.equal(id, process.env.FEDAVG_PEER_ID);
});

function model(weights, weight) {
  const state = { weights, weight, step: 0 };
  return {
    lock: new Lock(), state,
    current: () => ({ weights: state.weights.map((w) => w.slice()), weight: state.weight, step: state.step }),
    assign: (w, n) => { state.weights = w; state.weight = n; },
  };
}

test("a client engine adopts the round's average and its weight stays its sample count", async () => {
  const average = { weights: [Float32Array.of(0.5, -0.5)], weight: 3000, step: 1 };
  const aggregator = { propose: async () => true, request: async () => average };
  for (const [rule, weightAfter] of [[adopt, 2000], [pairAverage, 2500]]) {
    const mine = model([Float32Array.of(1, 1)], 2000);
    const engine = new GossipEngine(mine, rule);
    assert.equal(await engine.initiate("a".repeat(32), aggregator, 1000), Outcome.MERGED);
    assert.equal(mine.state.weight, weightAfter); // pairwise averaging moves it: the aggregator's next mean would lean our way
    if (rule === adopt) assert.deepEqual(Array.from(mine.state.weights[0]), [0.5, -0.5]);
  }
});
