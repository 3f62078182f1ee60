// The JSON contract in the browser: every case of protocols/vectors/contract.json gets the
// reason Python gives (ok, malformed, too_large, bad_manifest). Shared by vectors.js (Chromium)
// and contract_vectors.js (node).
import { ProtocolError } from "../src/protocol/errors.js";
import { parseEnvelope, parseManifest } from "../src/protocol/manifest.js";
import { parseClientMessage, parseServerMessage } from "../src/protocol/signaling.js";

const PARSERS = {
  client_to_server: parseClientMessage, server_to_client: parseServerMessage, manifest: parseManifest, envelope: parseEnvelope,
};

export function caseText(c) {
  return c.text ?? c.repeat.prefix + c.repeat.unit.repeat(c.repeat.count) + c.repeat.suffix;
}

/** One result {name, ok, detail} per case, named contract/<direction or kind>/<case>. */
export function checkContract(vectors) {
  return vectors.cases.map((c) => {
    let reason = "ok";
    let detail = "";
    try {
      PARSERS[c.contract](caseText(c));
    } catch (err) {
      if (!(err instanceof ProtocolError)) return { name: `contract/${c.contract}/${c.name}`, ok: false, detail: `not a ProtocolError: ${err}` };
      reason = err.reason;
      detail = err.message.slice(0, 160);
    }
    return { name: `contract/${c.contract}/${c.name}`, ok: reason === c.reason, detail: `${reason}, want ${c.reason} (${detail})` };
  });
}
