// Signed receipts for the contribution board (mirrors peer/receipts.py): "I verified and
// accepted N frames from peer P". Counts come from the transport's acceptedFrom; each receipt is
// signed with the tab's identity key (non-extractable, WebCrypto). Counts are cumulative per
// session (8 random bytes per page load), so the server keeps the largest and a replayed receipt
// adds nothing. Only receipts whose count changed since the last report are sent (at most
// MAX_RECEIPTS, the largest change first), each unchanged one again after a minute (a report
// may have been dropped), and all again on a new signaling session.

import { bytesToHex } from "./protocol/bytes.js";
import { MAX_RECEIPT_FRAMES, RECEIPT_SESSION_SIZE, receiptMessage, sign } from "./protocol/crypto.js";

export const MAX_RECEIPTS = 64; // per report (protocols/signaling.py)

/** One receipt, signed by `identity`: it vouches for `frames` frames from `peerId`. */
export async function makeReceipt(identity, swarmId, voucher, peerId, session, frames) {
  const signature = await sign(identity.privateKey, receiptMessage(swarmId, voucher, peerId, session, frames));
  return { peer_id: peerId, session: bytesToHex(session), frames, signature: bytesToHex(signature) };
}

export const REFRESH_MS = 60000; // a receipt not sent for this long is sent again (a report may have been dropped)

export class ReceiptBook {
  /** counts: () => {peer id: frames accepted}; session: 8 bytes (random when omitted). */
  constructor(identity, swarmId, peerId, counts, session = null, clock = () => performance.now()) {
    Object.assign(this, { identity, swarmId, peerId, counts, clock });
    this.session = session ?? crypto.getRandomValues(new Uint8Array(RECEIPT_SESSION_SIZE));
    this.sent = new Map(); // peer id -> [frames, when] of the last receipt sent
  }

  /** Forget what was sent: the next reports carry a receipt for every neighbor again. */
  resendAll() { this.sent.clear(); }

  /**
   * Receipts for the neighbors whose count grew since the last report, largest growth first,
   * then those not sent for REFRESH_MS, oldest first (as peer/receipts.py).
   */
  async due(limit = MAX_RECEIPTS) {
    const now = this.clock();
    const ranked = [];
    for (const [peer, count] of Object.entries(this.counts())) {
      const frames = Math.min(count, MAX_RECEIPT_FRAMES);
      if (peer === this.peerId || !/^[0-9a-f]{32}$/.test(peer) || !(frames > 0)) continue;
      const last = this.sent.get(peer);
      if (!last || last[0] !== frames) ranked.push([0, (last ? last[0] : 0) - frames, peer, frames]);
      else if (now - last[1] >= REFRESH_MS) ranked.push([1, last[1], peer, frames]);
    }
    ranked.sort((a, b) => a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0));
    const receipts = [];
    for (const [, , peer, frames] of ranked.slice(0, limit)) {
      receipts.push(await makeReceipt(this.identity, this.swarmId, this.peerId, peer, this.session, frames));
      this.sent.set(peer, [frames, now]);
    }
    return receipts;
  }
}
