// Gossip over the WebRTC mesh: updates become signed frames and back (mirrors peer/transport.py).
// Every incoming frame passes the FrameVerifier first; requests are answered by the engine,
// responses resolve the pending exchange with the same exchange id from the same peer.
import { distance } from "./averaging.js";
import { CODEC, decode, encode } from "./protocol/codecs.js";
import { FRAME_KIND, buildFrame } from "./protocol/frame.js";
import { FrameRejected } from "./verifier.js";

const MAX_PENDING = 64;
const MAX_RESIDUALS = 256;

function randomU64() {
  const b = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(b[0]) << 32n) | BigInt(b[1]);
}

export class MeshTransport {
  constructor(identity, { swarmId, modelId, verifier, engine, metrics, links, codec = CODEC.FLOAT32, shapes }) {
    Object.assign(this, { identity, swarmId, modelId, verifier, engine, metrics, links, codec, shapes });
    this.session = randomU64(); // new per page load: receivers key replay state by it
    this._seq = 0n;
    this._exchange = 0n;
    this._pending = new Map(); // `${peerId}/${exchangeId}` -> resolve
    this._residual = new Map();
    this.lastDistance = null;
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
    const tensors = update ? this._withErrorFeedback(link.peerId, update.weights, codec) : [];
    await link.send(() => buildFrame(this.identity, {
      kind, swarmId: this.swarmId, modelId: this.modelId, receiver: link.remoteKey,
      session: this.session, seq: ++this._seq, exchangeId, sampleWeight: update ? update.weight : 0,
      step: BigInt(update ? update.step : 0), tensors, shapes: update ? this.shapes : [], codec,
    }));
    this.metrics.framesSent += 1;
  }

  // ---- gossip transport ------------------------------------------------------------------
  async request(peerId, update) {
    const link = this.links().get(peerId);
    if (!link) throw new Error(`no link to ${peerId.slice(0, 8)}`);
    if (this._pending.size >= MAX_PENDING) throw new Error("too many exchanges in flight");
    const exchangeId = ++this._exchange;
    const key = `${peerId}/${exchangeId}`;
    const reply = new Promise((resolve) => this._pending.set(key, resolve));
    try {
      await this.send(link, FRAME_KIND.EXCHANGE_REQUEST, exchangeId, update);
      const result = await reply;
      if (result !== null) this.lastDistance = distance(update.weights, result.weights);
      return result;
    } finally {
      this._pending.delete(key);
    }
  }

  // ---- incoming -------------------------------------------------------------------------
  async onFrame(link, data) {
    let frame, tensors;
    try {
      ({ frame, tensors } = await this.verifier.admit(data, link.remoteKey));
    } catch (err) {
      const reason = err instanceof FrameRejected ? err.reason : "malformed";
      this.metrics.rejected[reason] = (this.metrics.rejected[reason] || 0) + 1;
      return;
    }
    const h = frame.header;
    this.metrics.framesAccepted += 1;
    this.metrics.acceptedFrom[link.peerId] = (this.metrics.acceptedFrom[link.peerId] || 0) + 1;
    const update = tensors.length ? { weights: tensors, weight: h.sampleWeight, step: Number(h.step) } : null;
    if (h.kind === FRAME_KIND.EXCHANGE_REQUEST && update) {
      const reply = await this.engine.respond(update);
      const kind = reply ? FRAME_KIND.EXCHANGE_RESPONSE : FRAME_KIND.EXCHANGE_DECLINE;
      try { // the reply uses the request's codec: codecs are negotiated per exchange
        await this.send(link, kind, h.exchangeId, reply, h.codec);
      } catch (err) {
        console.debug("could not answer", link.peerId.slice(0, 8), err);
      }
    } else if (h.kind === FRAME_KIND.EXCHANGE_RESPONSE || h.kind === FRAME_KIND.EXCHANGE_DECLINE) {
      const resolve = this._pending.get(`${link.peerId}/${h.exchangeId}`);
      if (!resolve) {
        this.metrics.rejected.unexpected = (this.metrics.rejected.unexpected || 0) + 1;
      } else {
        this._pending.delete(`${link.peerId}/${h.exchangeId}`);
        resolve(h.kind === FRAME_KIND.EXCHANGE_RESPONSE ? update : null);
      }
    } else if (h.kind === FRAME_KIND.PULL_REQUEST) {
      const mine = await this.engine.model.lock.run(() => this.engine.model.current());
      await this.send(link, FRAME_KIND.PULL_RESPONSE, h.exchangeId, mine).catch(() => {});
    }
  }
}
