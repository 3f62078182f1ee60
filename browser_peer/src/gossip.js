// Asynchronous push-pull gossip, transport-agnostic (mirrors peer/gossip.py).
// A peer already in an exchange declines requests. Crossing requests (A->B while B->A) are
// resolved by peer id: the smaller id's request is the exchange, the larger peer answers it
// while its own request is in flight, and the smaller declines that one (no decline-decline
// livelock for slow exchanges).
import { pairAverage } from "./averaging.js";

export const Outcome = Object.freeze({
  MERGED: "merged", DECLINED: "declined", BUSY: "busy", TIMEOUT: "timeout", FAILED: "failed", CROSSED: "crossed",
});

/**
 * Milliseconds to wait for an exchange reply (peer/gossip.py exchange_deadline): both frames at
 * the link's rate plus round trips, doubled, within [floorMs, ceilingMs]; unknown rate: the floor.
 */
export function exchangeDeadlineMs(frameBytes, rateBytesPerS, rttS, { floorMs, ceilingMs = 600000 }) {
  if (!(rateBytesPerS > 0)) return Math.min(Math.max(floorMs, 0), ceilingMs);
  const expectedS = (2 * frameBytes) / rateBytesPerS + 4 * (rttS || 0);
  return Math.min(Math.max(floorMs, 2000 * expectedS), ceilingMs);
}

/** A promise-based mutex: training steps and merges never interleave. */
export class Lock {
  constructor() { this._tail = Promise.resolve(); }
  async run(fn) {
    const prev = this._tail;
    let release;
    this._tail = new Promise((r) => { release = r; });
    await prev;
    try { return await fn(); } finally { release(); }
  }
}

export class TimeoutError extends Error {}

export function withTimeout(promise, ms, what = "operation") {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/**
 * model: {lock: Lock, current(): {weights, weight, step}, assign(weights, weight)}
 * transport: {request(peerId, update) -> Promise<update|null>}
 * average: (mine, myWeight, theirs, theirWeight) -> [weights, weight]
 */
export class GossipEngine {
  constructor(model, average = pairAverage, peerId = null) {
    this.model = model;
    this.average = average;
    this.peerId = peerId; // ours: breaks crossing requests (null: every busy request is declined)
    this.busy = false;
    this.outcomes = Object.fromEntries(Object.values(Outcome).map((o) => [o, 0]));
    this.served = 0;
    this.declinedRequests = 0;
    this.crossed = 0;
    this._partner = null;
    this._crossedWith = null;
  }

  async initiate(peerId, transport, timeoutMs) {
    const outcome = await this._initiate(peerId, transport, timeoutMs);
    this.outcomes[outcome] += 1;
    return outcome;
  }

  async _initiate(peerId, transport, timeoutMs) {
    if (this.busy) return Outcome.BUSY;
    this.busy = true;
    this._partner = peerId;
    this._crossedWith = null;
    try {
      const mine = await this.model.lock.run(() => this.model.current());
      let reply;
      try {
        reply = await withTimeout(transport.request(peerId, mine), timeoutMs, "exchange");
      } catch (err) {
        if (this._crossedWith === peerId) return Outcome.CROSSED;
        return err instanceof TimeoutError ? Outcome.TIMEOUT : Outcome.FAILED;
      }
      if (this._crossedWith === peerId) return Outcome.CROSSED; // merged as its responder already
      if (reply === null) return Outcome.DECLINED;
      await this.model.lock.run(() => {
        const [merged, weight] = this.average(mine.weights, mine.weight, reply.weights, reply.weight);
        this.model.assign(merged, weight);
      });
      return Outcome.MERGED;
    } finally {
      this.busy = false;
      this._partner = null;
    }
  }

  _answersCrossing(peerId) {
    return peerId != null && this.peerId != null && peerId === this._partner && this._crossedWith === null
      && peerId < this.peerId;
  }

  /** Answer a verified request from `peerId` with our pre-merge model, or null (decline) while busy. */
  async respond(update, peerId = null) {
    const crossing = this.busy && this._answersCrossing(peerId);
    if (this.busy && !crossing) {
      this.declinedRequests += 1;
      return null;
    }
    if (crossing) {
      this._crossedWith = peerId; // our own request's reply (a decline) must not be merged too
      this.crossed += 1;
    } else {
      this.busy = true;
    }
    let mine;
    try {
      mine = await this.model.lock.run(() => {
        const current = this.model.current();
        const [merged, weight] = this.average(current.weights, current.weight, update.weights, update.weight);
        this.model.assign(merged, weight);
        return current;
      });
    } finally {
      if (!crossing) this.busy = false;
    }
    this.served += 1;
    return mine;
  }
}
