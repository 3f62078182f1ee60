// Payload codecs (mirrors protocols/codecs.py): tensors <-> the bytes after a frame header.
// Byte-identical to numpy: values little-endian, float16 round-to-nearest-even, int8 as below.
// Encoders refuse NaN and infinities (and float16 values that would round to infinity) with a
// RangeError, as protocols/codecs.py does: receivers refuse non-finite weights, and int8 would
// turn them into finite numbers an honest peer merges.

import { ProtocolError } from "./errors.js";

export const CODEC = Object.freeze({ FLOAT32: 0, FLOAT16: 1, INT8: 2 });

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("the protocol codecs assume a little-endian platform"); // every browser platform is
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Element count of a shape (a scalar [] has one element). */
export function elementCount(shape) {
  return shape.reduce((n, d) => n * d, 1);
}

function checkCodec(codec) {
  if (codec !== CODEC.FLOAT32 && codec !== CODEC.FLOAT16 && codec !== CODEC.INT8) {
    throw new ProtocolError(`unknown codec id ${codec}`, "bad_codec");
  }
}

export function encodedSize(codec, shapes) {
  checkCodec(codec);
  const perTensor = codec === CODEC.INT8 ? 4 : 0;
  const width = codec === CODEC.FLOAT32 ? 4 : codec === CODEC.FLOAT16 ? 2 : 1;
  return shapes.reduce((n, s) => n + perTensor + width * elementCount(s), 0);
}

/** Round a float32 to binary16 bits, ties to even; subnormals kept, overflow to infinity (numpy). */
export function float32ToFloat16Bits(x) {
  f32[0] = x;
  return float32BitsToFloat16Bits(u32[0]);
}

/** The same from the float32's bits, so NaN payloads convert exactly as numpy's do. */
export function float32BitsToFloat16Bits(bits) {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00;
    const nan = 0x7c00 | (mant >>> 13);
    return sign | (nan === 0x7c00 ? 0x7c01 : nan); // keep NaN a NaN (numpy npy_floatbits_to_halfbits)
  }
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  let q, rem, half;
  if (e <= 0) {
    // binary16 subnormal (or zero): value / 2^-24, rounded; float32 subnormals are far below 2^-25
    const shift = 14 - e;
    if (exp === 0 || shift > 24) return sign;
    const full = mant | 0x800000;
    q = full >>> shift;
    rem = full & ((1 << shift) - 1);
    half = 1 << (shift - 1);
  } else {
    q = (e << 10) | (mant >>> 13);
    rem = mant & 0x1fff;
    half = 0x1000;
  }
  if (rem > half || (rem === half && (q & 1) === 1)) q += 1; // a carry may reach the exponent or infinity
  return sign | q;
}

export function float16BitsToFloat32(h) {
  u32[0] = float16BitsToFloat32Bits(h);
  return f32[0];
}

/** Widen binary16 bits to float32 bits (exact; NaN payloads kept as numpy keeps them). */
export function float16BitsToFloat32Bits(h) {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  const shift = Math.clz32(mant) - 21; // normalize the subnormal: float32 has the range for it
  return (sign | ((113 - shift) << 23) | (((mant << shift) & 0x3ff) << 13)) >>> 0;
}

/** numpy.rint: nearest integer, ties to even (Math.round rounds ties up). */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function int8Scale(t) {
  let peak = 0;
  for (let i = 0; i < t.length; i++) {
    const a = Math.abs(t[i]);
    if (a > peak || Number.isNaN(a)) peak = a; // NaN propagates like np.max
    if (Number.isNaN(peak)) break;
  }
  const scale = Math.fround(peak / 127);
  return scale > 0 ? scale : 1.0; // all zeros, underflow (or NaN): 1.0
}

export const FLOAT16_OVERFLOW = 65520; // float16 rounds |x| >= this to infinity

function checkTensor(t) {
  if (!(t instanceof Float32Array)) throw new TypeError("tensors are Float32Arrays");
}

const CODEC_NAMES = ["float32", "float16", "int8"];

/** Throw a RangeError naming the first tensor holding NaN, an infinity or |x| >= limit (protocols/codecs.py check_finite). */
export function checkFinite(tensors, codec, limit = Infinity) {
  tensors.forEach((t, i) => {
    let bad = 0;
    let peak = 0;
    for (let j = 0; j < t.length; j++) {
      const a = Math.abs(t[j]);
      if (!Number.isFinite(a)) bad += 1;
      else if (a > peak) peak = a;
    }
    if (bad) {
      throw new RangeError(`tensor ${i} (${t.length} values) holds ${bad} non-finite values (NaN or infinity); the ` +
        `${CODEC_NAMES[codec]} codec refuses to encode them: receivers refuse non-finite weights, and int8 would turn them into finite numbers`);
    }
    if (peak >= limit) {
      throw new RangeError(`tensor ${i} holds values of magnitude >= ${limit}, which the ${CODEC_NAMES[codec]} codec ` +
        "turns into infinity; use float32 or int8 for this model");
    }
  });
}

export function encode(codec, tensors) {
  checkCodec(codec);
  tensors.forEach(checkTensor);
  checkFinite(tensors, codec, codec === CODEC.FLOAT16 ? FLOAT16_OVERFLOW : Infinity);
  const out = new Uint8Array(encodedSize(codec, tensors.map((t) => [t.length])));
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const t of tensors) {
    if (codec === CODEC.FLOAT32) {
      out.set(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), offset);
      offset += t.byteLength;
    } else if (codec === CODEC.FLOAT16) {
      const bits = new Uint32Array(t.buffer, t.byteOffset, t.length); // bits, not numbers: NaN payloads survive
      for (let i = 0; i < t.length; i++, offset += 2) view.setUint16(offset, float32BitsToFloat16Bits(bits[i]), true);
    } else {
      const scale = int8Scale(t);
      view.setFloat32(offset, scale, true);
      offset += 4;
      for (let i = 0; i < t.length; i++, offset++) {
        const q = roundHalfEven(Math.fround(t[i] / scale));
        view.setInt8(offset, Number.isNaN(q) ? 0 : Math.min(127, Math.max(-127, q)));
      }
    }
  }
  return out;
}

/** Decode ``bytes`` into one Float32Array per shape (row-major, flat). */
export function decode(codec, bytes, shapes) {
  const size = encodedSize(codec, shapes);
  if (bytes.length !== size) {
    throw new ProtocolError(`payload is ${bytes.length} bytes, layout needs ${size}`, "bad_shape");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let offset = 0;
  for (const shape of shapes) {
    const n = elementCount(shape);
    if (codec === CODEC.FLOAT32) {
      out.push(new Float32Array(bytes.slice(offset, offset + 4 * n).buffer)); // copy: aligned and owned
      offset += 4 * n;
    } else if (codec === CODEC.FLOAT16) {
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++, offset += 2) bits[i] = float16BitsToFloat32Bits(view.getUint16(offset, true));
      out.push(new Float32Array(bits.buffer));
    } else {
      const scale = view.getFloat32(offset, true);
      offset += 4;
      const t = new Float32Array(n); // storing into a Float32Array is Math.fround(q * scale)
      for (let i = 0; i < n; i++, offset++) t[i] = view.getInt8(offset) * scale;
      out.push(t);
    }
  }
  return out;
}
