// Admission of update frames (mirrors peer/verifier.py): every check a frame must pass before
// its weights are used. Checks run cheapest first; the replay window only advances after the
// signature and digest verified, so a forged frame can never burn a legitimate sequence number.
// Each reject is counted by reason (the reason strings of docs/PROTOCOL.md).
// Frames of one link are admitted one at a time, in arrival order: the checks await WebCrypto
// (signature, then the payload's SHA-256), so a small frame would otherwise finish before a
// large one that arrived just before it, and advance the replay window past the large one's
// seq: an honest frame refused as a replay, and a strike. Python's verifier is synchronous.

import { bytesEqual, bytesToHex } from "./protocol/bytes.js";
import { ProtocolError } from "./protocol/errors.js";
import { FRAME_KIND, decodeFrame, frameTensors, parseHeader } from "./protocol/frame.js";

export const WEIGHT_KINDS = new Set([FRAME_KIND.EXCHANGE_REQUEST, FRAME_KIND.EXCHANGE_RESPONSE, FRAME_KIND.PULL_RESPONSE]);

export class FrameRejected extends Error {
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.name = "FrameRejected";
    this.reason = reason;
  }
}

function sameShapes(a, b) {
  return a.length === b.length && a.every((s, i) => s.length === b[i].length && s.every((d, k) => d === b[i][k]));
}

export class FrameVerifier {
  constructor({ swarmId, modelId, ownKey, isKnown, shapes, maxFrameSize, maxSessions = 4096 }) {
    Object.assign(this, { swarmId, modelId, ownKey, isKnown, maxFrameSize });
    this.shapes = shapes.map((s) => s.map(Number));
    this._maxSessions = maxSessions;
    this._lastSeq = new Map(); // "senderhex:session" -> last accepted seq (BigInt), oldest first
    this._chains = new Map(); // link key hex -> the admission of its latest frame (settled: removed)
    this.rejected = {}; // reason -> count
    this.accepted = {}; // sender key hex -> count
  }

  reject(reason, detail) {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
    return new FrameRejected(reason, detail);
  }

  /** Count a ProtocolError under its reason and raise it as FrameRejected; anything else is a bug. */
  _rethrow(exc) {
    if (exc instanceof ProtocolError) throw this.reject(exc.reason, exc.message);
    throw exc;
  }

  /**
   * Resolve to {frame, tensors} for an admitted frame, or reject with FrameRejected. Frames of
   * one link (``linkKeyBytes``) are checked in the order admit is called, each after the one
   * before it has settled; frames of other links are not held up.
   */
  admit(bytes, linkKeyBytes) {
    const link = bytesToHex(linkKeyBytes);
    const before = this._chains.get(link) ?? Promise.resolve();
    const result = before.then(() => this._admit(bytes, linkKeyBytes));
    const settled = result.then(() => {}, () => {}); // a refused frame does not stop the next one
    this._chains.set(link, settled);
    settled.then(() => { if (this._chains.get(link) === settled) this._chains.delete(link); });
    return result;
  }

  async _admit(bytes, linkKeyBytes) {
    if (bytes.length > this.maxFrameSize) throw this.reject("oversize", `${bytes.length} bytes > ${this.maxFrameSize}`);
    let header;
    try {
      ({ header } = parseHeader(bytes));
    } catch (exc) {
      this._rethrow(exc);
    }
    if (!bytesEqual(header.sender, linkKeyBytes)) {
      throw this.reject("wrong_sender", "frame signed by a key other than this link's peer");
    }
    if (!this.isKnown(header.sender)) throw this.reject("unknown_sender", "sender is not a member of this swarm");
    if (!bytesEqual(header.swarmId, this.swarmId)) throw this.reject("wrong_swarm", bytesToHex(header.swarmId));
    if (!bytesEqual(header.modelId, this.modelId)) throw this.reject("wrong_model", bytesToHex(header.modelId));
    if (!bytesEqual(header.receiver, this.ownKey)) throw this.reject("wrong_receiver", bytesToHex(header.receiver));
    let frame;
    try {
      frame = await decodeFrame(bytes);
    } catch (exc) {
      this._rethrow(exc);
    }
    const session = `${bytesToHex(header.sender)}:${header.session}`;
    const last = this._lastSeq.get(session) ?? -1n;
    if (header.seq <= last) throw this.reject("replay", `seq ${header.seq} already seen`);
    this._remember(session, header.seq);
    let tensors = [];
    if (WEIGHT_KINDS.has(header.kind)) {
      if (!sameShapes(header.shapes, this.shapes)) {
        throw this.reject("bad_shape", "tensor layout differs from the swarm's model");
      }
      try {
        tensors = frameTensors(frame);
      } catch (exc) {
        this._rethrow(exc);
      }
    }
    const sender = bytesToHex(header.sender);
    this.accepted[sender] = (this.accepted[sender] ?? 0) + 1;
    return { frame, tensors };
  }

  _remember(session, seq) {
    this._lastSeq.delete(session); // re-insert: Map order is the LRU order
    this._lastSeq.set(session, seq);
    while (this._lastSeq.size > this._maxSessions) this._lastSeq.delete(this._lastSeq.keys().next().value);
  }
}
