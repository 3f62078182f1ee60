// Asynchronous push-pull gossip, transport-agnostic (mirrors peer/gossip.py).
// A peer that finished its local steps *initiates*: it first *proposes* (a small frame), and only
// once the neighbor *accepts* (and holds itself for us) does it send its weights; the neighbor
// responds with its pre-merge weights and both hold the pairwise average. A busy neighbor
// declines the proposal, so a decline costs two small frames, never a model transfer. Crossing
// proposals (A->B while B->A) are resolved by peer id: the smaller id's proposal is the exchange,
// the larger peer accepts it while its own attempt is in flight (which then ends CROSSED), and the
// smaller declines the larger one's (no decline-decline livelock for slow exchanges).
// The initiator may keep training while its exchange is in flight: its merge adds the averaging
// step computed against what it sent to the model it has now (_mergeInto). docs/PROTOCOL.md
// "The gossip exchange" is the contract.
import { pairAverage } from "./averaging.js";

export const Outcome = Object.freeze({
  MERGED: "merged", DECLINED: "declined", BUSY: "busy", TIMEOUT: "timeout", FAILED: "failed", CROSSED: "crossed",
});

export const DEFAULT_RATE_BYTES_S = 1e6; // a link's rate until measured (peer/gossip.py DEFAULT_RATE_BYTES_S)

/**
 * Milliseconds for each step of an exchange (accept, then response) and for a hold
 * (peer/gossip.py exchange_deadline): 2 x (2 x frameBytes / rate + 4 x rtt) seconds, within
 * [floorMs, ceilingMs]; an unknown rate is DEFAULT_RATE_BYTES_S, an unknown RTT 0.
 */
export function exchangeDeadlineMs(frameBytes, rateBytesPerS, rttS, { floorMs, ceilingMs = 600000 }) {
  const rate = rateBytesPerS > 0 ? rateBytesPerS : DEFAULT_RATE_BYTES_S;
  const expectedS = (2 * frameBytes) / rate + 4 * (rttS || 0);
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

/**
 * `work` (a promise, or a function of an AbortSignal returning one) within `ms`, else a
 * TimeoutError. A function's signal aborts on the timeout: what it awaits can clean up (the
 * transport forgets the pending exchange), as Python's cancellation does.
 */
export function withTimeout(work, ms, what = "operation") {
  const controller = new AbortController();
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => {
      reject(new TimeoutError(`${what} timed out after ${ms} ms`));
      controller.abort();
    }, ms);
  });
  let promise;
  try {
    promise = Promise.resolve(typeof work === "function" ? work(controller.signal) : work);
  } catch (err) {
    promise = Promise.reject(err);
  }
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/**
 * One peer's side of every exchange: initiates, answers proposals and requests, merges.
 * States: free; *initiating* with one partner; *holding* for one proposer it accepted (until that
 * proposer's request arrives or holdMs(peer) ms pass); *responding* (merging a request). Only a
 * free engine accepts a proposal or starts an exchange, except for the crossing rule.
 *
 * model: {lock: Lock, current(): {weights, weight, step}, assign(weights, weight)}
 * transport: {propose?(peerId, signal) -> Promise<bool>, request(peerId, update, signal) -> Promise<update|null>}
 *   (without propose, the request is the proposal)
 * average: (mine, myWeight, theirs, theirWeight) -> [weights, weight]
 * holdMs: ms an accepted proposal waits for its request, a number or (peerId) -> number
 */
export class GossipEngine {
  constructor(model, average = pairAverage, peerId = null, holdMs = 10000) {
    this.model = model;
    this.average = average;
    this.peerId = peerId; // ours: breaks crossing proposals (null: every busy proposal is declined)
    this.holdMs = holdMs;
    this.outcomes = Object.fromEntries(Object.values(Outcome).map((o) => [o, 0]));
    this.served = 0;
    this.declinedRequests = 0; // proposals and requests we declined
    this.crossed = 0; // crossing proposals (or requests) accepted as the larger id
    this.expiredHolds = 0; // accepted proposals whose request never came in time
    this._initiating = null; // the peer we are initiating with
    this._crossedWith = null;
    this._heldFor = null; // the proposer we accepted and wait for
    this._holdTimer = null;
    this._responding = false; // merging a request: an initiate() racing it would overwrite it
    this.interleaved = 0; // our merges that landed after we served another neighbor meanwhile
    this._merges = 0; // merges into our model so far: tells _mergeInto whether another exchange landed meanwhile
  }

  get busy() {
    return this._initiating !== null || this._heldFor !== null || this._responding;
  }

  _holdMsFor(peerId) {
    return typeof this.holdMs === "function" ? this.holdMs(peerId) : this.holdMs;
  }

  /** One exchange: propose, and once accepted send our weights and merge the reply; timeoutMs bounds each wait. */
  async initiate(peerId, transport, timeoutMs) {
    const outcome = await this._initiate(peerId, transport, timeoutMs);
    this.outcomes[outcome] += 1;
    return outcome;
  }

  async _initiate(peerId, transport, timeoutMs) {
    if (this.busy) return Outcome.BUSY;
    this._initiating = peerId;
    this._crossedWith = null;
    try {
      if (typeof transport.propose === "function") { // a transport without it: the request is the proposal
        let accepted;
        try {
          accepted = await withTimeout((signal) => transport.propose(peerId, signal), timeoutMs, "proposal");
        } catch (err) {
          if (this._crossedWith === peerId) return Outcome.CROSSED;
          return err instanceof TimeoutError ? Outcome.TIMEOUT : Outcome.FAILED;
        }
        if (this._crossedWith === peerId) return Outcome.CROSSED; // we hold for the partner's proposal instead
        if (!accepted) return Outcome.DECLINED;
      }
      const [sent, mergesAtSend] = await this.model.lock.run(() => [this.model.current(), this._merges]);
      let reply;
      try {
        reply = await withTimeout((signal) => transport.request(peerId, sent, signal), timeoutMs, "exchange");
      } catch (err) {
        if (this._crossedWith === peerId) return Outcome.CROSSED;
        return err instanceof TimeoutError ? Outcome.TIMEOUT : Outcome.FAILED;
      }
      if (this._crossedWith === peerId) return Outcome.CROSSED; // merged as its responder already
      if (reply === null) return Outcome.DECLINED;
      await this.model.lock.run(() => this._mergeInto(sent, reply, mergesAtSend));
      return Outcome.MERGED;
    } finally {
      this._initiating = null;
    }
  }

  /**
   * Merge `reply` into our model; call under model.lock (peer/gossip.py _merge_into). Nothing
   * happened meanwhile: the average as computed. We trained since (step moved): the averaging
   * step is added to the model we have now, w <- w_now + (average(sent, reply) - sent). We also
   * served another neighbor meanwhile (mergesAtSend is behind): the step is taken on the gossip
   * sums s = n·w and n (linear, so the swarm's weighted mean is kept exactly, as push-sum).
   */
  _mergeInto(sent, reply, mergesAtSend = null) {
    let [merged, weight] = this.average(sent.weights, sent.weight, reply.weights, reply.weight);
    const now = this.model.current();
    const servedMeanwhile = mergesAtSend !== null && this._merges !== mergesAtSend;
    this._merges += 1;
    const combine = (f) => now.weights.map((n, i) => {
      const m = merged[i];
      const s = sent.weights[i];
      if (n.length !== m.length || s.length !== m.length) throw new Error("layouts differ");
      const out = new Float32Array(n.length);
      for (let j = 0; j < n.length; j++) out[j] = f(n[j], m[j], s[j]);
      return out;
    });
    if (servedMeanwhile) {
      this.interleaved += 1;
      const total = now.weight + (weight - sent.weight);
      merged = combine((n, m, s) => (now.weight * n + weight * m - sent.weight * s) / total);
      weight = total;
    } else if (now.step !== sent.step) {
      merged = combine((n, m, s) => n + (m - s));
    }
    this.model.assign(merged, weight);
  }

  /** A proposal (or request) from the peer we initiate with, whose smaller id makes it the exchange. */
  _answersCrossing(peerId) {
    return peerId != null && this.peerId != null && peerId === this._initiating && this._crossedWith === null
      && peerId < this.peerId;
  }

  /** Answer a verified proposal from `peerId`: true to accept (we then hold for it), false to decline. */
  onPropose(peerId) {
    if (this._heldFor === peerId) {
      this._hold(peerId); // it proposes again (its request was lost): the same hold, re-armed
      return true;
    }
    if (this._heldFor !== null || this._responding) {
      this.declinedRequests += 1;
      return false;
    }
    if (this._initiating === peerId) { // crossing proposals: the smaller id's is the exchange
      if (!this._answersCrossing(peerId)) {
        this.declinedRequests += 1;
        return false;
      }
      this._crossedWith = peerId; // our own proposal's answer (a decline) ends our attempt
      this.crossed += 1;
    }
    // initiating with someone else does not make us busy for a proposer: its exchange is served
    // while ours is in flight, and our merge keeps it (_mergeInto), as peer/gossip.py on_propose
    this._hold(peerId);
    return true;
  }

  _hold(peerId) {
    clearTimeout(this._holdTimer);
    this._heldFor = peerId;
    this._holdTimer = setTimeout(() => this._expireHold(peerId), this._holdMsFor(peerId));
  }

  _expireHold(peerId) {
    if (this._heldFor !== peerId) return;
    console.debug(`${peerId.slice(0, 8)} accepted but sent no request in time: free again`);
    this.expiredHolds += 1;
    this._releaseHold();
  }

  _releaseHold() {
    clearTimeout(this._holdTimer);
    this._heldFor = null;
    this._holdTimer = null;
  }

  /**
   * Answer a verified request from `peerId` with our pre-merge model, or null (decline). Served:
   * the request of the proposer we hold for; or, from a peer that did not propose (an older peer,
   * a transport without proposals), any request while we are free, and a crossing request by the
   * peer-id rule.
   */
  async respond(update, peerId = null) {
    const held = peerId != null && this._heldFor === peerId;
    const crossing = !held && this.busy && !this._responding && this._heldFor === null && this._answersCrossing(peerId);
    if (this.busy && !held && !crossing) {
      this.declinedRequests += 1;
      return null;
    }
    if (held) this._releaseHold();
    if (crossing) {
      this._crossedWith = peerId; // our own request's reply (a decline) must not be merged too
      this.crossed += 1;
    }
    this._responding = true;
    let mine;
    try {
      mine = await this.model.lock.run(() => {
        const current = this.model.current();
        const [merged, weight] = this.average(current.weights, current.weight, update.weights, update.weight);
        this.model.assign(merged, weight);
        this._merges += 1;
        return current;
      });
    } finally {
      this._responding = false;
    }
    this.served += 1;
    return mine;
  }
}
