// Frames of one link delivered back to back are admitted in arrival order (run by
// tests/test_js_verifier.py under node): a small frame must not overtake a large one sent just
// before it, or the large one would be refused as a replay and counted as a strike.
import { identityFromSeed } from "../src/protocol/crypto.js";
import { FRAME_KIND, buildFrame } from "../src/protocol/frame.js";
import { FrameRejected, FrameVerifier } from "../src/verifier.js";

const SWARM = new Uint8Array(16).fill(0x5e);
const MODEL = new Uint8Array(32).fill(0x4d);
const LARGE = 1 << 21; // values of the large tensor: its SHA-256 takes far longer than a tiny frame's

const seed = (b) => new Uint8Array(32).fill(b);
const [me, alice, bob] = await Promise.all([seed(1), seed(2), seed(3)].map((s) => identityFromSeed(s)));
const keyHex = (id) => Buffer.from(id.publicKey).toString("hex");

function verifier(shapes) {
  const known = new Set([keyHex(alice), keyHex(bob)]);
  return new FrameVerifier({
    swarmId: SWARM, modelId: MODEL, ownKey: me.publicKey, isKnown: (k) => known.has(Buffer.from(k).toString("hex")),
    shapes, maxFrameSize: 4 * LARGE + 4096,
  });
}

function frame(identity, seq, kind, tensors, shapes) {
  return buildFrame(identity, {
    kind, swarmId: SWARM, modelId: MODEL, receiver: me.publicKey, session: 7n, seq: BigInt(seq),
    exchangeId: BigInt(seq), sampleWeight: 1, step: 0n, tensors, shapes,
  });
}

/** Admit every frame without awaiting the one before (as data-channel events do); reasons in order. */
async function deliver(v, frames) {
  const outcomes = frames.map(([bytes, link]) => v.admit(bytes, link.publicKey).then(
    () => "ok", (err) => (err instanceof FrameRejected ? err.reason : `bug: ${err}`)));
  return Promise.all(outcomes);
}

const shapes = [[LARGE]];
const big = new Float32Array(LARGE).fill(0.5);
const results = {};
{ // a request with a large model, then a decline sent right after it: both admitted
  const v = verifier(shapes);
  const large = await frame(alice, 1, FRAME_KIND.EXCHANGE_REQUEST, [big], shapes);
  const small = await frame(alice, 2, FRAME_KIND.EXCHANGE_DECLINE, [], []);
  results.large_then_small = await deliver(v, [[large, alice], [small, alice], [small, alice]]);
  results.large_then_small_rejected = v.rejected;
}
{ // a forged frame in the queue burns no sequence number, and the frames after it still pass
  const v = verifier(shapes);
  const large = await frame(alice, 1, FRAME_KIND.EXCHANGE_REQUEST, [big], shapes);
  const forged = (await frame(alice, 2, FRAME_KIND.EXCHANGE_DECLINE, [], [])).slice();
  forged[forged.length - 1] ^= 1; // last signature byte
  const next = await frame(alice, 2, FRAME_KIND.EXCHANGE_DECLINE, [], []);
  results.forged_in_between = await deliver(v, [[large, alice], [forged, alice], [next, alice]]);
}
{ // another link is not held up by a slow one, and is not ordered against it
  const v = verifier(shapes);
  const large = await frame(alice, 1, FRAME_KIND.EXCHANGE_REQUEST, [big], shapes);
  const other = await frame(bob, 1, FRAME_KIND.EXCHANGE_DECLINE, [], []);
  // alice's check is held until bob's frame is through (a gate, not a race between two hashes)
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const check = v._admit.bind(v);
  v._admit = async (bytes, key) => { if (bytes === large) await gate; return check(bytes, key); };
  const order = [];
  const a = v.admit(large, alice.publicKey).then(() => order.push("alice"));
  const b = v.admit(other, bob.publicKey).then(() => order.push("bob"));
  // held behind alice (one chain for all links) would wait for the gate: report it, do not hang
  let timer;
  await Promise.race([b, new Promise((resolve) => { timer = setTimeout(resolve, 10_000); })]);
  clearTimeout(timer);
  if (order.length === 0) order.push("held");
  release();
  await Promise.all([a, b]);
  results.two_links_order = order;
  results.chains_left = v._chains?.size ?? null;
}
console.log(JSON.stringify(results));
