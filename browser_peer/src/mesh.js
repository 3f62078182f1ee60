// The WebRTC mesh: a signaling client plus one PeerLink per neighbor (mirrors peer/mesh.py).
// Same rules as the Python peer: random neighbors up to `degree`, incoming offers accepted up
// to `maxDegree`, offer glare broken by peer id (the smaller id keeps its offer), failed links
// replaced, the signaling connection re-established with backoff while links stay up.
import { bytesToHex, hexToBytes } from "./protocol/bytes.js";
import { joinMessage, peerIdOf, sign } from "./protocol/crypto.js";
import { LinkState, PeerLink } from "./link.js";

const V = 1;

export const defaultMeshConfig = () => ({
  degree: 4, maxDegree: 8, iceServers: null, connectTimeoutMs: 10000, maintainIntervalMs: 1000,
  pingIntervalMs: 30000, reportIntervalMs: 10000, reconnectMaxDelayMs: 10000, retryAfterMs: 5000,
});

export class Mesh {
  constructor(identity, wsUrl, swarmId, config, { maxFrameSize, onFrame, onChunkError = () => {}, onEvent = () => {} }) {
    this.identity = identity;
    this.wsUrl = wsUrl;
    this.swarmId = swarmId;
    this.config = { ...defaultMeshConfig(), ...config };
    this.maxFrameSize = maxFrameSize;
    this.onFrame = onFrame;
    this.onChunkError = onChunkError;
    this.onEvent = onEvent;
    this.known = new Map(); // peer id -> PeerInfo
    this.links = new Map(); // peer id -> PeerLink
    this.connected = false;
    this.ready = false;
    this.stats = { chunkRejects: {}, signalingErrors: [] };
    this._ws = null;
    this._retryAt = new Map();
    this.banned = new Map(); // peer id -> until (performance.now())
    this._closing = false;
    this._dispatchChain = Promise.resolve();
    this._welcome = null;
    this.reportSource = null; // () => {step, test_acc, accepted_from} for the contribution board
    this.closedBytes = { sent: 0, received: 0 }; // of links that are gone, so totals never drop
  }

  async start() {
    this.peerId = await peerIdOf(this.identity.publicKey);
    const welcome = new Promise((resolve, reject) => { this._welcome = { resolve, reject }; });
    this._connectSignaling(500);
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

  close() {
    this._closing = true;
    clearInterval(this._maintainTimer);
    clearInterval(this._pingTimer);
    if (this._ws) this._ws.close();
    for (const link of [...this.links.values()]) link.close();
  }

  // ---- signaling ---------------------------------------------------------------------
  _connectSignaling(delay) {
    if (this._closing) return;
    const ws = new WebSocket(this.wsUrl);
    this._ws = ws;
    ws.addEventListener("message", (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return; // malformed signaling message: ignore it, as the Python peer does
      }
      this._dispatchChain = this._dispatchChain.then(() => this._dispatch(msg)).catch((err) => console.warn("signaling", err));
    });
    ws.addEventListener("open", () => {
      // progress reports for the contribution board double as keep-alives; pings when there is none
      this._pingTimer = setInterval(() => {
        try {
          const report = this.connected && this.reportSource ? this.reportSource() : null;
          this._send(report ? { type: "report", ...report } : { type: "ping" });
        } catch { /* reconnecting */ }
      }, this.config.reportIntervalMs);
    });
    ws.addEventListener("close", () => {
      clearInterval(this._pingTimer);
      const wasConnected = this.connected;
      this.connected = false;
      if (this._ws === ws) this._ws = null;
      if (this._closing) return;
      this.onEvent("signaling", { connected: false });
      const next = wasConnected ? 500 : Math.min(delay * 2, this.config.reconnectMaxDelayMs);
      setTimeout(() => this._connectSignaling(next), delay * (0.5 + Math.random()));
    });
  }

  _send(body) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) throw new Error("signaling server is not connected");
    ws.send(JSON.stringify({ v: V, ...body }));
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
      case "welcome":
        this.known = new Map(msg.peers.filter((p) => p.peer_id !== this.peerId).map((p) => [p.peer_id, p]));
        if (this.config.iceServers === null) this.config.iceServers = msg.ice_servers || [];
        this.connected = true;
        this.onEvent("signaling", { connected: true });
        if (this._welcome) { this._welcome.resolve(msg); this._welcome = null; }
        break;
      case "peer_joined":
        this.known.set(msg.peer.peer_id, msg.peer);
        break;
      case "peer_left": {
        this.known.delete(msg.peer_id);
        const link = this.links.get(msg.peer_id);
        if (link && link.state !== LinkState.OPEN) link.close();
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

  // ---- connections -------------------------------------------------------------------
  _newLink(info) {
    const iceServers = (this.config.iceServers || []).map((s) => {
      const out = { urls: s.urls };
      if (s.username) out.username = s.username;
      if (s.credential) out.credential = s.credential;
      return out;
    });
    const pc = new RTCPeerConnection({ iceServers });
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
    this._send({ type: "offer", to: info.peer_id, sdp: link.pc.localDescription.sdp });
    return link;
  }

  async _onOffer(msg) {
    const sender = msg.from || "";
    const info = this.known.get(sender);
    if (!info || !this.ready || this.isBanned(sender)) return; // the offerer times out and retries
    const existing = this.links.get(sender);
    if (existing) {
      const glare = existing.pc.signalingState === "have-local-offer";
      if (glare && this.peerId < sender) return; // our offer wins
      existing.close();
    } else if (this.links.size >= this.config.maxDegree) {
      return;
    }
    const link = this._newLink(info);
    link.pc.addEventListener("datachannel", (e) => link.attach(e.channel));
    await link.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    await this._flushCandidates(link);
    await link.pc.setLocalDescription(await link.pc.createAnswer());
    this._send({ type: "answer", to: sender, sdp: link.pc.localDescription.sdp });
  }

  async _onAnswer(msg) {
    const link = this.links.get(msg.from || "");
    if (link && link.pc.signalingState === "have-local-offer") {
      await link.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      await this._flushCandidates(link);
    }
  }

  async _onCandidate(msg) {
    const link = this.links.get(msg.from || "");
    if (!link) return;
    if (!link.pc.remoteDescription) {
      if (link.pendingCandidates.length < 64) link.pendingCandidates.push(msg);
      return;
    }
    await this._addCandidate(link, msg);
  }

  async _flushCandidates(link) {
    const pending = link.pendingCandidates;
    link.pendingCandidates = [];
    for (const msg of pending) await this._addCandidate(link, msg);
  }

  async _addCandidate(link, msg) {
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
      console.debug("ignoring candidate", msg.candidate, err);
    }
  }

  async _maintain() {
    if (!this.connected || !this.ready) return;
    const now = performance.now();
    const candidates = [...this.known.values()].filter(
      (p) => !this.links.has(p.peer_id) && (this._retryAt.get(p.peer_id) || 0) <= now && !this.isBanned(p.peer_id));
    let missing = this.config.degree - this.links.size;
    while (missing > 0 && candidates.length > 0) {
      const [info] = candidates.splice(Math.floor(Math.random() * candidates.length), 1);
      try {
        await this.connectTo(info);
      } catch (err) {
        console.debug("could not offer to", info.peer_id, err);
      }
      missing -= 1;
    }
  }
}
