// Splitting frames into data-channel messages and reassembling them under strict bounds
// (mirrors protocols/chunking.py).
//
//   magic "GC" | transfer_id u32 | index u32 | count u32 | total_len u32 (big-endian) | data

import { ChunkError } from "./errors.js";

export const CHUNK_MAGIC = new Uint8Array([0x47, 0x43]); // "GC"
export const CHUNK_HEADER_SIZE = 18;
export const MAX_MESSAGE_SIZE = 262144; // SCTP max message size accepted by aiortc and Chromium

/** Yield data-channel messages of at most ``messageSize`` bytes carrying ``bytes``. */
export function* splitFrame(bytes, transferId, messageSize = MAX_MESSAGE_SIZE) {
  if (!(CHUNK_HEADER_SIZE < messageSize && messageSize <= MAX_MESSAGE_SIZE)) {
    throw new RangeError(`messageSize must be in (${CHUNK_HEADER_SIZE}, ${MAX_MESSAGE_SIZE}]`);
  }
  const body = messageSize - CHUNK_HEADER_SIZE;
  const count = Math.max(1, Math.ceil(bytes.length / body));
  for (let index = 0; index < count; index++) {
    const part = bytes.subarray(index * body, (index + 1) * body);
    const message = new Uint8Array(CHUNK_HEADER_SIZE + part.length);
    const view = new DataView(message.buffer);
    message.set(CHUNK_MAGIC, 0);
    view.setUint32(2, transferId);
    view.setUint32(6, index);
    view.setUint32(10, count);
    view.setUint32(14, bytes.length);
    message.set(part, CHUNK_HEADER_SIZE);
    yield message;
  }
}

/**
 * Collects chunks per transfer id; returns a frame's bytes when its last chunk arrives.
 *
 * Bounds: ``maxFrameSize`` per transfer, ``maxTransfers`` in flight (the oldest is dropped
 * beyond it), ``timeoutMs`` per transfer (checked on every chunk and by ``expire()``).
 * ``dropped`` counts dropped transfers by reason (the same names as Python).
 */
export class Reassembler {
  constructor(maxFrameSize, { maxTransfers = 4, timeoutMs = 30000, clock = () => performance.now() } = {}) {
    this.maxFrameSize = maxFrameSize;
    this.maxTransfers = maxTransfers;
    this.timeoutMs = timeoutMs;
    this._clock = clock;
    this._transfers = new Map(); // transfer id -> {count, total, started, parts: Map, received}
    this.dropped = {};
  }

  get buffered() {
    let n = 0;
    for (const t of this._transfers.values()) n += t.received;
    return n;
  }

  _count(reason) {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
  }

  _drop(transferId, reason) {
    this._transfers.delete(transferId);
    this._count(reason);
  }

  expire() {
    const now = this._clock();
    for (const [tid, t] of [...this._transfers]) {
      if (now - t.started > this.timeoutMs) this._drop(tid, "timeout");
    }
  }

  /** Add one message; return the complete frame bytes, or null while incomplete. Throws ChunkError. */
  feed(message) {
    if (message instanceof ArrayBuffer) message = new Uint8Array(message);
    this.expire();
    if (message.length < CHUNK_HEADER_SIZE || message.length > MAX_MESSAGE_SIZE) {
      throw new ChunkError(`chunk of ${message.length} bytes outside [${CHUNK_HEADER_SIZE}, ${MAX_MESSAGE_SIZE}]`);
    }
    const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
    const [tid, index, count, total] = [2, 6, 10, 14].map((o) => view.getUint32(o));
    const data = message.subarray(CHUNK_HEADER_SIZE);
    if (message[0] !== CHUNK_MAGIC[0] || message[1] !== CHUNK_MAGIC[1]) throw new ChunkError("bad chunk magic");
    if (total > this.maxFrameSize) {
      this._drop(tid, "oversize");
      throw new ChunkError(`declared frame size ${total} exceeds ${this.maxFrameSize}`, "oversize");
    }
    if (count === 0 || index >= count || count > Math.max(1, total)) {
      this._drop(tid, "bad_count");
      throw new ChunkError(`chunk ${index} of ${count} for a ${total}-byte frame is impossible`);
    }
    let transfer = this._transfers.get(tid);
    if (transfer === undefined) {
      if (this._transfers.size >= this.maxTransfers) this._drop(this._oldest(), "too_many_transfers");
      transfer = { count, total, started: this._clock(), parts: new Map(), received: 0 };
      this._transfers.set(tid, transfer);
    }
    if (count !== transfer.count || total !== transfer.total) {
      this._drop(tid, "inconsistent");
      throw new ChunkError("chunk contradicts its transfer's count or size");
    }
    if (transfer.parts.has(index)) {
      this._drop(tid, "duplicate");
      throw new ChunkError(`duplicate chunk ${index}`);
    }
    if (transfer.received + data.length > total) {
      this._drop(tid, "overflow");
      throw new ChunkError("chunks exceed the declared frame size", "oversize");
    }
    transfer.parts.set(index, data.slice()); // own a copy: callers may reuse buffers
    transfer.received += data.length;
    if (transfer.parts.size < count) return null;
    this._transfers.delete(tid);
    if (transfer.received !== total) {
      this._count("short");
      throw new ChunkError(`chunks add up to ${transfer.received} bytes, declared ${total}`);
    }
    const frame = new Uint8Array(total);
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const part = transfer.parts.get(i);
      frame.set(part, offset);
      offset += part.length;
    }
    return frame;
  }

  _oldest() {
    let oldest, started = Infinity;
    for (const [tid, t] of this._transfers) {
      if (t.started < started) [oldest, started] = [tid, t.started];
    }
    return oldest;
  }
}
