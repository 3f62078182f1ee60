// Signaling messages of the wire contract (mirrors protocols/signaling.py): every message in
// either direction checked against the generated JSON Schema (schemas.js), with Python's error
// codes (malformed, too_large; protocols/vectors/contract.json), and the DTLS fingerprints of
// an SDP, which link authentication signs (docs/PROTOCOL.md, "Link authentication").
import { ProtocolError } from "./errors.js";
import { codePointLength, compile, explain, parseJson } from "./jsonschema.js";
import { SIGNALING_SCHEMA } from "./schemas.js";

export const MAX_SIGNAL_MESSAGE = 128 * 1024; // code points of one message's text

const validClient = compile(SIGNALING_SCHEMA.client_to_server);
const validServer = compile(SIGNALING_SCHEMA.server_to_client);

function parse(validate, text) {
  if (typeof text !== "string") throw new ProtocolError("a signaling message is a text message");
  const length = codePointLength(text);
  if (length > MAX_SIGNAL_MESSAGE) throw new ProtocolError(`message of ${length} characters exceeds ${MAX_SIGNAL_MESSAGE}`, "too_large");
  let msg;
  try {
    msg = parseJson(text);
  } catch (err) {
    throw new ProtocolError(`invalid signaling message: ${err.message}`);
  }
  if (!validate(msg)) throw new ProtocolError(`invalid signaling message ${explain(validate)}`);
  return msg;
}

/** A message from the server (or relayed by it): the object, or throw ProtocolError "malformed" / "too_large". */
export function parseServerMessage(text) {
  return parse(validServer, text);
}

/** A message a client sends (what the server accepts): the object, or throw ProtocolError. */
export function parseClientMessage(text) {
  return parse(validClient, text);
}

/** Throw ProtocolError unless `msg` (an object about to be sent) is a client message of the contract. */
export function checkClientMessage(msg) {
  if (!validClient(msg)) throw new ProtocolError(`outgoing ${msg?.type} message ${explain(validClient)}`);
}

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
