// Checks browser_peer/src/averaging.js against protocols/vectors/averaging.json bit for bit
// (run by tests/test_averaging_vectors.py under node: `node averaging_vectors.js VECTORS.json`).
// Prints {"checked": n, "failed": [...]} as JSON.
import { readFileSync } from "node:fs";
import { ClippedPairAverage, boundedPairAverage, pairAverage } from "../src/averaging.js";

const vectors = JSON.parse(readFileSync(process.argv[2], "utf8"));
const tensors = (items) => items.map((t) => Float32Array.from(t.values));
const bits = (t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength).toString("hex");
const failed = [];
let checked = 0;

function same(name, got, want) {
  checked += 1;
  const w = tensors(want);
  if (got.length !== w.length || got.some((g, i) => bits(g) !== bits(w[i]))) {
    const i = got.findIndex((g, k) => !w[k] || bits(g) !== bits(w[k]));
    failed.push(`${name}: tensor ${i} is [${got[i]?.slice(0, 4)}...], want [${w[i]?.slice(0, 4)}...]`);
  }
}

function equal(name, got, want) {
  checked += 1;
  if (!Object.is(got, want)) failed.push(`${name}: ${got} !== ${want}`);
}

for (const c of vectors.pair) {
  const [merged, weight] = pairAverage(tensors(c.mine), c.my_weight, tensors(c.theirs), c.their_weight);
  same(`pair/${c.name}/merged`, merged, c.merged);
  equal(`pair/${c.name}/weight`, weight, c.weight);
  const [bounded, boundedWeight] = boundedPairAverage(tensors(c.mine), c.my_weight, tensors(c.theirs), c.bounded.their_weight);
  same(`pair/${c.name}/bounded`, bounded, c.bounded.merged);
  equal(`pair/${c.name}/bounded_weight`, boundedWeight, c.bounded.weight);
}
for (const c of vectors.pair_errors) {
  checked += 1;
  try {
    pairAverage(tensors(c.mine), c.my_weight, tensors(c.theirs), c.their_weight);
    failed.push(`pair_errors/${c.name}: accepted`);
  } catch { /* refused, as Python's ValueError */ }
}
for (const c of vectors.clipped) {
  const { multiplier, history, floor, initial } = c.config;
  const rule = new ClippedPairAverage(multiplier, { history, floor, initial });
  c.steps.forEach((s, i) => {
    const name = `clipped/${c.name}/${i}`;
    equal(`${name}/tau`, rule.tau(tensors(s.mine)), s.tau);
    const [merged, weight] = rule.average(tensors(s.mine), s.my_weight, tensors(s.theirs), s.their_weight);
    same(`${name}/merged`, merged, s.merged);
    equal(`${name}/weight`, weight, s.weight);
    equal(`${name}/last_ratio`, rule.lastRatio, s.last_ratio);
    equal(`${name}/clipped`, rule.clipped, s.clipped);
    equal(`${name}/distances`, JSON.stringify(rule.distances), JSON.stringify(s.distances));
  });
}
console.log(JSON.stringify({ checked, failed }));
