// Gossip over the WebRTC mesh: proposals and updates become signed frames and back (mirrors
// peer/transport.py). Every incoming frame passes the FrameVerifier first; proposals and requests
// are answered by the engine (onPropose, respond); accepts, declines and responses resolve the
// pending exchange with the same exchange id from the same peer. An accepted proposal's exchange
// id is reused by the request that follows it (docs/PROTOCOL.md "The gossip exchange").
// An exchange the engine gave up on (its AbortSignal fired: a timeout) is forgotten at once; its
// one late reply is counted `unexpected` but is no strike, a second one is.
// Every kind of abuse is a strike against the sending neighbor: rejected frames, weight-carrying
// replies nobody asked for, and what a link refused before there was a frame (link.refusals,
// collected by collectAbuse on every chunk error). A model far from ours is no strike: honest
// neighbors drift far apart, and the clipped average already bounds a poisoned model.
import { distance } from "./averaging.js";
import { exchangeDeadlineMs } from "./gossip.js";
import { CODEC, decode, encode } from "./protocol/codecs.js";
import { FRAME_KIND, buildFrame } from "./protocol/frame.js";
import { FrameRejected } from "./verifier.js";
import { TokenBucket } from "./ratelimit.js";

const MAX_PENDING = 64;
const MAX_RESIDUALS = 256;
const LATE_REPLIES = 64; // per neighbor: exchanges that ended unanswered, whose one late reply is no strike
// the same limits as peer/transport.py
const FRAME_RATE = 20; // frames per second per neighbor, sustained
const FRAME_BURST = 40;
const STRIKES_TO_BAN = 10;
const STRIKE_WINDOW_MS = 60000;
const PULL_INTERVAL_MS = 10000;
const NOT_STRIKES = new Set(["unexpected", "rate_limited"]);

function randomU64() {
  const b = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(b[0]) << 32n) | BigInt(b[1]);
}

export class MeshTransport {
  constructor(identity, {
    swarmId, modelId, verifier, engine, metrics, links, codec = CODEC.FLOAT32, shapes, frameBytes = 0, exchangeTimeoutS = 10,
  }) {
    Object.assign(this, { identity, swarmId, modelId, verifier, engine, metrics, links, codec, shapes, frameBytes, exchangeTimeoutS });
    this.session = randomU64(); // new per page load: receivers key replay state by it
    this._seq = 0n;
    this._exchange = 0n;
    this._pending = new Map(); // `${peerId}/${exchangeId}` -> resolve
    this._accepted = new Map(); // neighbor -> exchange id of its accept (our request reuses it)
    this._late = new Map(); // neighbor -> exchange ids that ended unanswered
    this._residual = new Map();
    this.lastDistance = null;
    this._buckets = new Map();
    this._strikes = new Map();
    this._pullsServed = new Map();
    this._banned = new Map(); // peer id -> when we banned it: strikes stop counting meanwhile
    this._refusalsSeen = new WeakMap(); // link -> its refusals already struck
    this.onMisbehaving = () => {}; // the mesh bans
  }

  _count(reason) {
    this.metrics.rejected[reason] = (this.metrics.rejected[reason] || 0) + 1;
  }

  /** One piece of misbehaviour; too many within the window and the peer is banned. */
  strike(peerId, why) {
    const now = performance.now();
    if (now - (this._banned.get(peerId) ?? -Infinity) < STRIKE_WINDOW_MS) return; // its closing link's tail
    const strikes = (this._strikes.get(peerId) || []).filter((t) => now - t <= STRIKE_WINDOW_MS);
    strikes.push(now);
    this._strikes.set(peerId, strikes);
    if (strikes.length >= STRIKES_TO_BAN) {
      this._strikes.delete(peerId);
      this.metrics.bans = (this.metrics.bans || 0) + 1;
      this._banned.set(peerId, now);
      while (this._banned.size > MAX_RESIDUALS) this._banned.delete(this._banned.keys().next().value);
      this.onMisbehaving(peerId, why);
    }
  }

  /** Strike every message a link refused before there was a frame (the mesh passes on only the reason). */
  collectAbuse() {
    for (const link of [...this.links().values()]) {
      const fresh = link.refusals - (this._refusalsSeen.get(link) ?? 0);
      if (fresh > 0) {
        this._refusalsSeen.set(link, link.refusals);
        for (let i = 0; i < fresh; i++) this.strike(link.peerId, link.lastRefusal || "bad_chunk");
      }
    }
  }

  /**
   * Milliseconds for each step of an exchange with `peerId` (gossip.js exchangeDeadlineMs): from
   * the model's frame size and the link's measured send rate and RTT, floored at the swarm's
   * exchange_timeout_s (peer/transport.py deadline, which gives seconds).
   */
  deadline(peerId) {
    const link = this.links().get(peerId);
    const rate = link ? link.rateBytesPerS : null;
    const rttMs = link && link.iceInfo ? link.iceInfo.rtt_ms : null;
    return exchangeDeadlineMs(this.frameBytes, rate, Number.isFinite(rttMs) ? rttMs / 1000 : null,
      { floorMs: this.exchangeTimeoutS * 1000 });
  }

  /** Ask a neighbor for its current model (a joining peer starts from the swarm's state). */
  async pull(peerId, signal = null) {
    const reply = await this._ask(peerId, FRAME_KIND.PULL_REQUEST, null, ++this._exchange, signal);
    return reply && reply !== true ? reply : null;
  }

  /** Lossy codecs: send w + r and keep r <- (w + r) - decode(encode(w + r)) per neighbor. */
  _withErrorFeedback(peerId, weights, codec) {
    if (codec === CODEC.FLOAT32) return weights;
    const residual = this._residual.get(peerId);
    const target = residual ? weights.map((w, i) => w.map((v, j) => v + residual[i][j])) : weights;
    const sent = decode(codec, encode(codec, target), this.shapes);
    this._residual.delete(peerId);
    this._residual.set(peerId, target.map((t, i) => t.map((v, j) => v - sent[i][j])));
    while (this._residual.size > MAX_RESIDUALS) this._residual.delete(this._residual.keys().next().value);
    return target;
  }

  async send(link, kind, exchangeId, update, codec = this.codec) {
    try {
      const tensors = update ? this._withErrorFeedback(link.peerId, update.weights, codec) : [];
      await link.send(() => buildFrame(this.identity, {
        kind, swarmId: this.swarmId, modelId: this.modelId, receiver: link.remoteKey,
        session: this.session, seq: ++this._seq, exchangeId, sampleWeight: update ? update.weight : 0,
        step: BigInt(update ? update.step : 0), tensors, shapes: update ? this.shapes : [], codec,
      }));
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      console.error(`not sending to ${link.peerId.slice(0, 8)}: ${err.message}`); // a codec refused our own weights
      throw new Error(`our weights cannot be sent: ${err.message}`);
    }
    this.metrics.framesSent += 1;
  }

  // ---- gossip transport ------------------------------------------------------------------
  /** Propose an exchange; true once `peerId` accepted (our next request reuses its exchange id). */
  async propose(peerId, signal = null) {
    this._accepted.delete(peerId);
    const exchangeId = ++this._exchange;
    const accepted = await this._ask(peerId, FRAME_KIND.EXCHANGE_PROPOSE, null, exchangeId, signal);
    if (accepted !== true) return false;
    this._accepted.set(peerId, exchangeId);
    while (this._accepted.size > MAX_RESIDUALS) this._accepted.delete(this._accepted.keys().next().value);
    return true;
  }

  async request(peerId, update, signal = null) {
    const exchangeId = this._accepted.get(peerId) ?? ++this._exchange;
    this._accepted.delete(peerId);
    const reply = await this._ask(peerId, FRAME_KIND.EXCHANGE_REQUEST, update, exchangeId, signal);
    if (!reply || reply === true) return null;
    this.lastDistance = distance(update.weights, reply.weights);
    return reply;
  }

  /**
   * Send a request frame and wait for the reply with its exchange id: the reply's update
   * (RESPONSE, PULL_RESPONSE), true (ACCEPT) or null (DECLINE). `signal` aborting (the engine's
   * timeout) ends the wait: the exchange is no longer pending, and one late reply is no strike.
   */
  async _ask(peerId, kind, update, exchangeId, signal = null) {
    const link = this.links().get(peerId);
    if (!link) throw new Error(`no link to ${peerId.slice(0, 8)}`);
    if (this._pending.size >= MAX_PENDING) throw new Error("too many exchanges in flight");
    if (signal && signal.aborted) throw new Error("exchange abandoned");
    const key = `${peerId}/${exchangeId}`;
    let answered = false;
    let onAbort = null;
    const reply = new Promise((resolve, reject) => {
      this._pending.set(key, (value) => { answered = true; resolve(value); });
      if (signal) {
        onAbort = () => reject(new Error("exchange abandoned"));
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
    reply.catch(() => {}); // an abort while the frame is still being sent is no unhandled rejection
    try {
      await this.send(link, kind, exchangeId, update);
      return await reply;
    } finally {
      if (onAbort) signal.removeEventListener("abort", onAbort);
      if (this._pending.get(key)) this._pending.delete(key);
      if (!answered) this._rememberLate(peerId, exchangeId);
    }
  }

  _rememberLate(peerId, exchangeId) {
    const late = this._late.get(peerId) || [];
    late.push(exchangeId);
    if (late.length > LATE_REPLIES) late.shift();
    this._late.delete(peerId);
    this._late.set(peerId, late);
    while (this._late.size > MAX_RESIDUALS) this._late.delete(this._late.keys().next().value);
  }

  /** Whether `exchangeId` is an exchange with `peerId` that ended unanswered (forgotten once answered). */
  _wasLate(peerId, exchangeId) {
    const late = this._late.get(peerId);
    const at = late ? late.indexOf(exchangeId) : -1;
    if (at < 0) return false;
    late.splice(at, 1);
    return true;
  }

  // ---- incoming -------------------------------------------------------------------------
  async onFrame(link, data) {
    let bucket = this._buckets.get(link.peerId);
    if (!bucket) this._buckets.set(link.peerId, (bucket = new TokenBucket(FRAME_RATE, FRAME_BURST)));
    if (!bucket.take()) {
      this._count("rate_limited"); // dropped before any parsing or crypto
      return;
    }
    let frame, tensors;
    try {
      ({ frame, tensors } = await this.verifier.admit(data, link.remoteKey));
    } catch (err) {
      const reason = err instanceof FrameRejected ? err.reason : "malformed";
      this._count(reason);
      if (!NOT_STRIKES.has(reason)) this.strike(link.peerId, reason);
      return;
    }
    const h = frame.header;
    this.metrics.framesAccepted += 1;
    this.metrics.acceptedFrom[link.peerId] = (this.metrics.acceptedFrom[link.peerId] || 0) + 1;
    const update = tensors.length ? { weights: tensors, weight: h.sampleWeight, step: Number(h.step) } : null;
    if (h.kind === FRAME_KIND.EXCHANGE_REQUEST && update) {
      const reply = await this.engine.respond(update, link.peerId);
      const kind = reply ? FRAME_KIND.EXCHANGE_RESPONSE : FRAME_KIND.EXCHANGE_DECLINE;
      try { // the reply uses the request's codec: codecs are negotiated per exchange
        await this.send(link, kind, h.exchangeId, reply, h.codec);
      } catch (err) {
        console.debug("could not answer", link.peerId.slice(0, 8), err);
      }
    } else if (h.kind === FRAME_KIND.EXCHANGE_PROPOSE) {
      const accept = typeof this.engine.onPropose === "function" && this.engine.onPropose(link.peerId);
      const kind = accept ? FRAME_KIND.EXCHANGE_ACCEPT : FRAME_KIND.EXCHANGE_DECLINE;
      try {
        await this.send(link, kind, h.exchangeId, null);
      } catch (err) {
        console.debug("could not answer a proposal of", link.peerId.slice(0, 8), err);
      }
    } else if ([FRAME_KIND.EXCHANGE_RESPONSE, FRAME_KIND.EXCHANGE_DECLINE, FRAME_KIND.PULL_RESPONSE,
      FRAME_KIND.EXCHANGE_ACCEPT].includes(h.kind)) {
      const key = `${link.peerId}/${h.exchangeId}`;
      const resolve = this._pending.get(key);
      if (!resolve) {
        // a reply nobody asked for, or a second one: with weights, a verify and a decode for
        // nothing (the one late reply to an exchange that ended unanswered is no strike)
        this.metrics.rejected.unexpected = (this.metrics.rejected.unexpected || 0) + 1;
        if (update && !this._wasLate(link.peerId, h.exchangeId)) this.strike(link.peerId, "unexpected");
      } else {
        this._pending.delete(key);
        if (h.kind === FRAME_KIND.EXCHANGE_ACCEPT) resolve(true);
        else resolve(h.kind === FRAME_KIND.EXCHANGE_DECLINE ? null : update);
      }
    } else if (h.kind === FRAME_KIND.PULL_REQUEST) {
      const now = performance.now();
      if (now - (this._pullsServed.get(link.peerId) ?? -PULL_INTERVAL_MS) < PULL_INTERVAL_MS) {
        this._count("rate_limited"); // a whole model per tiny request: bound it
        return;
      }
      this._pullsServed.set(link.peerId, now);
      const mine = await this.engine.model.lock.run(() => this.engine.model.current());
      await this.send(link, FRAME_KIND.PULL_RESPONSE, h.exchangeId, mine).catch(() => {});
    }
  }
}
