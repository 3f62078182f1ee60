// Checks the JS protocol modules against protocols/vectors/*.json (driven by
// tests/test_browser_vectors.py) and exposes helpers for the cross-language tests.

import { bytesEqual, bytesToHex, concatBytes, hexToBytes, sha256, utf8 } from "../src/protocol/bytes.js";
import { CODEC, decode, encode, encodedSize } from "../src/protocol/codecs.js";
import {
  ANSWER_CONTEXT, JOIN_CONTEXT, MANIFEST_CONTEXT, OFFER_CONTEXT, answerMessage, generateIdentity, identityFromSeed,
  joinMessage, loadOrCreateIdentity, manifestMessage, offerMessage, peerIdOf, publisherFingerprint, sign, verify,
  RECEIPT_CONTEXT, receiptMessage,
} from "../src/protocol/crypto.js";
import { ReceiptBook, makeReceipt } from "../src/receipts.js";
import { sdpFingerprints } from "../src/protocol/signaling.js";
import { publisherPinFromHash } from "../src/manifest.js";
import { parseEnvelope, parseManifest } from "../src/protocol/manifest.js";
import { checkContract } from "./contract_checks.js";
import { CHUNK_HEADER_SIZE, MAX_MESSAGE_SIZE, Reassembler, splitFrame } from "../src/protocol/chunking.js";
import { ChunkError, ProtocolError } from "../src/protocol/errors.js";
import {
  FIXED_HEADER_SIZE, FRAME_KIND, buildFrame, decodeFrame, frameTensors, parseHeader,
} from "../src/protocol/frame.js";
import { FrameRejected, FrameVerifier } from "../src/verifier.js";
import { decodeShard } from "../src/dataset.js";

// ---- small helpers --------------------------------------------------------------------

const f32hex = (t) => bytesToHex(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
const tensorsOf = (items) => items.map((t) => Float32Array.from(t.values));
const shapesOf = (items) => items.map((t) => t.shape);

function sameTensors(got, want) {
  // bitwise, so -0 stays -0 and a wrong rounding by one ulp fails
  if (got.length !== want.length) return `got ${got.length} tensors, want ${want.length}`;
  for (let i = 0; i < got.length; i++) {
    const w = Float32Array.from(want[i].values);
    if (f32hex(got[i]) !== f32hex(w)) return `tensor ${i}: got [${got[i]}], want [${w}]`;
  }
  return null;
}

function flip(bytes, index, mask = 0x01) {
  const out = bytes.slice();
  out[index < 0 ? out.length + index : index] ^= mask;
  return out;
}

function setAt(bytes, index, values) {
  const out = bytes.slice();
  out.set(values, index);
  return out;
}

/** Reason a frame is refused (decode, then tensors), or "ok". */
async function reasonOf(bytes) {
  try {
    frameTensors(await decodeFrame(bytes));
    return "ok";
  } catch (exc) {
    if (exc instanceof ProtocolError) return exc.reason;
    throw exc;
  }
}

/** Re-sign a frame after ``mutate(signedBytesCopy, view)``: what a hostile key holder can send. */
async function resigned(identity, bytes, mutate, payload) {
  const { header, payloadOffset } = parseHeader(bytes);
  const signed = header.signedBytes.slice();
  mutate(signed, new DataView(signed.buffer));
  return concatBytes(signed, await sign(identity.privateKey, signed), payload ?? bytes.subarray(payloadOffset));
}

/** A frame whose signed payload is ``payload`` as given (NaN included): how a sender that skips our encoders' checks makes one. */
async function hostileFrame(identity, fields, payload) {
  const good = await buildFrame(identity, { ...fields, tensors: fields.tensors.map((t) => new Float32Array(t.length)) });
  const digest = await sha256(payload);
  return resigned(identity, good, (s) => s.set(digest, s.length - 32), payload);
}

/** The float32 (or float16 bits) payload of tensors filled with ``value``, as a codec that checks nothing would lay it out. */
function rawPayload(tensors, value, codec = CODEC.FLOAT32) {
  const n = tensors.reduce((sum, t) => sum + t.length, 0);
  if (codec === CODEC.FLOAT16) return new Uint8Array(new Uint16Array(n).fill(value).buffer);
  return new Uint8Array(new Float32Array(n).fill(value).buffer);
}

class Results {
  constructor() {
    this.list = [];
  }

  check(name, ok, detail = "") {
    this.list.push({ name, ok: Boolean(ok), detail: ok ? "" : String(detail) });
  }

  eq(name, got, want) {
    this.check(name, got === want, `got ${got}, want ${want}`);
  }

  /** Run ``fn`` and record a thrown exception as a failure of ``name``. */
  async guard(name, fn) {
    try {
      await fn();
    } catch (exc) {
      this.check(name, false, `threw ${exc?.stack ?? exc}`);
    }
  }

  async rejects(name, fn, cls, reason) {
    try {
      await fn();
      this.check(name, false, `accepted; want ${cls.name} ${reason}`);
    } catch (exc) {
      const ok = exc instanceof cls && exc.reason === reason;
      this.check(name, ok, `threw ${exc?.name} ${exc?.reason}: ${exc?.message}; want ${cls.name} ${reason}`);
    }
  }
}

// ---- vector groups --------------------------------------------------------------------

async function checkKeys(r, data) {
  const byName = {};
  for (const k of data.keys) {
    await r.guard(`keys/${k.name}`, async () => {
      const id = await identityFromSeed(hexToBytes(k.seed));
      byName[k.name] = id;
      r.eq(`keys/${k.name}/public_key`, bytesToHex(id.publicKey), k.public_key);
      r.eq(`keys/${k.name}/peer_id`, await peerIdOf(id.publicKey), k.peer_id);
      r.eq(`keys/${k.name}/not_extractable`, id.privateKey.extractable, false);
      const ex = await identityFromSeed(hexToBytes(k.seed), true);
      r.check(`keys/${k.name}/extractable`, ex.privateKey.extractable && bytesEqual(ex.publicKey, id.publicKey));
    });
  }
  for (const [i, s] of data.signatures.entries()) {
    await r.guard(`keys/signature${i}`, async () => {
      const id = byName[s.key];
      const msg = hexToBytes(s.message);
      r.eq(`keys/signature${i}/${s.key}/sign`, bytesToHex(await sign(id.privateKey, msg)), s.signature);
      r.eq(`keys/signature${i}/${s.key}/verify`, await verify(id.publicKey, hexToBytes(s.signature), msg), true);
      const tampered = await verify(id.publicKey, flip(hexToBytes(s.signature), 5), msg);
      r.eq(`keys/signature${i}/${s.key}/verify_tampered`, tampered, false);
      const other = s.key === "alice" ? byName.bob : byName.alice;
      r.eq(`keys/signature${i}/${s.key}/verify_other_key`, await verify(other.publicKey, hexToBytes(s.signature), msg), false);
    });
  }
  await r.guard("keys/malformed_inputs", async () => {
    const id = byName.alice;
    const sig = await sign(id.privateKey, new Uint8Array(0));
    r.eq("keys/verify_short_key", await verify(id.publicKey.subarray(1), sig, new Uint8Array(0)), false);
    r.eq("keys/verify_short_signature", await verify(id.publicKey, sig.subarray(1), new Uint8Array(0)), false);
    r.eq("keys/verify_not_bytes", await verify(null, sig, new Uint8Array(0)), false);
    r.eq("keys/verify_invalid_point", await verify(new Uint8Array(32).fill(0xff), sig, new Uint8Array(0)), false);
  });
}

async function checkIdentities(r) {
  await r.guard("identity/generate", async () => {
    const id = await generateIdentity();
    const msg = utf8("hello");
    r.check("identity/generate/shape", id.publicKey.length === 32 && id.privateKey.extractable === false);
    r.eq("identity/generate/sign_verify", await verify(id.publicKey, await sign(id.privateKey, msg), msg), true);
  });
  await r.guard("identity/indexeddb", async () => {
    const dbName = `gossip-swarm-vectors-${Math.random().toString(16).slice(2)}`;
    try {
      const a = await loadOrCreateIdentity(dbName);
      const b = await loadOrCreateIdentity(dbName);
      r.check("identity/indexeddb/persists", bytesEqual(a.publicKey, b.publicKey), "a second load made a new key");
      r.eq("identity/indexeddb/not_extractable", b.privateKey.extractable, false);
      const msg = utf8("persisted");
      r.eq("identity/indexeddb/sign_verify", await verify(a.publicKey, await sign(b.privateKey, msg), msg), true);
      const c = await loadOrCreateIdentity(`${dbName}-other`);
      r.check("identity/indexeddb/per_database", !bytesEqual(a.publicKey, c.publicKey));
    } finally {
      indexedDB.deleteDatabase(dbName);
      indexedDB.deleteDatabase(`${dbName}-other`);
    }
  });
}

async function checkCodecs(r, data) {
  for (const c of data.cases) {
    const name = `codecs/${c.codec_name}/${c.name}`;
    await r.guard(name, async () => {
      const shapes = shapesOf(c.tensors);
      const encoded = encode(c.codec, tensorsOf(c.tensors));
      r.eq(`${name}/encode`, bytesToHex(encoded), c.encoded);
      r.eq(`${name}/encoded_size`, encodedSize(c.codec, shapes), c.encoded.length / 2);
      const diff = sameTensors(decode(c.codec, hexToBytes(c.encoded), shapes), c.decoded);
      r.check(`${name}/decode`, diff === null, diff);
      const longer = concatBytes(hexToBytes(c.encoded), new Uint8Array(1));
      await r.rejects(`${name}/decode_wrong_size`, () => decode(c.codec, longer, shapes), ProtocolError, "bad_shape");
    });
  }
  // our own encoders refuse what they cannot carry (protocols/codecs.py check_finite): never NaN on the wire
  const refusals = { nan: [NaN, [0, 1, 2]], infinity: [Infinity, [0, 1, 2]], minus_infinity: [-Infinity, [0, 1, 2]], float16_overflow: [65520, [1]] };
  for (const [what, [value, codecs]] of Object.entries(refusals)) {
    for (const codec of codecs) {
      const name = `codecs/refuses/${what}/${codec}`;
      try {
        encode(codec, [new Float32Array([0.5, 1]), new Float32Array([0, value, 2])]);
        r.check(name, false, "encoded");
      } catch (exc) {
        r.check(name, exc instanceof RangeError && /tensor 1/.test(exc.message), `threw ${exc?.name}: ${exc?.message}`);
      }
    }
  }
  r.check("codecs/float16_limit_is_fine", encode(CODEC.FLOAT16, [new Float32Array([65519, -65519])]).length === 4);
  await r.rejects("codecs/unknown_codec", () => encode(3, [new Float32Array(1)]), ProtocolError, "bad_codec");
  await r.rejects("codecs/unknown_codec_decode", () => decode(7, new Uint8Array(0), []), ProtocolError, "bad_codec");
}

function fieldsOf(vector) {
  const f = vector.fields;
  return {
    kind: f.kind, codec: f.codec, swarmId: hexToBytes(f.swarm_id), modelId: hexToBytes(f.model_id),
    receiver: hexToBytes(f.receiver), session: BigInt(f.session), seq: BigInt(f.seq),
    exchangeId: BigInt(f.exchange_id), sampleWeight: f.sample_weight, step: BigInt(f.step),
    tensors: tensorsOf(vector.tensors), shapes: shapesOf(vector.tensors),
  }; // prettier-ignore
}

/** A parsed header in the vectors' field names and encodings (u64 as decimal strings). */
function headerFields(h) {
  return {
    version: h.version, kind: h.kind, codec: h.codec, flags: h.flags, swarm_id: bytesToHex(h.swarmId),
    model_id: bytesToHex(h.modelId), sender: bytesToHex(h.sender), receiver: bytesToHex(h.receiver),
    session: String(h.session), seq: String(h.seq), exchange_id: String(h.exchangeId),
    sample_weight: h.sampleWeight, step: String(h.step), payload_len: h.payloadLen, shapes: h.shapes,
  }; // prettier-ignore
}

function headerMismatch(h, f) {
  const got = headerFields(h);
  const bigints = ["session", "seq", "exchangeId", "step"].filter((k) => typeof h[k] !== "bigint");
  if (bigints.length) return `not BigInt: ${bigints}`;
  for (const [k, v] of Object.entries(got)) {
    if (JSON.stringify(v) !== JSON.stringify(f[k])) return `${k}: got ${JSON.stringify(v)}, want ${JSON.stringify(f[k])}`;
  }
  if (Object.keys(FRAME_KIND).find((n) => FRAME_KIND[n] === h.kind) !== f.kind_name) return `kind name of ${h.kind}`;
  return null;
}

async function checkFrames(r, data) {
  for (const v of data.frames) {
    const name = `frames/${v.name}`;
    await r.guard(name, async () => {
      const identity = await identityFromSeed(hexToBytes(v.sender_seed));
      r.eq(`${name}/rebuild`, bytesToHex(await buildFrame(identity, fieldsOf(v))), v.frame);
      const bytes = hexToBytes(v.frame);
      const { header: parsed, payloadOffset } = parseHeader(bytes);
      r.eq(`${name}/payload_offset`, payloadOffset, v.header.length / 2);
      r.eq(`${name}/signed_bytes`, bytesToHex(parsed.signedBytes), v.signed_header);
      const frame = await decodeFrame(bytes);
      const h = frame.header;
      const mismatch = headerMismatch(h, v.fields);
      r.check(`${name}/fields`, mismatch === null, mismatch);
      r.eq(`${name}/digest`, bytesToHex(h.digest), v.digest);
      r.eq(`${name}/signature`, bytesToHex(h.signature), v.signature);
      r.eq(`${name}/payload`, bytesToHex(frame.payload), v.payload);
      r.eq(`${name}/digest_is_sha256`, bytesToHex(await sha256(frame.payload)), v.digest);
      const diff = sameTensors(frameTensors(frame), v.decoded);
      r.check(`${name}/decoded`, diff === null, diff);
    });
  }
  r.check("frames/cover_every_kind", new Set(data.frames.map((v) => v.fields.kind)).size === Object.keys(FRAME_KIND).length);
  await checkBadFrames(r, data.frames.find((v) => v.name === "exchange_request_float32"));
}

/** Each way a frame must be refused, derived from a vector frame; reasons as protocols/frame.py. */
async function checkBadFrames(r, v) {
  const good = hexToBytes(v.frame);
  const identity = await identityFromSeed(hexToBytes(v.sender_seed));
  const layoutEnd = parseHeader(good).header.signedBytes.length - 32; // start of the digest
  const nan = new Uint8Array([0x7f, 0xf8, 0, 0, 0, 0, 0, 0]);
  const build = (over) => buildFrame(identity, { ...fieldsOf(v), ...over });
  const cases = {
    empty: [() => new Uint8Array(0), "malformed"],
    shorter_than_header: [() => good.subarray(0, FIXED_HEADER_SIZE - 1), "malformed"],
    bad_magic: [() => flip(good, 0), "malformed"],
    bad_version: [() => setAt(good, 4, [2]), "bad_version"],
    kind_zero: [() => setAt(good, 5, [0]), "malformed"],
    kind_eight: [() => setAt(good, 5, [8]), "malformed"],
    unknown_codec: [() => setAt(good, 6, [3]), "bad_codec"],
    too_many_tensors: [() => setAt(good, 164, [0x04, 0x01]), "bad_shape"],
    negative_sample_weight: [() => flip(good, 144, 0x80), "non_finite"],
    nan_sample_weight: [() => setAt(good, 144, nan), "non_finite"],
    huge_sample_weight: [() => build({ sampleWeight: 1000000000.0000001 }), "non_finite"],
    max_sample_weight: [() => build({ sampleWeight: 1e9 }), "ok"],
    tiny_negative_sample_weight: [() => build({ sampleWeight: -1e-300 }), "non_finite"],
    negative_zero_sample_weight: [() => build({ sampleWeight: -0 }), "ok"],
    infinite_sample_weight: [() => build({ sampleWeight: Infinity }), "non_finite"],
    ndim_nine: [() => setAt(good, FIXED_HEADER_SIZE, [9]), "bad_shape"],
    too_many_elements: [() => setAt(good, FIXED_HEADER_SIZE + 1, [0xff, 0xff, 0xff, 0xff]), "bad_shape"],
    ends_inside_layout: [() => good.subarray(0, FIXED_HEADER_SIZE + 3), "malformed"],
    ends_inside_signature: [() => good.subarray(0, layoutEnd + 95), "malformed"],
    tampered_seq: [() => flip(good, 135), "bad_signature"],
    tampered_flags: [() => flip(good, 7), "bad_signature"],
    tampered_sender: [() => flip(good, 60), "bad_signature"],
    tampered_digest: [() => flip(good, layoutEnd + 3), "bad_signature"],
    tampered_signature: [() => flip(good, layoutEnd + 40), "bad_signature"],
    tampered_payload: [() => flip(good, -1), "bad_digest"],
    extra_byte: [() => concatBytes(good, new Uint8Array(1)), "bad_length"],
    missing_byte: [() => good.subarray(0, good.length - 1), "bad_length"],
    signed_codec_mismatch: [() => resigned(identity, good, (s) => (s[6] = CODEC.INT8)), "bad_shape"],
    signed_layout_mismatch: [() => resigned(identity, good, (s, view) => view.setUint32(FIXED_HEADER_SIZE + 1, 3)), "bad_shape"],
    nan_tensor: [() => hostileFrame(identity, fieldsOf(v), rawPayload(fieldsOf(v).tensors, NaN)), "non_finite"],
    inf_tensor: [() => hostileFrame(identity, fieldsOf(v), rawPayload(fieldsOf(v).tensors, -Infinity)), "non_finite"],
    float16_overflow: [() => hostileFrame(identity, { ...fieldsOf(v), codec: CODEC.FLOAT16 },
                                          rawPayload(fieldsOf(v).tensors, 0x7c00, CODEC.FLOAT16)), "non_finite"],
  }; // prettier-ignore
  for (const [name, [make, reason]] of Object.entries(cases)) {
    await r.guard(`frames/reject/${name}`, async () => r.eq(`frames/reject/${name}`, await reasonOf(await make()), reason));
  }
  await r.guard("frames/float16_limit", async () => {
    const frame = await decodeFrame(await build({ codec: CODEC.FLOAT16, tensors: fieldsOf(v).tensors.map((t) => t.map(() => 65519)) }));
    r.check("frames/float16_limit", frameTensors(frame).every((t) => t.every((x) => x === 65504)));
  });
}

async function checkVerifier(r, frames) {
  const v = frames.find((f) => f.name === "exchange_request_float32");
  const sender = await identityFromSeed(hexToBytes(v.sender_seed));
  const stranger = await identityFromSeed(new Uint8Array(32).fill(0x33));
  const base = fieldsOf(v);
  const make = (over = {}, who = sender) => buildFrame(who, { ...base, ...over });
  const zeros = () => base.tensors.map((t) => new Float32Array(t.length));
  const good = await make();
  const verifier = (known = [sender.publicKey]) =>
    new FrameVerifier({
      swarmId: base.swarmId, modelId: base.modelId, ownKey: base.receiver,
      isKnown: (key) => known.some((k) => bytesEqual(k, key)), shapes: base.shapes, maxFrameSize: good.length,
    }); // prettier-ignore
  await r.guard("verifier/accepts", async () => {
    const ver = verifier();
    const { frame, tensors } = await ver.admit(good, sender.publicKey);
    const diff = sameTensors(tensors, v.decoded);
    r.check("verifier/accepts/tensors", diff === null, diff);
    r.eq("verifier/accepts/seq", frame.header.seq, 1n);
    r.check("verifier/accepts/counts", ver.accepted[bytesToHex(sender.publicKey)] === 1 && !Object.keys(ver.rejected).length);
    await r.rejects("verifier/replay", () => ver.admit(good, sender.publicKey), FrameRejected, "replay");
    const next = await make({ seq: 2n });
    r.eq("verifier/next_seq", (await ver.admit(next, sender.publicKey)).frame.header.seq, 2n);
    const otherSession = await make({ session: base.session + 1n });
    r.eq("verifier/new_session", (await ver.admit(otherSession, sender.publicKey)).frame.header.seq, 1n);
    r.check("verifier/rejected_counts", JSON.stringify(ver.rejected) === '{"replay":1}', JSON.stringify(ver.rejected));
  });
  await r.guard("verifier/forgery_does_not_burn_seq", async () => {
    const ver = verifier();
    const forged = flip(await make({ seq: 5n }), 134); // a byte of the seq field
    await r.rejects("verifier/forged", () => ver.admit(forged, sender.publicKey), FrameRejected, "bad_signature");
    r.eq("verifier/forgery_does_not_burn_seq", (await ver.admit(good, sender.publicKey)).frame.header.seq, 1n);
  });
  await r.guard("verifier/no_tensor_kinds", async () => {
    const decline = await make({ kind: FRAME_KIND.EXCHANGE_DECLINE, tensors: [], shapes: [], sampleWeight: 0, step: 0n });
    const { tensors } = await verifier().admit(decline, sender.publicKey);
    r.eq("verifier/no_tensor_kinds", tensors.length, 0);
  });
  const cases = {
    oversize: [() => concatBytes(good, new Uint8Array(1)), "oversize"],
    truncated: [() => good.subarray(0, FIXED_HEADER_SIZE - 1), "malformed"],
    bad_version: [() => setAt(good, 4, [9]), "bad_version"],
    wrong_sender: [() => make({}, stranger), "wrong_sender"],
    unknown_sender: [() => make({}, stranger), "unknown_sender", stranger.publicKey],
    wrong_swarm: [() => make({ swarmId: new Uint8Array(16).fill(9) }), "wrong_swarm"],
    wrong_model: [() => make({ modelId: new Uint8Array(32).fill(9) }), "wrong_model"],
    wrong_receiver: [() => make({ receiver: stranger.publicKey }), "wrong_receiver"],
    tampered_header: [() => flip(good, 140), "bad_signature"],
    tampered_payload: [() => flip(good, -1), "bad_digest"],
    bad_length: [() => good.subarray(0, good.length - 1), "bad_length"],
    bad_shape: [() => make({ tensors: zeros(), shapes: [[3, 2], [3], []] }), "bad_shape"], // same size, other layout
    non_finite: [() => hostileFrame(sender, base, rawPayload(base.tensors, NaN)), "non_finite"],
  }; // prettier-ignore
  for (const [name, [makeBad, reason, link = sender.publicKey]] of Object.entries(cases)) {
    await r.guard(`verifier/reject/${name}`, async () => {
      const ver = verifier();
      const bytes = await makeBad();
      await r.rejects(`verifier/reject/${name}`, () => ver.admit(bytes, link), FrameRejected, reason);
      const counts = JSON.stringify(ver.rejected);
      r.check(`verifier/reject/${name}/counted`, counts === JSON.stringify({ [reason]: 1 }) && !Object.keys(ver.accepted).length, counts);
    });
  }
}

async function checkChunks(r, data) {
  for (const c of data.cases) {
    const name = `chunks/${c.name}`;
    await r.guard(name, async () => {
      const frame = hexToBytes(c.frame);
      const messages = [...splitFrame(frame, c.transfer_id, c.message_size)];
      r.eq(`${name}/split`, JSON.stringify(messages.map(bytesToHex)), JSON.stringify(c.chunks));
      const inOrder = new Reassembler(Math.max(1, frame.length));
      const results = c.chunks.map((m) => inOrder.feed(hexToBytes(m)));
      const last = results.pop();
      r.check(`${name}/reassemble`, results.every((x) => x === null) && bytesEqual(last, frame));
      const reversed = new Reassembler(Math.max(1, frame.length));
      const backwards = [...c.chunks].reverse().map((m) => reversed.feed(hexToBytes(m)));
      r.check(`${name}/reassemble_reversed`, bytesEqual(backwards.at(-1), frame) && reversed.buffered === 0);
    });
  }
  await checkBadChunks(r, hexToBytes(data.cases[0].frame));
}

function chunk(tid, index, count, total, data) {
  const out = new Uint8Array(CHUNK_HEADER_SIZE + data.length);
  const view = new DataView(out.buffer);
  out.set([0x47, 0x43]);
  [tid, index, count, total].forEach((x, i) => view.setUint32(2 + 4 * i, x));
  out.set(data, CHUNK_HEADER_SIZE);
  return out;
}

async function checkBadChunks(r, frame) {
  const parts = [...splitFrame(frame, 1, 64)];
  const fresh = (opts) => new Reassembler(frame.length, opts);
  const d = new Uint8Array(10);
  const cases = {
    too_short: [[new Uint8Array(17)], "bad_chunk", {}],
    too_long: [[new Uint8Array(MAX_MESSAGE_SIZE + 1)], "bad_chunk", {}],
    bad_magic: [[flip(parts[0], 0)], "bad_chunk", {}],
    oversize: [[chunk(1, 0, 1, frame.length + 1, d)], "oversize", { oversize: 1 }],
    zero_count: [[chunk(1, 0, 0, 10, d)], "bad_chunk", { bad_count: 1 }],
    index_past_count: [[chunk(1, 2, 2, 20, d)], "bad_chunk", { bad_count: 1 }],
    count_above_total: [[chunk(1, 0, 3, 2, d)], "bad_chunk", { bad_count: 1 }],
    inconsistent: [[parts[0], chunk(1, 1, parts.length + 1, frame.length, d)], "bad_chunk", { inconsistent: 1 }],
    duplicate: [[parts[0], parts[0]], "bad_chunk", { duplicate: 1 }],
    overflow: [[chunk(1, 0, 2, 15, d), chunk(1, 1, 2, 15, d)], "oversize", { overflow: 1 }],
    short: [[chunk(1, 0, 2, 25, d), chunk(1, 1, 2, 25, d)], "bad_chunk", { short: 1 }],
  }; // prettier-ignore
  for (const [name, [messages, reason, dropped]] of Object.entries(cases)) {
    await r.guard(`chunks/reject/${name}`, async () => {
      const re = fresh();
      const init = messages.slice(0, -1).map((m) => re.feed(m));
      r.check(`chunks/reject/${name}/prefix`, init.every((x) => x === null));
      await r.rejects(`chunks/reject/${name}`, () => re.feed(messages.at(-1)), ChunkError, reason);
      r.eq(`chunks/reject/${name}/dropped`, JSON.stringify(re.dropped), JSON.stringify(dropped));
      r.eq(`chunks/reject/${name}/forgotten`, re.buffered, 0);
    });
  }
  await r.guard("chunks/too_many_transfers", async () => {
    let now = 0;
    const re = fresh({ maxTransfers: 2, clock: () => now });
    for (const tid of [1, 2, 3]) {
      now += 1;
      re.feed(chunk(tid, 0, 2, 20, d));
    }
    r.eq("chunks/too_many_transfers/dropped", JSON.stringify(re.dropped), '{"too_many_transfers":1}');
    r.eq("chunks/too_many_transfers/buffered", re.buffered, 20);
    r.check("chunks/too_many_transfers/oldest_gone", re.feed(chunk(3, 1, 2, 20, d))?.length === 20);
    r.eq("chunks/too_many_transfers/oldest_forgotten", re.feed(chunk(1, 1, 2, 20, d)), null); // starts anew
  });
  await r.guard("chunks/timeout", async () => {
    let now = 0;
    const re = fresh({ timeoutMs: 1000, clock: () => now });
    re.feed(parts[0]);
    now = 1000;
    re.expire();
    r.eq("chunks/timeout/kept_at_limit", re.buffered, parts[0].length - CHUNK_HEADER_SIZE);
    now = 1001;
    r.eq("chunks/timeout/expired_on_feed", re.feed(parts[1]), null);
    r.eq("chunks/timeout/dropped", JSON.stringify(re.dropped), '{"timeout":1}');
    re.expire();
    r.eq("chunks/timeout/restarted", re.buffered, parts[1].length - CHUNK_HEADER_SIZE);
  });
  await r.guard("chunks/split_bounds", async () => {
    await r.rejects("chunks/split_too_small", () => [...splitFrame(frame, 1, 18)], RangeError, undefined);
    r.eq("chunks/split_max", [...splitFrame(new Uint8Array(MAX_MESSAGE_SIZE), 1)].length, 2);
    r.eq("chunks/split_empty", bytesToHex([...splitFrame(new Uint8Array(0), 9, 19)][0]), "474300000009000000000000000100000000");
  });
}

async function checkJoin(r, data) {
  r.eq("join/context", bytesToHex(JOIN_CONTEXT), data.join_context);
  const challenge = JSON.parse(data.challenge_json);
  r.eq("join/challenge_nonce", challenge.nonce, data.nonce);
  for (const c of data.cases) {
    const name = `join/${c.key}`;
    await r.guard(name, async () => {
      const id = await identityFromSeed(hexToBytes(c.seed));
      r.eq(`${name}/public_key`, bytesToHex(id.publicKey), c.public_key);
      r.eq(`${name}/peer_id`, await peerIdOf(id.publicKey), c.peer_id);
      const msg = joinMessage(hexToBytes(challenge.nonce), data.swarm_id);
      r.eq(`${name}/message`, bytesToHex(msg), c.message);
      r.eq(`${name}/message_length`, msg.length, 85);
      r.eq(`${name}/signature`, bytesToHex(await sign(id.privateKey, msg)), c.signature);
      r.eq(`${name}/verify`, await verify(id.publicKey, hexToBytes(c.signature), msg), true);
      const join = JSON.parse(c.join_json);
      r.check(`${name}/join_json`, join.type === "join" && join.v === 1 && join.swarm_id === data.swarm_id &&
        join.public_key === c.public_key && join.signature === c.signature, c.join_json); // prettier-ignore
    });
  }
}

async function checkLink(r, data) {
  r.eq("link/offer_context", bytesToHex(OFFER_CONTEXT), data.offer_context);
  r.eq("link/answer_context", bytesToHex(ANSWER_CONTEXT), data.answer_context);
  for (const c of data.fingerprint_cases) {
    const name = `link/fingerprints/${c.name}`;
    if (c.reason) {
      await r.rejects(name, () => sdpFingerprints(c.sdp), ProtocolError, c.reason);
    } else {
      await r.guard(name, async () => r.eq(name, JSON.stringify(sdpFingerprints(c.sdp)), JSON.stringify(c.fingerprints)));
    }
  }
  await r.guard("link/offer", async () => {
    const offerer = await identityFromSeed(hexToBytes(data.offerer.seed));
    const answerer = await identityFromSeed(hexToBytes(data.answerer.seed));
    r.eq("link/offerer_id", await peerIdOf(offerer.publicKey), data.offerer.peer_id);
    r.eq("link/answerer_id", await peerIdOf(answerer.publicKey), data.answerer.peer_id);
    const [a, b, o, ans] = [data.offerer.peer_id, data.answerer.peer_id, data.offer, data.answer];
    const offerMsg = offerMessage(data.swarm_id, a, b, hexToBytes(o.nonce), sdpFingerprints(o.sdp));
    r.eq("link/offer/message", bytesToHex(offerMsg), o.message);
    r.eq("link/offer/sign", bytesToHex(await sign(offerer.privateKey, offerMsg)), o.signature);
    r.eq("link/offer/verify", await verify(offerer.publicKey, hexToBytes(o.signature), offerMsg), true);
    const mitm = offerMessage(data.swarm_id, a, b, hexToBytes(o.nonce), sdpFingerprints(data.mitm_offer_sdp));
    r.eq("link/offer/mitm_message", bytesToHex(mitm), data.mitm_offer_message);
    r.eq("link/offer/mitm_refused", await verify(offerer.publicKey, hexToBytes(o.signature), mitm), false);
    r.eq("link/offer/other_receiver_refused", await verify(offerer.publicKey, hexToBytes(o.signature),
      offerMessage(data.swarm_id, a, a, hexToBytes(o.nonce), sdpFingerprints(o.sdp))), false); // prettier-ignore
    const answerMsg = answerMessage(data.swarm_id, b, a, hexToBytes(ans.nonce), hexToBytes(ans.offer_nonce), sdpFingerprints(ans.sdp));
    r.eq("link/answer/message", bytesToHex(answerMsg), ans.message);
    r.eq("link/answer/sign", bytesToHex(await sign(answerer.privateKey, answerMsg)), ans.signature);
    r.eq("link/answer/verify", await verify(answerer.publicKey, hexToBytes(ans.signature), answerMsg), true);
    const otherOffer = answerMessage(data.swarm_id, b, a, hexToBytes(ans.nonce), new Uint8Array(32), sdpFingerprints(ans.sdp));
    r.eq("link/answer/other_offer_refused", await verify(answerer.publicKey, hexToBytes(ans.signature), otherOffer), false);
    const offerJson = JSON.parse(o.offer_json), answerJson = JSON.parse(ans.answer_json);
    r.check("link/offer_json", offerJson.type === "offer" && offerJson.to === b && offerJson.sdp === o.sdp &&
      offerJson.auth.nonce === o.nonce && offerJson.auth.signature === o.signature, o.offer_json); // prettier-ignore
    r.check("link/answer_json", answerJson.type === "answer" && answerJson.to === a && answerJson.sdp === ans.sdp &&
      answerJson.auth.nonce === ans.nonce && answerJson.auth.signature === ans.signature, ans.answer_json); // prettier-ignore
  });
}

async function checkReceipts(r, data) {
  r.eq("receipt/context", bytesToHex(RECEIPT_CONTEXT), data.receipt_context);
  const session = hexToBytes(data.session);
  for (const c of data.cases) {
    const name = `receipt/${c.name}`;
    await r.guard(name, async () => {
      const id = await identityFromSeed(hexToBytes(c.seed));
      r.eq(`${name}/voucher`, await peerIdOf(id.publicKey), c.voucher);
      const message = receiptMessage(data.swarm_id, c.voucher, c.peer_id, session, c.frames);
      r.eq(`${name}/message`, bytesToHex(message), c.message);
      const receipt = await makeReceipt(id, data.swarm_id, c.voucher, c.peer_id, session, c.frames);
      r.eq(`${name}/sign`, receipt.signature, c.signature);
      r.eq(`${name}/inflated_refused`, await verify(id.publicKey, hexToBytes(c.signature), hexToBytes(c.inflated_message)), false);
      const report = JSON.parse(c.report_json);
      r.check(`${name}/report_json`, report.type === "report" && report.receipts.length === 1 &&
        JSON.stringify(report.receipts[0]) === JSON.stringify(receipt), c.report_json); // prettier-ignore
    });
  }
  await r.guard("receipt/book", async () => {
    const c = data.cases[0];
    const id = await identityFromSeed(hexToBytes(c.seed));
    const counts = { [c.peer_id]: c.frames, [c.voucher]: 5 }; // a count for itself is never a receipt
    const book = new ReceiptBook(id, data.swarm_id, c.voucher, () => counts, session);
    const first = await book.due();
    r.check("receipt/book/due", first.length === 1 && first[0].signature === c.signature, JSON.stringify(first));
    r.eq("receipt/book/nothing_new", (await book.due()).length, 0);
    book.resendAll();
    r.eq("receipt/book/resend_all", (await book.due()).length, 1);
  });
}

async function checkManifest(r, data) {
  await r.guard("manifest/pin", async () => {
    r.eq("manifest/publisher_fingerprint", await publisherFingerprint(hexToBytes(data.publisher_key)), data.publisher_fingerprint);
    r.eq("manifest/pin_from_link", publisherPinFromHash(new URL(data.pinned_join_url).hash), data.publisher_fingerprint);
    r.eq("manifest/no_pin", publisherPinFromHash(""), null);
    let threw = false;
    try { publisherPinFromHash("#pk=abc"); } catch { threw = true; }
    r.check("manifest/bad_pin_refused", threw);
  });
  await r.guard("manifest", async () => {
    r.eq("manifest/context", bytesToHex(MANIFEST_CONTEXT), data.manifest_context);
    const text = utf8(data.manifest);
    r.eq("manifest/sha256", bytesToHex(await sha256(text)), data.manifest_sha256);
    r.eq("manifest/model_id", bytesToHex(await sha256(text)), data.model_id);
    const message = await manifestMessage(text);
    r.eq("manifest/signed_message", bytesToHex(message), data.signed_message);
    const publisher = await identityFromSeed(hexToBytes(data.publisher_seed));
    r.eq("manifest/publisher_key", bytesToHex(publisher.publicKey), data.publisher_key);
    r.eq("manifest/sign", bytesToHex(await sign(publisher.privateKey, message)), data.signature);
    const envelope = JSON.parse(data.envelope);
    r.check("manifest/envelope", envelope.manifest === data.manifest && envelope.signature === data.signature);
    const manifest = JSON.parse(envelope.manifest);
    r.eq("manifest/contract", JSON.stringify(parseManifest(parseEnvelope(data.envelope).manifest)), JSON.stringify(manifest));
    const key = hexToBytes(manifest.publisher_key);
    r.eq("manifest/verify", await verify(key, hexToBytes(envelope.signature), await manifestMessage(utf8(envelope.manifest))), true);
    const tampered = utf8(envelope.manifest.replace('"name":"', '"name":"x'));
    r.eq("manifest/verify_tampered", await verify(key, hexToBytes(envelope.signature), await manifestMessage(tampered)), false);
    for (const [digest, hex] of Object.entries(data.blobs)) {
      r.eq(`manifest/blob/${digest.slice(0, 12)}`, bytesToHex(await sha256(hexToBytes(hex))), digest);
    }
    const weights = encode(CODEC.FLOAT32, tensorsOf(data.initial_weights));
    r.eq("manifest/initial_weights", bytesToHex(await sha256(weights)), manifest.model.initial_weights.digest);
  });
}

// ---- dataset shards (version 1: class labels, version 2: float32 targets) ----------------

async function checkDataset(r, data) {
  for (const shard of data.shards) {
    await r.guard(`dataset/${shard.name}/decode`, () => {
      const got = decodeShard(hexToBytes(shard.encoded));
      const wantY = shard.y_dtype ? Float32Array.from(shard.decoded_y) : Uint8Array.from(shard.decoded_y);
      r.eq(`dataset/${shard.name}/x`, f32hex(got.x), f32hex(Float32Array.from(shard.decoded_x)));
      r.eq(`dataset/${shard.name}/y`, bytesToHex(new Uint8Array(got.y.buffer, got.y.byteOffset, got.y.byteLength)),
        bytesToHex(new Uint8Array(wantY.buffer)));
      r.eq(`dataset/${shard.name}/shape`, JSON.stringify([got.n, ...got.shape]), JSON.stringify(shard.x_shape));
      r.eq(`dataset/${shard.name}/targets`, got.targets, shard.y_dtype ? shard.y_shape[1] : 0);
    });
  }
}

// ---- page API --------------------------------------------------------------------------

window.runVectors = async function runVectors(vectors) {
  const r = new Results();
  await checkKeys(r, vectors.keys);
  await checkIdentities(r);
  await checkCodecs(r, vectors.codecs);
  await checkFrames(r, vectors.frames);
  await checkVerifier(r, vectors.frames.frames);
  await checkChunks(r, vectors.chunks);
  await checkJoin(r, vectors.join);
  await checkLink(r, vectors.link);
  await checkReceipts(r, vectors.receipt);
  await checkManifest(r, vectors.manifest);
  await checkDataset(r, vectors.dataset);
  // the JSON contract: the browser's schema validation (Ajv) refuses what Python refuses, with its code
  for (const c of checkContract(vectors.contract)) r.check(c.name, c.ok, c.detail);
  return r.list;
};

/** Sign with a fresh non-extractable key: {publicKey, signature} in hex. */
window.crossSign = async function crossSign(messageHex) {
  const id = await generateIdentity();
  const signature = await sign(id.privateKey, hexToBytes(messageHex));
  return { publicKey: bytesToHex(id.publicKey), signature: bytesToHex(signature), extractable: id.privateKey.extractable };
};

window.crossVerify = (pubHex, sigHex, msgHex) => verify(hexToBytes(pubHex), hexToBytes(sigHex), hexToBytes(msgHex));

/**
 * Build a frame from JSON-friendly fields (hex bytes, decimal-string u64s, tensors as
 * {shape, values}); with no seed a fresh non-extractable key signs. Returns {frame, publicKey} hex.
 */
window.buildTestFrame = async function buildTestFrame(spec) {
  const id = spec.seed ? await identityFromSeed(hexToBytes(spec.seed)) : await generateIdentity();
  const frame = await buildFrame(id, {
    kind: spec.kind, codec: spec.codec, swarmId: hexToBytes(spec.swarm_id), modelId: hexToBytes(spec.model_id),
    receiver: hexToBytes(spec.receiver), session: BigInt(spec.session), seq: BigInt(spec.seq),
    exchangeId: BigInt(spec.exchange_id), sampleWeight: spec.sample_weight, step: BigInt(spec.step),
    tensors: spec.tensors.map((t) => new Float32Array(hexToBytes(t.hex).buffer)), shapes: spec.tensors.map((t) => t.shape),
  }); // prettier-ignore
  return { frame: bytesToHex(frame), publicKey: bytesToHex(id.publicKey) };
};

/** Decode a frame: {reason: "ok", fields, tensors: [float32 LE hex]} or {reason} when refused. */
window.decodeTestFrame = async function decodeTestFrame(frameHex) {
  try {
    const frame = await decodeFrame(hexToBytes(frameHex));
    const tensors = frameTensors(frame).map(f32hex);
    const h = frame.header;
    return { reason: "ok", fields: headerFields(h), tensors };
  } catch (exc) {
    if (exc instanceof ProtocolError) return { reason: exc.reason };
    throw exc;
  }
};

/** Frame reasons for a batch of hex frames ("ok" when accepted), for differential fuzzing. */
window.frameReasons = async (frames) => Promise.all(frames.map((hex) => reasonOf(hexToBytes(hex))));

/**
 * Run one FrameVerifier over ``frames`` ([frame hex, link key hex] in turn): the reason of each
 * ("ok" when admitted, with its tensors as float32 LE hex) and the final counters.
 */
window.verifierReasons = async function verifierReasons(config, frames) {
  const known = config.known.map(hexToBytes);
  const verifier = new FrameVerifier({
    swarmId: hexToBytes(config.swarm_id), modelId: hexToBytes(config.model_id), ownKey: hexToBytes(config.own_key),
    isKnown: (key) => known.some((k) => bytesEqual(k, key)), shapes: config.shapes, maxFrameSize: config.max_frame_size,
    maxSessions: config.max_sessions,
  }); // prettier-ignore
  const reasons = [];
  for (const [frameHex, linkHex] of frames) {
    try {
      const { tensors } = await verifier.admit(hexToBytes(frameHex), hexToBytes(linkHex));
      reasons.push(["ok", tensors.map(f32hex)]);
    } catch (exc) {
      if (!(exc instanceof FrameRejected)) throw exc;
      reasons.push([exc.reason, []]);
    }
  }
  return { reasons, rejected: verifier.rejected, accepted: verifier.accepted };
};

/** Encode float32 LE hex tensors with ``codec`` -> hex. */
window.encodeTensors = (codec, tensorHexes) =>
  bytesToHex(encode(codec, tensorHexes.map((hex) => new Float32Array(hexToBytes(hex).buffer))));

/** Decode ``payloadHex`` with ``codec`` and ``shapes`` -> float32 LE hex per tensor. */
window.decodeTensors = (codec, payloadHex, shapes) => decode(codec, hexToBytes(payloadHex), shapes).map(f32hex);

document.getElementById("status").textContent = "ready";
window.vectorsReady = true;
