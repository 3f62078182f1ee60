// Signed receipts for the contribution board (mirrors peer/receipts.py): "I verified and
// accepted N frames from peer P". Counts come from the transport's acceptedFrom; each receipt is
// signed with the tab's identity key (non-extractable, WebCrypto). Counts are cumulative per
// session (8 random bytes per page load), so the server keeps the largest and a replayed receipt
// adds nothing. Only receipts whose count changed since the last report are sent (at most
// MAX_RECEIPTS, the largest change first), and all again on a new signaling session.

import { bytesToHex } from "./protocol/bytes.js";
import { MAX_RECEIPT_FRAMES, RECEIPT_SESSION_SIZE, receiptMessage, sign } from "./protocol/crypto.js";

export const MAX_RECEIPTS = 64; // per report (protocols/signaling.py)

/** One receipt, signed by `identity`: it vouches for `frames` frames from `peerId`. */
export async function makeReceipt(identity, swarmId, voucher, peerId, session, frames) {
  const signature = await sign(identity.privateKey, receiptMessage(swarmId, voucher, peerId, session, frames));
  return { peer_id: peerId, session: bytesToHex(session), frames, signature: bytesToHex(signature) };
}

export class ReceiptBook {
  /** counts: () => {peer id: frames accepted}; session: 8 bytes (random when omitted). */
  constructor(identity, swarmId, peerId, counts, session = null) {
    Object.assign(this, { identity, swarmId, peerId, counts });
    this.session = session ?? crypto.getRandomValues(new Uint8Array(RECEIPT_SESSION_SIZE));
    this.sent = new Map(); // peer id -> frames of the last receipt sent
  }

  /** Forget what was sent: the next reports carry a receipt for every neighbor again. */
  resendAll() { this.sent.clear(); }

  /** Receipts for the neighbors whose count grew since the last report, largest growth first. */
  async due(limit = MAX_RECEIPTS) {
    const changed = Object.entries(this.counts())
      .map(([peer, n]) => [peer, Math.min(n, MAX_RECEIPT_FRAMES)])
      .filter(([peer, n]) => peer !== this.peerId && /^[0-9a-f]{32}$/.test(peer) && n > 0 && this.sent.get(peer) !== n)
      .sort((a, b) => ((this.sent.get(a[0]) || 0) - a[1]) - ((this.sent.get(b[0]) || 0) - b[1]) || (a[0] < b[0] ? -1 : 1));
    const receipts = [];
    for (const [peer, frames] of changed.slice(0, limit)) {
      receipts.push(await makeReceipt(this.identity, this.swarmId, this.peerId, peer, this.session, frames));
      this.sent.set(peer, frames);
    }
    return receipts;
  }
}
