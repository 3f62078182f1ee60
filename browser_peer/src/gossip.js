// Asynchronous push-pull gossip, transport-agnostic (mirrors peer/gossip.py).
// A peer already in an exchange declines requests, so two peers asking each other at
// once both get a decline and retry elsewhere instead of deadlocking.
import { pairAverage } from "./averaging.js";

export const Outcome = Object.freeze({
  MERGED: "merged", DECLINED: "declined", BUSY: "busy", TIMEOUT: "timeout", FAILED: "failed",
});

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
  constructor(model, average = pairAverage) {
    this.model = model;
    this.average = average;
    this.busy = false;
    this.outcomes = Object.fromEntries(Object.values(Outcome).map((o) => [o, 0]));
    this.served = 0;
    this.declinedRequests = 0;
  }

  async initiate(peerId, transport, timeoutMs) {
    const outcome = await this._initiate(peerId, transport, timeoutMs);
    this.outcomes[outcome] += 1;
    return outcome;
  }

  async _initiate(peerId, transport, timeoutMs) {
    if (this.busy) return Outcome.BUSY;
    this.busy = true;
    try {
      const mine = await this.model.lock.run(() => this.model.current());
      let reply;
      try {
        reply = await withTimeout(transport.request(peerId, mine), timeoutMs, "exchange");
      } catch (err) {
        return err instanceof TimeoutError ? Outcome.TIMEOUT : Outcome.FAILED;
      }
      if (reply === null) return Outcome.DECLINED;
      await this.model.lock.run(() => {
        const [merged, weight] = this.average(mine.weights, mine.weight, reply.weights, reply.weight);
        this.model.assign(merged, weight);
      });
      return Outcome.MERGED;
    } finally {
      this.busy = false;
    }
  }

  /** Answer a verified request with our pre-merge model, or null (decline) while busy. */
  async respond(update) {
    if (this.busy) {
      this.declinedRequests += 1;
      return null;
    }
    this.busy = true;
    let mine;
    try {
      mine = await this.model.lock.run(() => {
        const current = this.model.current();
        const [merged, weight] = this.average(current.weights, current.weight, update.weights, update.weight);
        this.model.assign(merged, weight);
        return current;
      });
    } finally {
      this.busy = false;
    }
    this.served += 1;
    return mine;
  }
}
