// Update frames (mirrors protocols/frame.py): a signed binary header followed by the payload.
//
//   magic "GSWF" | version u8 | kind u8 | codec u8 | flags u8
//   swarm_id 16 | model_id 32 | sender 32 | receiver 32
//   session u64 | seq u64 | exchange_id u64 | sample_weight f64 | step u64
//   payload_len u32 | n_tensors u16 | n_tensors x (ndim u8, ndim x u32)
//   payload_digest 32 | signature 64 (over every header byte before it) | payload
//
// Header integers are big-endian; u64 fields are BigInts. See docs/PROTOCOL.md.

import { bytesEqual, concatBytes, sha256 } from "./bytes.js";
import { CHUNK_HEADER_SIZE } from "./chunking.js";
import { CODEC, decode, elementCount, encode, encodedSize } from "./codecs.js";
import { SIGNATURE_SIZE, sign, verify } from "./crypto.js";
import { ProtocolError } from "./errors.js";

export const PROTOCOL_VERSION = 1;
export const MAGIC = new Uint8Array([0x47, 0x53, 0x57, 0x46]); // "GSWF"
export const FIXED_HEADER_SIZE = 166;
export const DIGEST_SIZE = 32;
export const MAX_TENSORS = 1024;
export const MAX_NDIM = 8;
export const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1; // per tensor, zero dimensions counted as 1
export const MAX_SAMPLE_WEIGHT = 1e9;

export const FRAME_KIND = Object.freeze({
  EXCHANGE_REQUEST: 1, // carries the sender's weights; asks for the receiver's
  EXCHANGE_RESPONSE: 2, // carries the responder's pre-merge weights
  EXCHANGE_DECLINE: 3, // no payload: the responder is busy, try another neighbor
  PULL_REQUEST: 4, // no payload: send me your current model (joining peers)
  PULL_RESPONSE: 5, // carries weights; the receiver adopts them instead of averaging
  EXCHANGE_PROPOSE: 6, // no payload: may we exchange? (weights move only once accepted)
  EXCHANGE_ACCEPT: 7, // no payload: yes, I hold myself for you; send the request
});
const MAX_KIND = Math.max(...Object.values(FRAME_KIND));

const U64_MAX = (1n << 64n) - 1n;

function u64(name, value) {
  const v = BigInt(value);
  if (v < 0n || v > U64_MAX) throw new RangeError(`${name} ${v} is not a u64`);
  return v;
}

function fixedBytes(name, value, size) {
  if (!(value instanceof Uint8Array) || value.length !== size) throw new TypeError(`${name} must be ${size} bytes`);
  return value;
}

/**
 * Bytes of one encoded frame with tensors of `shapes` under `codec` (mirrors protocols/frame.py
 * `frame_size`); with `messageSize`, plus one chunk header per data-channel message.
 */
export function frameSize(shapes, codec = CODEC.FLOAT32, messageSize = null) {
  const layout = shapes.reduce((n, s) => n + 1 + 4 * s.length, 0);
  const size = FIXED_HEADER_SIZE + layout + DIGEST_SIZE + SIGNATURE_SIZE + (shapes.length ? encodedSize(codec, shapes) : 0);
  if (messageSize === null) return size;
  return size + CHUNK_HEADER_SIZE * Math.max(1, Math.ceil(size / (messageSize - CHUNK_HEADER_SIZE)));
}

/** Every header byte the signature covers: fixed part, tensor layout, payload digest. */
function signedBytes(h) {
  const layoutSize = h.shapes.reduce((n, s) => n + 1 + 4 * s.length, 0);
  const out = new Uint8Array(FIXED_HEADER_SIZE + layoutSize + DIGEST_SIZE);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out.set([h.version, h.kind, h.codec, h.flags], 4);
  out.set(h.swarmId, 8);
  out.set(h.modelId, 24);
  out.set(h.sender, 56);
  out.set(h.receiver, 88);
  view.setBigUint64(120, h.session);
  view.setBigUint64(128, h.seq);
  view.setBigUint64(136, h.exchangeId);
  view.setFloat64(144, h.sampleWeight);
  view.setBigUint64(152, h.step);
  view.setUint32(160, h.payloadLen);
  view.setUint16(164, h.shapes.length);
  let offset = FIXED_HEADER_SIZE;
  for (const shape of h.shapes) {
    view.setUint8(offset, shape.length);
    shape.forEach((d, i) => view.setUint32(offset + 1 + 4 * i, d));
    offset += 1 + 4 * shape.length;
  }
  out.set(h.digest, offset);
  return out;
}

/** Encode ``tensors`` (flat Float32Arrays with their ``shapes``) with ``codec`` and sign the header. */
export async function buildFrame(identity, fields) {
  const { kind, swarmId, modelId, receiver, tensors = [], codec = CODEC.FLOAT32 } = fields;
  const shapes = (fields.shapes ?? []).map((s) => s.map(Number));
  if (tensors.length !== shapes.length) throw new ProtocolError("one shape per tensor", "bad_shape");
  tensors.forEach((t, i) => {
    if (t.length !== elementCount(shapes[i])) {
      throw new ProtocolError(`tensor ${i} has ${t.length} values, shape [${shapes[i]}] needs more or fewer`, "bad_shape");
    }
  });
  const payload = tensors.length ? encode(codec, tensors) : new Uint8Array(0);
  const header = {
    version: PROTOCOL_VERSION, kind, codec, flags: 0,
    swarmId: fixedBytes("swarmId", swarmId, 16), modelId: fixedBytes("modelId", modelId, 32),
    sender: fixedBytes("identity.publicKey", identity.publicKey, 32), receiver: fixedBytes("receiver", receiver, 32),
    session: u64("session", fields.session), seq: u64("seq", fields.seq),
    exchangeId: u64("exchangeId", fields.exchangeId), sampleWeight: Number(fields.sampleWeight),
    step: u64("step", fields.step), payloadLen: payload.length, shapes, digest: await sha256(payload),
  }; // prettier-ignore
  const signed = signedBytes(header);
  return concatBytes(signed, await sign(identity.privateKey, signed), payload);
}

/**
 * Parse the header at the start of ``bytes``: {header, payloadOffset}. Checks structure only
 * (sizes, magic, version, kind, codec, layout bounds), not the signature; reasons as in Python.
 */
export function parseHeader(bytes) {
  if (bytes.length < FIXED_HEADER_SIZE) {
    throw new ProtocolError(`frame of ${bytes.length} bytes is shorter than a header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!bytesEqual(bytes.subarray(0, 4), MAGIC)) throw new ProtocolError("bad magic, expected GSWF");
  const [version, kind, codec, flags] = bytes.subarray(4, 8);
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(`frame version ${version}, this peer speaks ${PROTOCOL_VERSION}`, "bad_version");
  }
  if (kind < 1 || kind > MAX_KIND) throw new ProtocolError(`unknown frame kind ${kind}`);
  if (codec > CODEC.INT8) throw new ProtocolError(`unknown codec id ${codec}`, "bad_codec");
  const nTensors = view.getUint16(164);
  if (nTensors > MAX_TENSORS) {
    throw new ProtocolError(`${nTensors} tensors exceeds the limit of ${MAX_TENSORS}`, "bad_shape");
  }
  const sampleWeight = view.getFloat64(144);
  if (!(Number.isFinite(sampleWeight) && sampleWeight >= 0 && sampleWeight <= MAX_SAMPLE_WEIGHT)) {
    throw new ProtocolError(`sample weight ${sampleWeight} outside [0, ${MAX_SAMPLE_WEIGHT}]`, "non_finite");
  }
  let offset = FIXED_HEADER_SIZE;
  const shapes = [];
  for (let i = 0; i < nTensors; i++) {
    if (offset + 1 > bytes.length) throw new ProtocolError("frame ends inside the tensor layout");
    const ndim = bytes[offset];
    if (ndim > MAX_NDIM) throw new ProtocolError(`tensor with ${ndim} dimensions exceeds ${MAX_NDIM}`, "bad_shape");
    const end = offset + 1 + 4 * ndim;
    if (end > bytes.length) throw new ProtocolError("frame ends inside the tensor layout");
    const shape = Array.from({ length: ndim }, (_, k) => view.getUint32(offset + 1 + 4 * k));
    if (shape.reduce((n, d) => n * (d || 1), 1) > MAX_TENSOR_ELEMENTS) {
      throw new ProtocolError(`tensor of shape [${shape}] exceeds ${MAX_TENSOR_ELEMENTS} elements`, "bad_shape");
    }
    shapes.push(shape);
    offset = end;
  }
  const end = offset + DIGEST_SIZE + SIGNATURE_SIZE;
  if (end > bytes.length) throw new ProtocolError("frame ends inside the digest or signature");
  const header = {
    version, kind, codec, flags,
    swarmId: bytes.subarray(8, 24), modelId: bytes.subarray(24, 56),
    sender: bytes.subarray(56, 88), receiver: bytes.subarray(88, 120),
    session: view.getBigUint64(120), seq: view.getBigUint64(128), exchangeId: view.getBigUint64(136),
    sampleWeight, step: view.getBigUint64(152), payloadLen: view.getUint32(160), shapes,
    digest: bytes.subarray(offset, offset + DIGEST_SIZE),
    signature: bytes.subarray(offset + DIGEST_SIZE, end),
    signedBytes: bytes.subarray(0, offset + DIGEST_SIZE),
  }; // prettier-ignore
  return { header, payloadOffset: end };
}

/** Parse a frame and verify its signature, payload length, digest and layout size: {header, payload}. */
export async function decodeFrame(bytes) {
  const { header, payloadOffset } = parseHeader(bytes);
  if (!(await verify(header.sender, header.signature, header.signedBytes))) {
    throw new ProtocolError("signature does not verify", "bad_signature");
  }
  const payload = bytes.subarray(payloadOffset);
  if (payload.length !== header.payloadLen) {
    throw new ProtocolError(`payload is ${payload.length} bytes, header declares ${header.payloadLen}`, "bad_length");
  }
  if (!bytesEqual(await sha256(payload), header.digest)) {
    throw new ProtocolError("payload digest does not match the signed header", "bad_digest");
  }
  if (encodedSize(header.codec, header.shapes) !== header.payloadLen) {
    throw new ProtocolError("payload length does not match the tensor layout", "bad_shape");
  }
  return { header, payload };
}

/** Decode the payload with the header's codec and layout; rejects NaN and infinities. */
export function frameTensors(frame) {
  const tensors = decode(frame.header.codec, frame.payload, frame.header.shapes);
  for (const t of tensors) {
    for (let i = 0; i < t.length; i++) {
      if (!Number.isFinite(t[i])) throw new ProtocolError("payload holds NaN or infinite values", "non_finite");
    }
  }
  return tensors;
}
