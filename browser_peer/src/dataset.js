// Dataset shards (GSDS): the same binary layout protocols/dataset.py writes.
// Header big-endian, values little-endian; uint8 features are scaled by 1/255 on load.
import { ProtocolError } from "./protocol/errors.js";

const MAGIC = [0x47, 0x53, 0x44, 0x53]; // "GSDS"
const HEAD = 13; // magic 4 | version 1 | x_dtype 1 | reserved 2 | n 4 | ndim 1

/** @returns {{x: Float32Array, y: Uint8Array, n: number, shape: number[]}} */
export function decodeShard(bytes) {
  if (bytes.length < HEAD) throw new ProtocolError("dataset shard shorter than its header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const code = bytes[5];
  const n = view.getUint32(8);
  const ndim = bytes[12];
  if (MAGIC.some((b, i) => bytes[i] !== b) || bytes[4] !== 1 || code > 1 || ndim > 4) {
    throw new ProtocolError("not a version-1 dataset shard");
  }
  const offset = HEAD + 4 * ndim;
  if (bytes.length < offset) throw new ProtocolError("dataset shard ends inside its example shape");
  const shape = [];
  for (let i = 0; i < ndim; i++) shape.push(view.getUint32(HEAD + 4 * i));
  const per = shape.reduce((a, b) => a * b, 1);
  const itemSize = code === 0 ? 1 : 4;
  const xLen = n * per * itemSize;
  if (bytes.length !== offset + xLen + n) {
    throw new ProtocolError(`dataset shard is ${bytes.length} bytes, header implies ${offset + xLen + n}`);
  }
  const x = new Float32Array(n * per);
  if (code === 0) {
    for (let i = 0; i < x.length; i++) x[i] = bytes[offset + i] / 255;
  } else {
    for (let i = 0; i < x.length; i++) x[i] = view.getFloat32(offset + 4 * i, true);
  }
  const y = bytes.slice(offset + xLen, offset + xLen + n);
  return { x, y, n, shape };
}

/** Parse a CSV of numbers with the label in column `labelColumn` (default: last). */
export function parseCsv(text, { inputSize, numClasses, labelColumn = -1 }) {
  const rows = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !/^[a-zA-Z"]/.test(l));
  if (rows.length === 0) throw new Error("the CSV holds no numeric rows");
  const x = new Float32Array(rows.length * inputSize);
  const y = new Uint8Array(rows.length);
  rows.forEach((line, r) => {
    const cells = line.split(",").map(Number);
    if (cells.length !== inputSize + 1) {
      throw new Error(`row ${r + 1} has ${cells.length} columns; the model needs ${inputSize} features and a label`);
    }
    const li = labelColumn < 0 ? cells.length + labelColumn : labelColumn;
    const label = cells[li];
    if (!Number.isInteger(label) || label < 0 || label >= numClasses) {
      throw new Error(`row ${r + 1}: label ${label} is not a class in [0, ${numClasses - 1}]`);
    }
    y[r] = label;
    const feats = cells.filter((_, i) => i !== li);
    if (!feats.every(Number.isFinite)) throw new Error(`row ${r + 1} holds a non-numeric feature`);
    x.set(feats, r * inputSize);
  });
  return { x, y, n: rows.length, shape: [inputSize] };
}
