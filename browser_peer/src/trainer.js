// The local model in TensorFlow.js: loaded from the manifest's layers topology and initial
// weights, trained on the local shard. Weights are exchanged in the manifest's `weights` order:
// all of them, trainable or not (BatchNormalization's moving mean and variance are averaged by
// gossip like any weight, as in peer/trainer.py; a layer updates its own statistics when applied
// with training: true, and the optimizer touches only trainable variables).
/* global tf */

const WASM_DIR = "/peer/node_modules/@tensorflow/tfjs-backend-wasm/dist/";

/**
 * wasm is fastest for dense nets, but lacks the gradients of convolutions (Conv2DBackpropFilter,
 * DepthwiseConv2dNativeBackpropFilter) and embeddings (UnsortedSegmentSum), and its MaxPool3D
 * predicts wrongly: webgl for those. Mirrored by apps/tfjs_compat.py (WEBGL_LAYERS), which the
 * publisher checks against; tests/test_tfjs_compat.py trains every layer on the backend chosen here.
 */
export function preferredBackend(topology) {
  return /"class_name":\s*"(Conv|DepthwiseConv|SeparableConv|Embedding|MaxPooling3D)/.test(JSON.stringify(topology)) ? "webgl" : "wasm";
}

/**
 * wasm's BatchMatMul is 3-5x slower with a transpose flag than on plain operands (measured in
 * benchmarks/browser.py), and every Dense gradient asks for one: transpose explicitly instead.
 */
function fastTransposedMatMul() {
  const original = tf.getKernel("BatchMatMul", "wasm");
  const transpose = tf.getKernel("Transpose", "wasm");
  if (!original || !transpose || original.fastTransposed) return;
  const swapLast = (x) => {
    const perm = x.shape.map((_, i) => i);
    [perm[perm.length - 2], perm[perm.length - 1]] = [perm[perm.length - 1], perm[perm.length - 2]];
    return perm;
  };
  const kernelFunc = ({ inputs, backend, attrs }) => {
    if (!attrs.transposeA && !attrs.transposeB) return original.kernelFunc({ inputs, backend, attrs });
    const temporary = [];
    const plain = (x, flag) => {
      if (!flag) return x;
      const t = transpose.kernelFunc({ inputs: { x }, backend, attrs: { perm: swapLast(x) } });
      temporary.push(t);
      return t;
    };
    const a = plain(inputs.a, attrs.transposeA);
    const b = plain(inputs.b, attrs.transposeB);
    const out = original.kernelFunc({ inputs: { a, b }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
    temporary.forEach((t) => backend.disposeData(t.dataId));
    return out;
  };
  tf.env().set("DEBUG", false);
  const warn = console.warn;
  console.warn = () => {}; // re-registering logs "already registered"; replacing it is the point
  try {
    tf.registerKernel({ ...original, kernelFunc, fastTransposed: true });
  } finally {
    console.warn = warn;
  }
}

/**
 * wasmThreads: threads of the wasm backend (pages are cross-origin isolated, so it may use more
 * than one). One is the default: for the default MLP on 2 cores one thread measured 4.4 ms a
 * step and two 7.7 ms (benchmarks/browser.py); the matrices are too small to split.
 */
export async function useBackend(wanted, { wasmThreads = 1 } = {}) {
  if (tf.wasm && tf.wasm.setWasmPaths) tf.wasm.setWasmPaths(WASM_DIR);
  if (tf.wasm && tf.wasm.setThreadsCount && wasmThreads) tf.wasm.setThreadsCount(wasmThreads);
  for (const name of [wanted, "webgl", "wasm", "cpu"]) {
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        if (tf.getBackend() === "wasm") fastTransposedMatMul();
        return tf.getBackend();
      }
    } catch (err) {
      console.warn(`backend ${name} unavailable`, err);
    }
  }
  throw new Error("no TensorFlow.js backend could start");
}

/** mulberry32: a small seeded generator so a peer's batch order is reproducible. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REGRESSION = new Set(["mean_squared_error", "mean_absolute_error"]);

/** Classes of a classification swarm (binary: 2, whatever the output width); null for regression. */
export function numClassesOf(manifest, outWidth) {
  const loss = manifest.training.loss || "sparse_categorical_crossentropy";
  if (REGRESSION.has(loss)) return null;
  if (manifest.dataset && manifest.dataset.num_classes) return manifest.dataset.num_classes;
  return loss === "binary_crossentropy" ? 2 : outWidth;
}

export class Trainer {
  static async create(manifest, initialWeights, train, test, seed = 0) {
    const weightData = initialWeights.buffer.slice(initialWeights.byteOffset, initialWeights.byteOffset + initialWeights.byteLength);
    const model = await tf.loadLayersModel(tf.io.fromMemory({
      modelTopology: manifest.model.topology, weightSpecs: manifest.model.weights, weightData,
    }));
    // "Download model" saves this with the model: `swarm export` compiles model.h5 from it
    model.setUserDefinedMetadata({ gossip_swarm: { training: manifest.training } });
    return new Trainer(manifest, model, train, test, seed);
  }

  constructor(manifest, model, train, test, seed) {
    this.manifest = manifest;
    this.model = model;
    this.train = train;
    this.test = test;
    this.shapes = manifest.model.weights.map((w) => w.shape);
    this.vars = this._manifestOrder();
    const cfg = manifest.training;
    this.cfg = cfg;
    // Keras defaults where TF.js's differ (epsilon 1e-7), so both peers take the same steps
    const optimizers = {
      sgd: () => tf.train.sgd(cfg.learning_rate),
      rmsprop: () => tf.train.rmsprop(cfg.learning_rate, 0.9, 0, 1e-7),
      adam: () => tf.train.adam(cfg.learning_rate, 0.9, 0.999, 1e-7),
    };
    this.optimizer = (optimizers[cfg.optimizer] || optimizers.adam)();
    // the manifest's l2 penalizes kernels (rank >= 2), not biases, as peer/trainer.py does
    this.penalized = this.vars.filter((v) => v.shape.length >= 2);
    this.batchSize = cfg.batch_size;
    this.loss = cfg.loss || "sparse_categorical_crossentropy";
    this.regression = REGRESSION.has(this.loss);
    this.outWidth = model.outputs[0].shape.at(-1);
    this.numClasses = numClassesOf(manifest, this.outWidth);
    this.classNames = manifest.dataset && manifest.dataset.class_names ? manifest.dataset.class_names : null;
    this.inputShape = train.shape;
    this.inputSize = train.shape.reduce((a, b) => a * b, 1);
    this.step = 0;
    this.gossipWeight = train.n;
    this.stepMs = null; // moving average of one optimizer step
    this._random = rng(seed);
    this._order = this._permutation();
    this._cursor = 0;
  }

  /** Train on a contributor's own examples from now on (checked against the model's shape). */
  setTrainingData(data) {
    if (data.shape.reduce((a, b) => a * b, 1) !== this.inputSize) throw new Error("examples do not fit the model's input");
    this.train = data;
    this.gossipWeight = data.n;
    this._order = this._permutation();
    this._cursor = 0;
  }

  _manifestOrder() {
    const byName = new Map(this.model.weights.map((w) => [w.originalName, w]));
    const names = this.manifest.model.weights.map((w) => w.name);
    if (names.every((n) => byName.has(n))) return names.map((n) => byName.get(n));
    return this.model.weights; // names scoped differently; the order is the same
  }

  _permutation() {
    const order = new Uint32Array(this.train.n);
    for (let i = 0; i < order.length; i++) order[i] = i;
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(this._random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order;
  }

  _nextBatch() {
    if (this._cursor + this.batchSize > this._order.length) {
      this._order = this._permutation();
      this._cursor = 0;
    }
    const b = Math.min(this.batchSize, this._order.length);
    const xs = new Float32Array(b * this.inputSize);
    const idx = this._order.subarray(this._cursor, this._cursor + b);
    for (let k = 0; k < b; k++) {
      const i = idx[k];
      xs.set(this.train.x.subarray(i * this.inputSize, (i + 1) * this.inputSize), k * this.inputSize);
    }
    this._cursor += b;
    return [tf.tensor(xs, [b, ...this.inputShape]), this._targets(this.train, idx)];
  }

  /**
   * The targets the loss takes for examples `idx` of `data`, as peer/trainer.py targets_for:
   * sparse CE int32 labels [b]; categorical CE one-hot [b, classes]; binary CE 0/1 as float32
   * [b, outputs]; float32 targets (regression, a version-2 shard) [b, width].
   */
  _targets(data, idx) {
    const b = idx.length;
    if (data.targets) {
      const w = data.targets;
      const ys = new Float32Array(b * w);
      for (let k = 0; k < b; k++) ys.set(data.y.subarray(idx[k] * w, (idx[k] + 1) * w), k * w);
      return tf.tensor2d(ys, [b, w]);
    }
    const labels = new Int32Array(b);
    for (let k = 0; k < b; k++) labels[k] = data.y[idx[k]];
    if (this.loss === "sparse_categorical_crossentropy") return tf.tensor1d(labels, "int32");
    if (this.loss === "categorical_crossentropy") return tf.tidy(() => tf.oneHot(tf.tensor1d(labels, "int32"), this.outWidth).toFloat());
    return tf.tensor2d(Float32Array.from(labels), [b, 1]); // binary: the probability of class 1
  }

  /** Linear warm-up: local step t (0-based) uses lr * min(1, (t + 1) / warmup_steps). */
  _setLearningRate() {
    const { warmup_steps: warmup = 0, learning_rate: lr } = this.cfg;
    if (!warmup || this.step > warmup) return;
    const rate = lr * Math.min(1, (this.step + 1) / warmup);
    if (this.optimizer.setLearningRate) this.optimizer.setLearningRate(rate);
    else this.optimizer.learningRate = rate;
  }

  _trainStep(xs, ys) {
    const l2 = this.cfg.l2 || 0;
    const lossFn = () => {
      const loss = this._loss(ys, this.model.apply(xs, { training: true }));
      if (!l2) return loss;
      return tf.add(loss, tf.mul(l2, tf.addN(this.penalized.map((v) => tf.sum(tf.square(v.read()))))));
    };
    const { value, grads } = tf.variableGrads(lossFn);
    const clip = this.cfg.clipnorm;
    if (clip) { // per tensor, as Keras clipnorm
      for (const [name, g] of Object.entries(grads)) {
        const norm = tf.norm(g);
        grads[name] = tf.tidy(() => tf.mul(g, tf.div(clip, tf.maximum(norm, clip))));
        tf.dispose([g, norm]);
      }
    }
    this.optimizer.applyGradients(grads);
    tf.dispose(Object.values(grads));
    return value;
  }

  /** The manifest's loss, as tf_keras computes it (cross-entropies on probabilities, clipped to 1e-7). */
  _loss(ys, out) {
    return tf.tidy(() => {
      if (this.loss === "mean_squared_error") return tf.mean(tf.square(tf.sub(out, ys)));
      if (this.loss === "mean_absolute_error") return tf.mean(tf.abs(tf.sub(out, ys)));
      const p = tf.clipByValue(out, 1e-7, 1 - 1e-7);
      if (this.loss === "binary_crossentropy") {
        return tf.neg(tf.mean(tf.add(tf.mul(ys, tf.log(p)), tf.mul(tf.sub(1, ys), tf.log(tf.sub(1, p))))));
      }
      const target = ys.dtype === "int32" ? tf.oneHot(ys, this.outWidth) : ys; // sparse labels, or one-hot rows
      return tf.neg(tf.mean(tf.sum(tf.mul(target, tf.log(p)), 1)));
    });
  }

  /** Per-batch sums of the task's metrics: correct predictions, or absolute and squared errors. */
  _scoreSums(ys, out) {
    return tf.tidy(() => {
      if (this.regression) {
        const err = tf.sub(out, ys);
        return [tf.sum(tf.abs(err)), tf.sum(tf.square(err))];
      }
      if (this.loss === "binary_crossentropy") return [tf.sum(tf.cast(tf.equal(tf.greater(out, 0.5), tf.greater(ys, 0.5)), "float32"))];
      const truth = ys.rank === 1 ? ys : tf.argMax(ys, 1);
      return [tf.sum(tf.cast(tf.equal(tf.argMax(out, 1), tf.cast(truth, "int32")), "float32"))];
    });
  }

  /** Run n optimizer steps; return the mean loss. */
  async trainSteps(n) {
    const started = performance.now();
    let total = tf.scalar(0);
    for (let s = 0; s < n; s++) {
      const [xs, ys] = this._nextBatch();
      this._setLearningRate();
      const loss = this._trainStep(xs, ys);
      const next = tf.add(total, loss);
      tf.dispose([xs, ys, loss, total]);
      total = next;
      this.step += 1;
    }
    const mean = (await total.data())[0] / Math.max(1, n);
    total.dispose();
    const per = (performance.now() - started) / Math.max(1, n);
    this.stepMs = this.stepMs === null ? per : 0.9 * this.stepMs + 0.1 * per;
    return mean;
  }

  /**
   * Test loss and the task's metrics on the first `limit` test examples (all when null), as
   * peer/trainer.py score: `accuracy` is the headline in [0, 1] (for regression R² clipped to
   * [0, 1], since MAE has no upper bound); `metrics` holds accuracy, or mae, mse and r2.
   */
  async evaluate(limit = null) {
    const n = limit === null ? this.test.n : Math.min(limit, this.test.n);
    const sums = [0, 0];
    let lossSum = 0;
    const all = Uint32Array.from({ length: n }, (_, i) => i);
    for (let start = 0; start < n; start += 1000) {
      const b = Math.min(1000, n - start);
      const tensors = tf.tidy(() => {
        const xs = tf.tensor(this.test.x.subarray(start * this.inputSize, (start + b) * this.inputSize), [b, ...this.inputShape]);
        const ys = this._targets(this.test, all.subarray(start, start + b));
        const out = this.model.predict(xs);
        return [tf.mul(this._loss(ys, out), b), ...this._scoreSums(ys, out)];
      });
      const values = await Promise.all(tensors.map((t) => t.data()));
      lossSum += values[0][0];
      values.slice(1).forEach((v, i) => { sums[i] += v[0]; });
      tf.dispose(tensors);
    }
    const loss = lossSum / Math.max(1, n);
    if (!this.regression) {
      const per = this.loss === "binary_crossentropy" ? this.outWidth : 1;
      const accuracy = sums[0] / Math.max(1, n * per);
      return { loss, accuracy, metrics: { accuracy } };
    }
    const count = Math.max(1, n * (this.test.targets || 1));
    const ys = this.test.y.subarray(0, count);
    const width = this.test.targets || 1;
    let sst = 0;
    for (let j = 0; j < width; j++) {
      let mean = 0;
      for (let i = j; i < count; i += width) mean += ys[i];
      mean /= count / width;
      for (let i = j; i < count; i += width) sst += (ys[i] - mean) ** 2;
    }
    const r2 = sst > 0 ? 1 - sums[1] / sst : 0;
    return { loss, accuracy: Math.min(1, Math.max(0, r2)), metrics: { mae: sums[0] / count, mse: sums[1] / count, r2 } };
  }

  /** Class probabilities for one example (the "try the model" panel). */
  predict(example) {
    return tf.tidy(() => this.model.predict(tf.tensor(example, [1, ...this.inputShape])).dataSync().slice());
  }

  getWeights() {
    return this.vars.map((v) => new Float32Array(v.read().dataSync()));
  }

  setWeights(weights) {
    tf.tidy(() => this.vars.forEach((v, i) => v.write(tf.tensor(weights[i], this.shapes[i]))));
  }

  // --- what gossip needs ---------------------------------------------------------------
  current() {
    return { weights: this.getWeights(), weight: this.gossipWeight, step: this.step };
  }

  assign(weights, weight) {
    this.setWeights(weights);
    this.gossipWeight = weight;
  }
}
