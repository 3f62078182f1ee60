// Averaging rules, bit for bit the arithmetic of peer/averaging.py (docs/PROTOCOL.md, "Averaging
// arithmetic"; checked against protocols/vectors/averaging.json): every value in float64, one
// operation at a time in the order written, rounded to float32 once when stored in the
// Float32Array; sums of squares accumulated in layout order.

/**
 * Push-pull step: weighted mean of both models and the new gossip weight of each side.
 * Per value float32(m·a + t·b) with a = n_m / (n_m + n_t), b = n_t / (n_m + n_t); weight (n_m + n_t) / 2.
 */
export function pairAverage(mine, myWeight, theirs, theirWeight) {
  checkLayout(mine, theirs);
  const total = myWeight + theirWeight;
  if (!(total > 0)) throw new Error("weights of the models to average must sum to a positive number");
  const a = myWeight / total;
  const b = theirWeight / total;
  const merged = mine.map((m, i) => {
    const t = theirs[i];
    const out = new Float32Array(m.length);
    for (let j = 0; j < m.length; j++) out[j] = m[j] * a + t[j] * b;
    return out;
  });
  return [merged, total / 2];
}

export const MAX_WEIGHT_RATIO = 4.0;

/** The partner's claimed gossip weight counted as at most ratio x ours (peer.averaging.bounded_weight). */
export function boundedWeight(theirWeight, myWeight, ratio = MAX_WEIGHT_RATIO) {
  if (!(Number.isFinite(theirWeight) && theirWeight >= 0)) {
    throw new Error(`gossip weight ${theirWeight} is not a finite non-negative number`);
  }
  if (myWeight <= 0) return theirWeight;
  return Math.min(theirWeight, ratio * myWeight);
}

/** pairAverage with the partner's weight bounded (live peers' plain rule, peer.averaging.bounded_pair_average). */
export function boundedPairAverage(mine, myWeight, theirs, theirWeight) {
  return pairAverage(mine, myWeight, theirs, boundedWeight(theirWeight, myWeight));
}

/** L2 distance of two models (lists of tensors), Σ (a - b)² accumulated in layout order. */
export function distance(a, b) {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < a[i].length; j++) {
      const d = a[i][j] - b[i][j];
      sum += d * d;
    }
  }
  return Math.sqrt(sum);
}

/** L2 norm of a model, Σ x² accumulated in layout order (peer.averaging.squared_norm). */
function norm(tensors) {
  let sum = 0;
  for (const t of tensors) for (let j = 0; j < t.length; j++) sum += t[j] * t[j];
  return Math.sqrt(sum);
}

function median(values) {
  const s = [...values].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Self-centered clipping (ClippedGossip), as peer.averaging.ClippedPairAverage: move towards
 * the neighbor by at most tau = multiplier x median of recent unclipped distances.
 * Per value float32(m + (share·scale)·(t - m)), scale = min(1, tau / distance) (1 at distance 0),
 * share = min(1/2, n_t / (n_m + n_t)) (1/2 when both are 0); weight (n_m + min(n_t, n_m)) / 2.
 */
export class ClippedPairAverage {
  constructor(multiplier = 2.0, { history = 32, floor = 1e-3, initial = 0.05 } = {}) {
    Object.assign(this, { multiplier, history, floor, initial });
    this.distances = [];
    this.clipped = 0;
    this.lastRatio = 1.0;
  }

  tau(mine) {
    if (this.distances.length === 0) return Math.max(this.floor, this.initial * norm(mine));
    return Math.max(this.floor, this.multiplier * median(this.distances));
  }

  average(mine, myWeight, theirs, theirWeight) {
    checkLayout(mine, theirs);
    const tau = this.tau(mine);
    const dist = distance(theirs, mine);
    const scale = dist > 0 ? Math.min(1, tau / dist) : 1;
    this.lastRatio = dist / tau;
    if (dist > tau) this.clipped += 1;
    else this.distances = [...this.distances, dist].slice(-this.history);
    const share = myWeight + theirWeight > 0 ? Math.min(0.5, theirWeight / (myWeight + theirWeight)) : 0.5;
    const step = share * scale;
    const merged = mine.map((m, i) => {
      const t = theirs[i];
      const out = new Float32Array(m.length);
      for (let j = 0; j < m.length; j++) out[j] = m[j] + step * (t[j] - m[j]);
      return out;
    });
    return [merged, (myWeight + Math.min(theirWeight, myWeight)) / 2];
  }
}

function checkLayout(mine, theirs) {
  if (mine.length !== theirs.length || mine.some((m, i) => m.length !== theirs[i].length)) {
    throw new Error("models to average have different tensor layouts");
  }
}
