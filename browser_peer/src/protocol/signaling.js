// Signaling helpers of the wire contract (mirrors protocols/signaling.py): the DTLS
// fingerprints of an SDP, which link authentication signs (docs/PROTOCOL.md, "Link authentication").
import { ProtocolError } from "./errors.js";

export const MAX_FINGERPRINTS = 16;
// every character some SDP parser could take as a line break, besides "\n" and a "\r" before it:
// refused, so every parser sees the same lines (as Python's str.splitlines would split them)
const ODD_BREAKS = /\r(?!\n)|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]/;
const FINGERPRINT_ATTR = /^[ \t]*a=fingerprint:/i;
const FINGERPRINT = /^[ \t]*a=fingerprint:([a-z0-9-]{1,16})[ \t]+((?:[0-9a-f]{2}:){0,63}[0-9a-f]{2})[ \t]*$/i;

/**
 * The DTLS certificate fingerprints an SDP declares, canonical: "<algorithm> <VALUE>" with the
 * algorithm lowercase and the value uppercase hex pairs, unique, sorted; [] when there are none.
 * Throws ProtocolError "bad_sdp" for ambiguous line breaks, a fingerprint attribute that does not
 * parse, or more than MAX_FINGERPRINTS. Every line that looks like a fingerprint attribute counts,
 * at any level and in any letter case, so no SDP parser finds one the signature does not cover.
 */
export function sdpFingerprints(sdp) {
  if (typeof sdp !== "string") throw new ProtocolError("an SDP is a string", "bad_sdp");
  if (ODD_BREAKS.test(sdp)) throw new ProtocolError("SDP line breaks must be \\r\\n or \\n", "bad_sdp");
  const found = new Set();
  for (let line of sdp.split("\n")) {
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (!FINGERPRINT_ATTR.test(line)) continue;
    const m = FINGERPRINT.exec(line);
    if (!m) throw new ProtocolError(`unparsable fingerprint attribute ${JSON.stringify(line.slice(0, 120))}`, "bad_sdp");
    found.add(`${m[1].toLowerCase()} ${m[2].toUpperCase()}`);
  }
  if (found.size > MAX_FINGERPRINTS) {
    throw new ProtocolError(`${found.size} fingerprints in one SDP (at most ${MAX_FINGERPRINTS})`, "bad_sdp");
  }
  return [...found].sort();
}
