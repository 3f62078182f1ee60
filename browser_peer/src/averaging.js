// Averaging rules, the same arithmetic as peer/averaging.py (float64 math, float32 results).

/** Push-pull step: weighted mean of both models and the new gossip weight of each side. */
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
    const merged = mine.map((m, i) => {
      const out = new Float32Array(m.length);
      for (let j = 0; j < m.length; j++) out[j] = m[j] + share * (theirs[i][j] - m[j]) * scale;
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
