// Fetch what a publisher published and verify it before use (mirrors peer/fetch.py).
import { bytesToHex, hexToBytes, sha256, utf8 } from "./protocol/bytes.js";
import { manifestMessage, publisherFingerprint, verify } from "./protocol/crypto.js";
import { ManifestError } from "./protocol/errors.js";
import { parseEnvelope, parseManifest } from "./protocol/manifest.js";

export { ManifestError };

/**
 * The publisher fingerprint a join link pins in its fragment (`#pk=<32 hex>`, never sent to the
 * server), or null for an unpinned link. A `pk` that is not 32 hex characters throws: a mistyped
 * pin must not silently become "trust whatever the server says".
 */
export function publisherPinFromHash(hash) {
  const params = new URLSearchParams(String(hash || "").replace(/^#/, ""));
  if (!params.has("pk")) return null;
  const pin = params.get("pk").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(pin)) throw new ManifestError(`the join link's #pk=${params.get("pk")} is not a publisher fingerprint (32 hex characters)`);
  return pin;
}

let pinnedPublisher = null; // set by the page from its join link (app.js), before the peer starts

/** Refuse every manifest not signed by the publisher whose fingerprint is `pin` (null: trust on first use). */
export function pinPublisher(pin) {
  pinnedPublisher = pin;
}

/** @returns {Promise<{manifest: object, modelId: string, text: string}>} */
export async function fetchManifest(server, swarmId, pin = pinnedPublisher) {
  const resp = await fetch(`${server}/api/swarms/${swarmId}`);
  if (resp.status === 404) throw new ManifestError(`this server has no swarm ${swarmId}; check the join link`);
  if (!resp.ok) throw new ManifestError(`server answered ${resp.status} for the swarm manifest`);
  // the same contract as Python's parse_envelope / parse_manifest (JSON Schema + two rules)
  const envelope = parseEnvelope(await resp.text());
  const text = envelope.manifest;
  const manifest = parseManifest(text);
  const bytes = utf8(text);
  const ok = await verify(hexToBytes(manifest.publisher_key), hexToBytes(envelope.signature), await manifestMessage(bytes));
  if (!ok) throw new ManifestError("manifest signature does not verify against its publisher_key; refusing it");
  if (pin) {
    const signer = await publisherFingerprint(hexToBytes(manifest.publisher_key));
    if (signer !== pin) {
      throw new ManifestError(`this join link pins publisher ${pin}, but the server's manifest for swarm ${swarmId} is ` +
                              `signed by ${signer}; refusing it (ask the publisher for its link)`);
    }
  }
  if (manifest.swarm_id !== swarmId) throw new ManifestError(`server returned swarm ${manifest.swarm_id}, not ${swarmId}`);
  return { manifest, modelId: bytesToHex(await sha256(bytes)), text };
}

/** Download a content-addressed blob and check its size and SHA-256. */
export async function fetchBlob(server, ref) {
  const resp = await fetch(`${server}/content/${ref.digest}`);
  if (!resp.ok) throw new ManifestError(`blob ${ref.digest.slice(0, 12)} missing on the server (${resp.status})`);
  const data = new Uint8Array(await resp.arrayBuffer());
  if (data.length !== ref.size || bytesToHex(await sha256(data)) !== ref.digest) {
    throw new ManifestError(`blob ${ref.digest.slice(0, 12)} does not match its digest; refusing it`);
  }
  return data;
}
