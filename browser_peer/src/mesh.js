// The WebRTC mesh: a signaling client plus one PeerLink per neighbor (mirrors peer/mesh.py).
// Same rules as the Python peer: random neighbors up to `degree` (with gossip.mixing "exponential",
// the exponential partners first: _toOffer), incoming offers accepted up
// to `maxDegree`, offer glare broken by peer id (the smaller id keeps its offer), failed links
// replaced, the signaling connection re-established with backoff while links stay up.
// No message another peer can relay ends the session: each one is handled on its own, and a
// failure is refused and counted by reason and sender; offers are answered only when we would
// link, and at most OFFER_RATE a second per sender, so a flood of offers is never amplified.
// The server is not trusted with identities: a peer id must hash to its announced key, and every
// offer and answer is signed over its SDP's DTLS fingerprints (protocol/crypto.js offerMessage,
// answerMessage) and verified against that key before the SDP is used. RTCPeerConnection itself
// refuses a DTLS certificate that does not match the SDP's fingerprint, which completes the binding.
import { bytesToHex, hexToBytes } from "./protocol/bytes.js";
import {
  LINK_NONCE_SIZE, answerMessage, joinMessage, offerMessage, peerIdOf, sign, verify,
} from "./protocol/crypto.js";
import { checkClientMessage, parseServerMessage, sdpFingerprints } from "./protocol/signaling.js";
import { LinkState, PeerLink } from "./link.js";
import { TokenBucket } from "./ratelimit.js";
import { exponentialNeighbors, partnersToLink } from "./skew.js";

const V = 1;
// the same limits as peer/mesh.py
export const OFFER_RATE = 0.2; // offers per second a remote peer may send us, sustained (one per 5 s)
export const OFFER_BURST = 3;
export const MAX_SIGNAL_SENDERS = 4096; // per-sender counters and offer buckets kept
const MAX_PENDING_CANDIDATES = 64; // per link, until its remote description is set
export const MAX_OFFER_NONCES = 4096; // nonces of verified offers remembered, so a replayed offer is refused
const RECONNECT_MIN_DELAY_MS = 500;

export const defaultMeshConfig = () => ({
  degree: 4, maxDegree: 8, iceServers: null, connectTimeoutMs: 20000, maintainIntervalMs: 1000,
  pingIntervalMs: 30000, reportIntervalMs: 10000, reconnectMaxDelayMs: 10000, retryAfterMs: 5000,
  onlyPeers: null, // a Set of the only peer ids to link with, both ways (FedAvg clients: the aggregator); null for any
  relayOnly: false, // gather TURN relay candidates only (iceTransportPolicy "relay"; peer/mesh.py relay_only)
  mixing: "random", // gossip.mixing: "exponential" links to the exponential partners first (skew.js)
});

/** Keep a Map to `max` entries by dropping the oldest insertions (a sender flood cannot grow it). */
function trimOldest(map, max) {
  while (map.size > max) map.delete(map.keys().next().value);
}

/**
 * Whether an SDP negotiates a data channel: an m=application section over (UDP/)DTLS/SCTP.
 * Checked before any RTCPeerConnection is made, so junk costs us a regular expression.
 */
export function hasDataChannel(sdp) {
  return typeof sdp === "string" && /^m=application [0-9]+ [A-Z/]*SCTP\b/m.test(sdp);
}

/** The welcome's ICE servers in RTCIceServer form (TURN credentials only when given). */
function iceServersFrom(listed) {
  return (Array.isArray(listed) ? listed : []).map((s) => {
    const out = { urls: s.urls };
    if (s.username) out.username = s.username;
    if (s.credential) out.credential = s.credential;
    return out;
  });
}

export class Mesh {
  constructor(identity, wsUrl, swarmId, config, { maxFrameSize, onFrame, onChunkError = () => {}, onEvent = () => {} }) {
    this.identity = identity;
    this.wsUrl = wsUrl;
    this.swarmId = swarmId;
    this.config = { ...defaultMeshConfig(), ...config }; // config.iceServers: the user's override, null for none
    this.maxFrameSize = maxFrameSize;
    this.onFrame = onFrame;
    this.onChunkError = onChunkError;
    this.onEvent = onEvent;
    this.known = new Map(); // peer id -> PeerInfo
    this.links = new Map(); // peer id -> PeerLink
    this.connected = false;
    this.ready = false;
    this.iceServers = this.config.iceServers ?? []; // what new links use: the override, else the last welcome's
    this.stats = {
      chunkRejects: {}, signalingErrors: [],
      // relayed messages refused, by reason (bad_sdp, bad_candidate, offer_rate, not_linking,
      // already_linked, unexpected_answer; link authentication: wrong_key, bad_link_auth,
      // replayed_offer) and by sender (oldest senders dropped past MAX_SIGNAL_SENDERS)
      signalRejects: {}, signalRejectsBySender: new Map(),
      sessions: 0, // signaling sessions opened (reconnects = sessions - 1)
    };
    this._ws = null;
    this._reconnectDelay = RECONNECT_MIN_DELAY_MS;
    this._retryAt = new Map();
    this._offerBuckets = new Map(); // sender -> TokenBucket
    this._offerNonces = new Map(); // hex nonces of verified offers (insertion order: oldest first)
    this._offerNonceOf = new WeakMap(); // link -> the nonce of the offer we sent on it (the answer signs it)
    this._warned = new Set(); // reasons already logged: a flood logs once, not per message
    this.banned = new Map(); // peer id -> until (performance.now())
    this._closing = false;
    this._dispatchChain = Promise.resolve();
    this._welcome = null;
    this.reportSource = null; // async () => {step, test_acc, receipts} for the contribution board
    this.closedBytes = { sent: 0, received: 0 }; // of links that are gone, so totals never drop
  }

  async start() {
    this.peerId = await peerIdOf(this.identity.publicKey);
    const welcome = new Promise((resolve, reject) => { this._welcome = { resolve, reject }; });
    this._connectSignaling();
    this._maintainTimer = setInterval(() => this._maintain(), this.config.maintainIntervalMs);
    return welcome;
  }

  acceptLinks() { this.ready = true; }

  /** Disconnect a misbehaving peer and refuse it, both ways, for a while. */
  ban(peerId, ms = 300000) {
    this.banned.set(peerId, performance.now() + ms);
    const link = this.links.get(peerId);
    if (link) link.close();
  }

  isBanned(peerId) {
    return (this.banned.get(peerId) || 0) > performance.now();
  }

  openLinks() { return [...this.links.values()].filter((l) => l.state === LinkState.OPEN); }

  /**
   * Every member of the swarm this peer knows, itself included (peer/mesh.py members): the welcome's
   * peers, those announced since, and open links the server forgot; sorted by peer id.
   */
  members() {
    return [...new Set([this.peerId, ...this.known.keys(), ...this.openLinks().map((l) => l.peerId)])].sort();
  }

  /** With mixing "exponential": our partners in the exponential graph over members(), linked to first; else none. */
  exponentialPartners() {
    return this.config.mixing === "exponential" ? exponentialNeighbors(this.peerId, this.members()) : [];
  }

  /**
   * Whom to offer a link to now, among unlinked `candidates` (peer/mesh.py _to_offer): the
   * exponential partners (with that mixing) while links stay within maxDegree, then random peers
   * up to degree.
   */
  _toOffer(candidates) {
    const byId = new Map(candidates.map((c) => [c.peer_id, c]));
    let first = [];
    if (this.config.mixing === "exponential") {
      const members = this.members();
      const skip = new Set(members.filter((p) => !byId.has(p))); // linked or connecting, banned, retried later
      first = partnersToLink(this.peerId, members, skip, this.config.maxDegree - this.links.size).map((p) => byId.get(p));
    }
    const rest = candidates.filter((c) => !first.includes(c));
    const picked = [];
    for (let missing = this.config.degree - this.links.size - first.length; missing > 0 && rest.length > 0; missing -= 1) {
      picked.push(rest.splice(Math.floor(Math.random() * rest.length), 1)[0]);
    }
    return [...first, ...picked];
  }

  /** Per open link: neighbor, its client, the selected ICE pair's candidate types and RTT (peer/mesh.py link_report). */
  linkReport() {
    return this.openLinks().map((l) => ({
      peer: l.peerId, client: l.info.client, ...l.iceInfo,
      rate_mb_s: l.rateBytesPerS ? Math.round(l.rateBytesPerS / 1e3) / 1e3 : null, // measured send rate (peer/mesh.py link_report)
    }));
  }

  close() {
    this._closing = true;
    clearInterval(this._maintainTimer);
    clearInterval(this._pingTimer);
    clearTimeout(this._reconnectTimer);
    if (this._ws) this._ws.close();
    for (const link of [...this.links.values()]) link.close();
  }

  // ---- signaling ---------------------------------------------------------------------
  _connectSignaling() {
    if (this._closing) return;
    let ws;
    try {
      ws = new WebSocket(this.wsUrl);
    } catch (err) {
      console.warn(`cannot open ${this.wsUrl}: ${err.message}; retrying`);
      this._reconnectLater();
      return;
    }
    this._ws = ws;
    ws.addEventListener("open", () => this._onOpen(ws));
    ws.addEventListener("message", (e) => {
      try {
        this._onMessage(ws, e.data);
      } catch (err) {
        this._endSession(ws, err); // a bug must not leave the peer offline for good: reconnect
      }
    });
    ws.addEventListener("error", () => this._endSession(ws, "WebSocket error"));
    ws.addEventListener("close", (e) => this._endSession(ws, `closed by the server (${e.code}${e.reason ? ` ${e.reason}` : ""})`));
  }

  _onOpen(ws) {
    if (this._ws !== ws) return;
    this.stats.sessions += 1;
    this._reconnectDelay = RECONNECT_MIN_DELAY_MS;
    // progress reports for the contribution board double as keep-alives; pings when there is none
    this._pingTimer = setInterval(() => this._keepAlive(), this.config.reportIntervalMs);
  }

  async _keepAlive() {
    const ws = this._ws;
    let report = null;
    try {
      report = this.connected && this.reportSource ? await this.reportSource() : null; // receipts are signed: async
    } catch (err) {
      console.error("could not build the board report; sending a ping", err);
    }
    if (this._ws !== ws) return; // the session ended while signing
    try {
      this._send(report ? { type: "report", ...report } : { type: "ping" });
    } catch { /* reconnecting */ }
  }

  /** Queue one message of session `ws`; messages are handled one at a time, in order. */
  _onMessage(ws, data) {
    if (this._ws !== ws) return; // the tail of a session already ended
    let msg;
    try {
      msg = parseServerMessage(data); // the contract's JSON Schema, as peer/mesh.py parses it
    } catch (err) {
      // whoever wrote it, the server relayed it; counted by reason (malformed, too_large) as Python does
      this._reject("server", err.reason ?? "malformed", err.message);
      return;
    }
    // _handle never throws: a rejection here is a bug of ours, which ends the session (and we reconnect)
    this._dispatchChain = this._dispatchChain.then(() => this._handle(msg)).catch((err) => this._endSession(ws, err));
  }

  /** Whatever ended the session (server close, network error, a bug): forget it and reconnect. */
  _endSession(ws, why) {
    if (this._ws !== ws) return; // already ended (an error is followed by a close)
    this._ws = null;
    clearInterval(this._pingTimer);
    const wasConnected = this.connected;
    this.connected = false;
    try { ws.close(); } catch { /* closed already */ }
    if (this._closing) return;
    if (why instanceof Error) console.error("signaling session failed unexpectedly; reconnecting", why);
    else console.warn(`signaling session ended: ${why}; reconnecting`);
    if (wasConnected) this.onEvent("signaling", { connected: false });
    this._reconnectLater();
  }

  /** Jittered exponential backoff: 0.5 s doubling to reconnectMaxDelayMs, reset once a session opens. */
  _reconnectLater() {
    const delay = this._reconnectDelay;
    this._reconnectDelay = Math.min(delay * 2, this.config.reconnectMaxDelayMs);
    this._reconnectTimer = setTimeout(() => this._connectSignaling(), delay * (0.5 + Math.random()));
  }

  _send(body) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) throw new Error("signaling server is not connected");
    const msg = { v: V, ...body };
    try {
      checkClientMessage(msg); // a message the server would refuse is a bug of ours: say so, never send it
    } catch (err) {
      console.error(err.message);
      throw err;
    }
    ws.send(JSON.stringify(msg));
  }

  /** One message, handled inside its own try: what it does wrong is refused and counted, never fatal. */
  async _handle(msg) {
    try {
      await this._dispatch(msg);
    } catch (err) {
      // the reason names a message type we know the shape of: reasons stay few, and safe to display
      const type = typeof msg?.type === "string" && /^[a-z_]{1,32}$/.test(msg.type) ? msg.type : "message";
      this._reject(msg?.from || "server", `bad_${type}`, `${err.name}: ${err.message}`);
    }
  }

  /** Count a refused message by reason and by sender; warn once per reason, not per message. */
  _reject(sender, reason, detail = "") {
    const { signalRejects, signalRejectsBySender } = this.stats;
    signalRejects[reason] = (signalRejects[reason] || 0) + 1;
    signalRejectsBySender.set(sender, (signalRejectsBySender.get(sender) || 0) + 1);
    trimOldest(signalRejectsBySender, MAX_SIGNAL_SENDERS);
    if (this._warned.has(reason)) return;
    this._warned.add(reason);
    console.warn(`refused a signaling message from ${String(sender).slice(0, 8)} (${reason}${detail ? `: ${detail}` : ""}); ` +
                 "further ones are only counted (mesh.stats.signalRejects)");
  }

  async _dispatch(msg) {
    switch (msg.type) {
      case "challenge": {
        const nonce = hexToBytes(msg.nonce);
        const signature = await sign(this.identity.privateKey, joinMessage(nonce, this.swarmId));
        this._send({ type: "join", swarm_id: this.swarmId, public_key: bytesToHex(this.identity.publicKey),
                     signature: bytesToHex(signature), client: "browser" });
        break;
      }
      case "welcome": {
        if (msg.peer_id !== this.peerId) this._reject("server", "wrong_peer_id", `welcomed as ${String(msg.peer_id).slice(0, 8)}`);
        const peers = Array.isArray(msg.peers) ? msg.peers.filter((p) => p?.peer_id !== this.peerId) : [];
        const admitted = await Promise.all(peers.map((p) => this._keyMatches(p)));
        this.known = new Map(peers.filter((_, i) => admitted[i]).map((p) => [p.peer_id, p]));
        // every welcome, not only the first: TURN credentials are per peer and expire, and a
        // reconnect brings fresh ones
        this.iceServers = this.config.iceServers ?? iceServersFrom(msg.ice_servers);
        this.connected = true;
        this.onEvent("signaling", { connected: true });
        if (this._welcome) { this._welcome.resolve(msg); this._welcome = null; }
        break;
      }
      case "peer_joined":
        if (msg.peer?.peer_id !== this.peerId && await this._keyMatches(msg.peer)) this.known.set(msg.peer.peer_id, msg.peer);
        break;
      case "peer_left": {
        this.known.delete(msg.peer_id);
        const link = this.links.get(msg.peer_id);
        if (link && link.state !== LinkState.OPEN) link.close(); // open links outlive the server's view
        break;
      }
      case "offer": await this._onOffer(msg); break;
      case "answer": await this._onAnswer(msg); break;
      case "candidate": await this._onCandidate(msg); break;
      case "error":
        this.stats.signalingErrors.push(msg.code);
        console.warn(`signaling error ${msg.code}: ${msg.message}`);
        if (this._welcome && ["bad_proof", "unknown_swarm", "swarm_full", "already_joined"].includes(msg.code)) {
          const err = new Error(`cannot join: ${msg.message}`);
          err.code = msg.code;
          this._welcome.reject(err);
          this._welcome = null;
        }
        break;
      default: break; // pong and anything newer
    }
  }

  /**
   * Whether a PeerInfo's peer id is the hash of its public key; a server that announces another
   * key for a peer id (to have us credit its frames to that peer) is refused and counted here.
   */
  async _keyMatches(info) {
    try {
      if (await peerIdOf(hexToBytes(info.public_key)) === info.peer_id) return true;
    } catch { /* not a key at all: refused below */ }
    this._reject(typeof info?.peer_id === "string" ? info.peer_id : "server", "wrong_key",
                 "its announced key does not hash to its id (a server rewriting keys?)");
    return false;
  }

  // ---- link authentication -----------------------------------------------------------
  async _linkAuth(message, nonce) {
    return { nonce: bytesToHex(nonce), signature: bytesToHex(await sign(this.identity.privateKey, message)) };
  }

  /**
   * The fingerprints of `sdp` if `info`'s key signed them (`message(fingerprints)` gives the
   * signed bytes); else null, refused and counted (bad_sdp, bad_link_auth).
   */
  async _verifiedFingerprints(sender, info, sdp, auth, message) {
    let fingerprints;
    try {
      fingerprints = sdpFingerprints(sdp);
    } catch (err) {
      this._reject(sender, "bad_sdp", err.message);
      return null;
    }
    if (!fingerprints.length) { this._reject(sender, "bad_sdp", "the SDP declares no DTLS fingerprint"); return null; }
    let ok = false;
    try {
      ok = await verify(hexToBytes(info.public_key), hexToBytes(auth.signature), message(fingerprints));
    } catch { /* a malformed auth field: refused below */ }
    if (!ok) {
      this._reject(sender, "bad_link_auth", "the signature does not cover this SDP's DTLS fingerprints (a server rewriting SDPs?)");
      return null;
    }
    return fingerprints;
  }

  /** Remember a verified offer's nonce; false if it was seen before (a replayed offer). */
  _freshOfferNonce(nonceHex) {
    if (this._offerNonces.has(nonceHex)) return false;
    this._offerNonces.set(nonceHex, true);
    trimOldest(this._offerNonces, MAX_OFFER_NONCES);
    return true;
  }

  // ---- connections -------------------------------------------------------------------
  _newLink(info) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, iceTransportPolicy: this.config.relayOnly ? "relay" : "all" });
    const link = new PeerLink(info, pc, {
      maxFrameSize: this.maxFrameSize,
      onFrame: this.onFrame,
      onClosed: (l) => this._onLinkClosed(l),
      onChunkError: (l, reason) => {
        this.stats.chunkRejects[reason] = (this.stats.chunkRejects[reason] || 0) + 1;
        this.onChunkError(reason);
      },
    });
    pc.addEventListener("icecandidate", (e) => {
      const c = e.candidate;
      try {
        if (c && c.candidate) {
          this._send({ type: "candidate", to: info.peer_id, candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex });
        } else if (!c) {
          this._send({ type: "candidate", to: info.peer_id, candidate: null, sdp_mid: null, sdp_mline_index: null });
        }
      } catch { /* signaling away: the link times out and is retried */ }
    });
    this.links.set(info.peer_id, link);
    setTimeout(() => { if (link.state === LinkState.CONNECTING) link.close(); }, this.config.connectTimeoutMs);
    this.onEvent("links", {});
    return link;
  }

  _onLinkClosed(link) {
    if (this.links.get(link.peerId) === link) this.links.delete(link.peerId);
    this.closedBytes.sent += link.bytesSent;
    this.closedBytes.received += link.bytesReceived;
    this._retryAt.set(link.peerId, performance.now() + this.config.retryAfterMs);
    this.onEvent("links", {});
  }

  async connectTo(info) {
    const link = this._newLink(info);
    link.attach(link.pc.createDataChannel("gossip", { ordered: true }));
    await link.pc.setLocalDescription(await link.pc.createOffer());
    const sdp = link.pc.localDescription.sdp;
    const nonce = crypto.getRandomValues(new Uint8Array(LINK_NONCE_SIZE));
    this._offerNonceOf.set(link, nonce);
    const auth = await this._linkAuth(offerMessage(this.swarmId, this.peerId, info.peer_id, nonce, sdpFingerprints(sdp)), nonce);
    this._send({ type: "offer", to: info.peer_id, sdp, auth });
    return link;
  }

  /** Whether an offer from `sender` may be answered at all (silence costs us nothing). */
  _wouldLink(sender) {
    return this.known.has(sender) && this.ready && !this.isBanned(sender) && this._mayLinkWith(sender);
  }

  /** Whether `peerId` is one we link with at all (config.onlyPeers; everyone when it is null). */
  _mayLinkWith(peerId) {
    return this.config.onlyPeers == null || this.config.onlyPeers.has(peerId);
  }

  _offerAllowed(sender) {
    let bucket = this._offerBuckets.get(sender);
    if (!bucket) {
      this._offerBuckets.set(sender, (bucket = new TokenBucket(OFFER_RATE, OFFER_BURST)));
      trimOldest(this._offerBuckets, MAX_SIGNAL_SENDERS);
    }
    return bucket.take();
  }

  async _onOffer(msg) {
    const sender = msg.from || "";
    // not ready for frames yet (the offerer times out and retries), banned, or not a swarm member
    if (!this._wouldLink(sender)) { this._reject(sender, "not_linking"); return; }
    if (!this._offerAllowed(sender)) { this._reject(sender, "offer_rate"); return; } // a flood gets no answers
    // before any link is touched: junk must not cost a connecting link (peer/mesh.py finds out later)
    if (!hasDataChannel(msg.sdp)) { this._reject(sender, "bad_sdp", "no data channel (application) section"); return; }
    // before any link is touched: a forged offer cannot cost us a connecting link
    const auth = msg.auth ?? {};
    let offerNonce;
    try {
      offerNonce = hexToBytes(auth.nonce);
      if (offerNonce.length !== LINK_NONCE_SIZE) throw new TypeError("nonce size");
    } catch {
      this._reject(sender, "bad_link_auth", "no valid auth nonce");
      return;
    }
    const signed = await this._verifiedFingerprints(sender, this.known.get(sender), msg.sdp, auth,
      (fps) => offerMessage(this.swarmId, sender, this.peerId, offerNonce, fps));
    if (!signed) return;
    if (!this._freshOfferNonce(auth.nonce)) { this._reject(sender, "replayed_offer"); return; }
    const existing = this.links.get(sender);
    if (existing) {
      const glare = existing.pc.signalingState === "have-local-offer";
      if (glare && this.peerId < sender) return; // our offer wins; the other side answers it
      // a working link is never torn down by a new offer (re-offers come after it closes)
      if (existing.state === LinkState.OPEN) { this._reject(sender, "already_linked"); return; }
      existing.close();
    } else if (this.links.size >= this.config.maxDegree) {
      this._reject(sender, "not_linking"); // full: the offerer's connect timeout sends it elsewhere
      return;
    }
    const link = this._newLink(this.known.get(sender));
    link.pc.addEventListener("datachannel", (e) => link.attach(e.channel));
    try {
      await link.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      await this._flushCandidates(link);
      await link.pc.setLocalDescription(await link.pc.createAnswer());
    } catch (err) {
      link.close(); // the half-made link goes, and nothing is sent back
      this._reject(sender, "bad_sdp", `${err.name}: ${err.message}`);
      return;
    }
    const sdp = link.pc.localDescription.sdp;
    const nonce = crypto.getRandomValues(new Uint8Array(LINK_NONCE_SIZE));
    const answer = answerMessage(this.swarmId, this.peerId, sender, nonce, offerNonce, sdpFingerprints(sdp));
    this._send({ type: "answer", to: sender, sdp, auth: await this._linkAuth(answer, nonce) });
  }

  async _onAnswer(msg) {
    const sender = msg.from || "";
    const link = this.links.get(sender);
    const offerNonce = link ? this._offerNonceOf.get(link) : undefined;
    if (!link || !offerNonce || link.pc.signalingState !== "have-local-offer") { this._reject(sender, "unexpected_answer"); return; }
    const auth = msg.auth ?? {};
    let nonce = null;
    try {
      nonce = hexToBytes(auth.nonce);
      if (nonce.length !== LINK_NONCE_SIZE) nonce = null;
    } catch { /* refused below */ }
    const signed = nonce && await this._verifiedFingerprints(sender, link.info, msg.sdp, auth,
      (fps) => answerMessage(this.swarmId, sender, this.peerId, nonce, offerNonce, fps));
    if (!signed) {
      if (!nonce) this._reject(sender, "bad_link_auth", "no valid auth nonce");
      link.close(); // refused: this offer is spent; the next attempt offers afresh
      return;
    }
    try {
      await link.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    } catch (err) {
      link.close();
      this._reject(sender, "bad_sdp", `${err.name}: ${err.message}`);
      return;
    }
    await this._flushCandidates(link);
  }

  async _onCandidate(msg) {
    const link = this.links.get(msg.from || "");
    if (!link) return; // a late candidate of a link that is gone
    if (!link.pc.remoteDescription) {
      if (link.pendingCandidates.length < MAX_PENDING_CANDIDATES) link.pendingCandidates.push(msg);
      return;
    }
    await this._addCandidate(link, msg);
  }

  async _flushCandidates(link) {
    const pending = link.pendingCandidates;
    link.pendingCandidates = [];
    for (const msg of pending) await this._addCandidate(link, msg);
  }

  /** Add one trickled candidate; a malformed one is the sender's problem, refused and counted. */
  async _addCandidate(link, msg) {
    if (link.state === LinkState.CLOSED) return; // a closed connection refuses every candidate
    try {
      if (!msg.candidate) {
        await link.pc.addIceCandidate(); // end of candidates
      } else {
        const text = msg.candidate.startsWith("candidate:") ? msg.candidate : `candidate:${msg.candidate}`;
        const init = { candidate: text, sdpMid: msg.sdp_mid ?? null, sdpMLineIndex: msg.sdp_mline_index ?? null };
        if (init.sdpMid === null && init.sdpMLineIndex === null) init.sdpMLineIndex = 0;
        await link.pc.addIceCandidate(init);
      }
    } catch (err) {
      if (link.state !== LinkState.CLOSED) this._reject(link.peerId, "bad_candidate", `${err.name}: ${err.message}`);
    }
  }

  async _maintain() {
    if (!this.connected || !this.ready) return;
    const now = performance.now();
    const candidates = [...this.known.values()].filter(
      (p) => !this.links.has(p.peer_id) && (this._retryAt.get(p.peer_id) || 0) <= now && !this.isBanned(p.peer_id)
        && this._mayLinkWith(p.peer_id));
    for (const info of this._toOffer(candidates)) {
      try {
        await this.connectTo(info);
      } catch (err) {
        console.debug("could not offer to", info.peer_id, err);
      }
    }
  }
}
