// Dataset shards (GSDS): the same binary layout protocols/dataset.py writes.
// Header big-endian, values little-endian; uint8 features are scaled by 1/255 on load.
import { ProtocolError } from "./protocol/errors.js";

const MAGIC = [0x47, 0x53, 0x44, 0x53]; // "GSDS"
const HEAD = 13; // magic 4 | version 1 | x_dtype 1 | reserved 2 | n 4 | ndim 1

/**
 * Version 1 (class labels) and version 2 (y_dtype 0 = uint8 labels, 1 = float32 targets, y_width
 * of them per example), as protocols/dataset.py writes them.
 * @returns {{x: Float32Array, y: Uint8Array|Float32Array, n: number, shape: number[], targets: number, pixels: boolean}}
 *   targets: float32 targets per example (0: y holds class labels); pixels: the features were uint8 (scaled by 1/255)
 */
export function decodeShard(bytes) {
  if (bytes.length < HEAD) throw new ProtocolError("dataset shard shorter than its header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [version, code] = [bytes[4], bytes[5]];
  let [yCode, width] = [bytes[6], bytes[7]];
  const n = view.getUint32(8);
  const ndim = bytes[12];
  if (MAGIC.some((b, i) => bytes[i] !== b) || (version !== 1 && version !== 2) || code > 1 || ndim > 4) {
    throw new ProtocolError("not a version-1 or version-2 dataset shard");
  }
  if (version === 1) {
    if (yCode !== 0 || width !== 0) throw new ProtocolError("a version-1 dataset shard has reserved bytes 0");
    [yCode, width] = [0, 1];
  }
  if (yCode > 1 || width < 1 || (yCode === 0 && width !== 1)) {
    throw new ProtocolError(`dataset shard targets: y_dtype ${yCode} with y_width ${width} is not a valid pair`);
  }
  const offset = HEAD + 4 * ndim;
  if (bytes.length < offset) throw new ProtocolError("dataset shard ends inside its example shape");
  const shape = [];
  for (let i = 0; i < ndim; i++) shape.push(view.getUint32(HEAD + 4 * i));
  const per = shape.reduce((a, b) => a * b, 1);
  const itemSize = code === 0 ? 1 : 4;
  const xLen = n * per * itemSize;
  const yLen = n * width * (yCode === 0 ? 1 : 4);
  if (bytes.length !== offset + xLen + yLen) {
    throw new ProtocolError(`dataset shard is ${bytes.length} bytes, header implies ${offset + xLen + yLen}`);
  }
  const x = new Float32Array(n * per);
  if (code === 0) {
    for (let i = 0; i < x.length; i++) x[i] = bytes[offset + i] / 255;
  } else {
    for (let i = 0; i < x.length; i++) x[i] = view.getFloat32(offset + 4 * i, true);
  }
  let y;
  if (yCode === 0) {
    y = bytes.slice(offset + xLen, offset + xLen + n);
  } else {
    y = new Float32Array(n * width);
    for (let i = 0; i < y.length; i++) y[i] = view.getFloat32(offset + xLen + 4 * i, true);
    if (!y.every(Number.isFinite)) throw new ProtocolError("dataset shard holds non-finite targets");
  }
  return { x, y, n, shape, targets: yCode === 1 ? width : 0, pixels: code === 0 };
}

/**
 * A contributor's own examples, checked before they train the model (own data given to the peer
 * before it starts; the CSV picker reads files with datafile.js, which checks the same): the
 * model's input size, every feature finite (one NaN makes the model NaN), and for a classifier
 * (numClasses) labels that are class indices 0..K-1 (1..K refused with the fix), for regression
 * (numClasses null) `outWidth` finite float32 targets per example (data.targets). Returns `data`.
 */
export function checkExamples(data, { inputSize, numClasses, outWidth = 1 }) {
  const per = data.shape.reduce((a, b) => a * b, 1);
  const targets = data.targets || 0;
  if (per !== inputSize) throw new Error(`examples of ${per} features do not fit the model's input of ${inputSize}`);
  if (!(data.n > 0) || data.x.length !== data.n * per || data.y.length !== data.n * Math.max(1, targets)) {
    throw new Error("no examples, or features and labels of different lengths");
  }
  for (let i = 0; i < data.x.length; i++) {
    if (!Number.isFinite(data.x[i])) {
      throw new Error(`example ${Math.floor(i / per) + 1}: feature ${(i % per) + 1} is ${data.x[i]}; drop or impute it before training`);
    }
  }
  if (numClasses === null || numClasses === undefined) {
    if (targets !== outWidth) {
      throw new Error(`this swarm trains on ${outWidth} numeric target(s) per example (regression); the data has ${targets ? `${targets} per example` : "class labels"}`);
    }
    const bad = data.y.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new Error(`example ${Math.floor(bad / targets) + 1}: target ${data.y[bad]}; drop or impute it before training`);
    return data;
  }
  if (targets) throw new Error(`this swarm trains a classifier of ${numClasses} classes; the data has numeric targets, not class labels`);
  let low = Infinity;
  let high = -Infinity;
  for (const v of data.y) { low = Math.min(low, v); high = Math.max(high, v); }
  if (low >= 1 && high === numClasses) {
    throw new Error(`labels run ${low}..${high}, but this model's ${numClasses} classes are 0..${numClasses - 1}: subtract 1 from every label`);
  }
  if (low < 0 || high >= numClasses) throw new Error(`labels in [${low}, ${high}] are not classes of this model (0..${numClasses - 1})`);
  return data;
}
