// One neighbor: an RTCPeerConnection with one reliable, ordered data channel (mirrors peer/link.py).
// Frames travel as <= 256 KiB chunks; the sender waits for `bufferedamountlow` whenever more
// than HIGH_WATER bytes are queued, because Chromium throws past 16 MiB buffered.
// While open, the link reads its selected ICE candidate pair and RTT from getStats() every
// ICE_INFO_INTERVAL_MS (`iceInfo`, the keys of peer/link.py ice_info()). Large sends measure the
// link's send rate (`rateBytesPerS`, an exponential moving average; the exchange deadline uses it).
// What arrives is refused and reported (onChunkError; `refusals` counts them, and the transport
// makes each a strike against the sender): a text message, a message above 256 KiB, a chunk that
// breaks the reassembly rules; the rest of a refused transfer is dropped unseen, so one bad frame
// is one strike. A transfer in flight that gets nothing more for STALL_TIMEOUT_MS drops the link.
// (Chromium itself delivers messages of a few MiB whole, refused here as one strike, and aborts
// the association for larger ones; peer/link.py watches aiortc's reassembly instead.)
import { hexToBytes } from "./protocol/bytes.js";
import { CHUNK_HEADER_SIZE, MAX_MESSAGE_SIZE, Reassembler, splitFrame } from "./protocol/chunking.js";

export const HIGH_WATER = 4 * 1024 * 1024;
export const LOW_WATER = 1 * 1024 * 1024;
export const STALL_TIMEOUT_MS = 10000; // the same as peer/link.py STALL_TIMEOUT_S
const WATCH_INTERVAL_MS = 1000;
const REFUSED_TRANSFERS = 16; // refused transfers remembered, so the rest of their chunks is no new strike
const SEND_TIMEOUT_MS = 30000;
const SEND_TIMEOUT_CEILING_MS = 600000;
export const RATE_SAMPLE_MIN = HIGH_WATER; // this many bytes drained from the buffer during one send measure the rate
export const RATE_SMOOTHING = 0.5; // weight of the newest rate sample (peer/link.py RATE_SMOOTHING)
const DEFAULT_RATE_BYTES_S = 1e6; // gossip.js DEFAULT_RATE_BYTES_S: until a large send measured the link
export const ICE_INFO_INTERVAL_MS = 3000; // the pair can change (ICE restarts, consent failures) and RTT drifts

// the pair's kind is its least direct side: a relayed pair is "relay" whichever end relays
const PAIR_ORDER = ["relay", "srflx", "prflx", "host"];

/** Kind of a selected candidate pair (host, srflx, prflx, relay) from its two candidate types (peer/link.py pair_type). */
export function pairType(localType, remoteType) {
  return PAIR_ORDER.find((kind) => kind === localType || kind === remoteType) ?? null;
}

/** The selected pair of a getStats() report: the transport's choice, else the nominated pair that succeeded. */
function selectedPair(report) {
  const stats = [...report.values()];
  const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
  if (transport && report.has(transport.selectedCandidatePairId)) return report.get(transport.selectedCandidatePairId);
  return stats.find((s) => s.type === "candidate-pair" && s.nominated && s.state === "succeeded") ?? null;
}

export const emptyIceInfo = () => ({ local_type: null, remote_type: null, pair: null, remote_address: null, rtt_ms: null });

/**
 * The selected pair's candidate types, the remote address and the RTT in ms (float, or null
 * before the first STUN response) from an RTCStatsReport; every key null until ICE selects a pair.
 */
export function iceInfoFrom(report) {
  const info = emptyIceInfo();
  const pair = selectedPair(report);
  if (!pair) return info;
  const local = report.get(pair.localCandidateId);
  const remote = report.get(pair.remoteCandidateId);
  info.local_type = local?.candidateType ?? null;
  info.remote_type = remote?.candidateType ?? null;
  info.pair = pairType(info.local_type, info.remote_type);
  const address = remote?.address ?? remote?.ip; // `ip` in older Chromium
  if (address) info.remote_address = `${address}:${remote.port}`;
  if (Number.isFinite(pair.currentRoundTripTime)) info.rtt_ms = Math.round(pair.currentRoundTripTime * 1e5) / 100;
  return info;
}

export const LinkState = Object.freeze({ CONNECTING: "connecting", OPEN: "open", CLOSED: "closed" });

export class PeerLink {
  constructor(info, pc, { maxFrameSize, onFrame, onClosed, onChunkError }) {
    this.info = info;
    this.peerId = info.peer_id;
    this.remoteKey = hexToBytes(info.public_key);
    this.pc = pc;
    this.state = LinkState.CONNECTING;
    this.channel = null;
    this.reassembler = new Reassembler(maxFrameSize);
    this.bytesSent = 0;
    this.bytesReceived = 0;
    this.rateBytesPerS = null; // measured send rate (large sends only), bytes per second
    this.pendingCandidates = [];
    this.iceInfo = emptyIceInfo();
    this._transferId = 0;
    this._sendChain = Promise.resolve();
    this._lowWaiters = [];
    this._onFrame = onFrame;
    this._onClosed = onClosed;
    this._onChunkError = onChunkError;
    this.refusals = 0; // messages refused as abuse of this link (transport.collectAbuse strikes them)
    this.lastRefusal = null;
    this.closedReason = null;
    this.stallTimeoutMs = STALL_TIMEOUT_MS;
    this._refused = new Map(); // transfer id -> {count, total, left}
    this._lastMessageAt = performance.now();
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") this.close();
    });
  }

  attach(channel) {
    this.channel = channel;
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = LOW_WATER;
    channel.addEventListener("bufferedamountlow", () => this._wakeSenders());
    channel.addEventListener("message", (e) => this._onMessage(e.data));
    channel.addEventListener("close", () => this.close());
    if (channel.readyState === "open") this._setOpen();
    else channel.addEventListener("open", () => this._setOpen());
  }

  _setOpen() {
    if (this.state !== LinkState.CONNECTING) return;
    this.state = LinkState.OPEN;
    this.refreshIceInfo();
    this._iceTimer = setInterval(() => this.refreshIceInfo(), ICE_INFO_INTERVAL_MS);
    this._watchTimer = setInterval(() => this.checkStall(performance.now()), WATCH_INTERVAL_MS);
  }

  /** Drop the link when a transfer is in flight and nothing arrived for stallTimeoutMs. */
  checkStall(now) {
    if (this.state !== LinkState.OPEN || this.reassembler.buffered === 0) return;
    if (now - this._lastMessageAt > this.stallTimeoutMs) {
      console.info(`dropping ${this.peerId.slice(0, 8)}: a transfer in flight made no progress for ${this.stallTimeoutMs / 1000} s`);
      this.close("stalled");
    }
  }

  /** Read the selected candidate pair and its RTT now (best effort: a closing connection keeps the last). */
  async refreshIceInfo() {
    try {
      this.iceInfo = iceInfoFrom(await this.pc.getStats());
    } catch (err) {
      console.debug(`no ICE stats for ${this.peerId.slice(0, 8)}`, err);
    }
    return this.iceInfo;
  }

  _wakeSenders() {
    const waiters = this._lowWaiters;
    this._lowWaiters = [];
    waiters.forEach((w) => w());
  }

  /** Count what the neighbor sent as abuse under `reason`, then report it (a strike, in the transport). */
  _refuse(reason) {
    this.refusals += 1;
    this.lastRefusal = reason;
    this._onChunkError(this, reason);
  }

  _onMessage(data) {
    if (this.state === LinkState.CLOSED) return; // the tail of a link we dropped costs nothing more
    this._lastMessageAt = performance.now();
    if (typeof data === "string") {
      this._refuse("malformed");
      return;
    }
    const message = new Uint8Array(data);
    this.bytesReceived += message.length;
    if (message.length > MAX_MESSAGE_SIZE) {
      this._refuse("oversize");
      return;
    }
    if (this._restOfRefused(message)) return;
    let frame;
    try {
      frame = this.reassembler.feed(message);
    } catch (err) {
      this._rememberRefused(message);
      this._refuse(err.reason || "malformed");
      return;
    }
    if (frame) {
      Promise.resolve(this._onFrame(this, frame)).catch((err) => console.warn("frame handler failed", err));
    }
  }

  /** [transfer id, index, count, total] of a chunk with a good magic, else null. */
  _fields(message) {
    if (message.length < CHUNK_HEADER_SIZE || message[0] !== 0x47 || message[1] !== 0x43) return null;
    const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
    return [2, 6, 10, 14].map((o) => view.getUint32(o));
  }

  _rememberRefused(message) {
    const fields = this._fields(message);
    if (!fields) return; // no transfer to speak of: every such message is its own strike
    const [tid, , count, total] = fields;
    // as many more chunks as a sender of full-size messages needs for `total` bytes, at most
    const left = Math.max(0, Math.min(count, Math.ceil(total / (MAX_MESSAGE_SIZE - CHUNK_HEADER_SIZE))) - 1);
    this._refused.delete(tid);
    this._refused.set(tid, { count, total, left });
    while (this._refused.size > REFUSED_TRANSFERS) this._refused.delete(this._refused.keys().next().value);
  }

  /** Whether `message` is a further chunk of a transfer already refused (dropped, no new strike). */
  _restOfRefused(message) {
    const fields = this._fields(message);
    const entry = fields && this._refused.get(fields[0]);
    if (!entry || entry.count !== fields[2] || entry.total !== fields[3] || entry.left === 0) return false;
    entry.left -= 1;
    return true;
  }

  /** Build a frame (async) under the link's send lock and send it in chunks with backpressure. */
  send(build) {
    const run = this._sendChain.then(() => this._send(build));
    this._sendChain = run.catch(() => {});
    return run;
  }

  async _send(build) {
    if (this.state !== LinkState.OPEN || !this.channel) throw new Error(`link to ${this.peerId.slice(0, 8)} is ${this.state}`);
    const data = await build();
    this._transferId = (this._transferId + 1) >>> 0;
    const size = Math.min(MAX_MESSAGE_SIZE, this.pc.sctp?.maxMessageSize || MAX_MESSAGE_SIZE);
    // a large model on a slow link takes longer than the default: allow 4x what the link's rate says
    const started = performance.now();
    const allowMs = Math.min(SEND_TIMEOUT_CEILING_MS,
      Math.max(SEND_TIMEOUT_MS, (4000 * data.length) / (this.rateBytesPerS || DEFAULT_RATE_BYTES_S)));
    const ceiling = started + SEND_TIMEOUT_CEILING_MS;
    let deadline = started + allowMs;
    for (const chunk of splitFrame(data, this._transferId, size)) {
      while (this.channel.bufferedAmount > HIGH_WATER && this.state === LinkState.OPEN) {
        if (performance.now() > deadline) throw new Error("send timed out: the neighbor does not drain");
        await new Promise((resolve) => {
          this._lowWaiters.push(resolve);
          setTimeout(resolve, 1000); // re-check even if the event never fires
        });
        // drained to low water: the link moves, so the allowance starts again (peer/link.py send);
        // a neighbor that stops reading still times out, and the ceiling bounds the whole send
        if (this.channel.bufferedAmount <= LOW_WATER) deadline = Math.min(performance.now() + allowMs, ceiling);
      }
      if (this.state !== LinkState.OPEN) throw new Error(`link to ${this.peerId.slice(0, 8)} closed while sending`);
      this.channel.send(chunk);
      this.bytesSent += chunk.length;
    }
    this.measureRate(data.length - this.channel.bufferedAmount, (performance.now() - started) / 1000);
  }

  /** Fold one large send (bytes that left the buffer, in seconds) into rateBytesPerS (peer/link.py _measure_rate). */
  measureRate(drained, seconds) {
    if (drained < RATE_SAMPLE_MIN || !(seconds > 0)) return; // small sends only fill the buffer: they say nothing
    const sample = drained / seconds;
    this.rateBytesPerS = this.rateBytesPerS === null ? sample : RATE_SMOOTHING * sample + (1 - RATE_SMOOTHING) * this.rateBytesPerS;
  }

  close(reason = "closed") {
    if (this.state === LinkState.CLOSED) return;
    this.state = LinkState.CLOSED;
    this.closedReason = this.closedReason ?? reason;
    clearInterval(this._iceTimer);
    clearInterval(this._watchTimer);
    this._wakeSenders();
    try { this.pc.close(); } catch { /* already closed */ }
    this._onClosed(this);
  }
}
