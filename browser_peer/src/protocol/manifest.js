// The model manifest and its signed envelope, checked against the contract (mirrors the
// parsing half of protocols/manifest.py): the generated JSON Schema (schemas.js) plus the two
// rules a JSON Schema cannot state, in code here as model validators are in Python. Every
// refusal is a ManifestError with reason "bad_manifest", as in Python (protocols/vectors/contract.json).
import { ManifestError } from "./errors.js";
import { codePointLength, compile, explain, parseJson } from "./jsonschema.js";
import { MANIFEST_SCHEMA } from "./schemas.js";

export const MAX_MANIFEST_BYTES = 1024 * 1024; // of manifest text, in code points (Python's name)
export const MAX_JSON_DEPTH = 64; // objects and arrays nested in a manifest, the manifest itself included

const validManifest = compile(MANIFEST_SCHEMA.manifest);
const validEnvelope = compile(MANIFEST_SCHEMA.envelope);

function parsed(text, what, maxDepth) {
  try {
    return parseJson(text, maxDepth);
  } catch (err) {
    throw new ManifestError(`invalid ${what}: ${err.message}`);
  }
}

/** The manifest object in `text`, or throw ManifestError naming the first field out of contract. */
export function parseManifest(text) {
  if (typeof text !== "string") throw new ManifestError("a manifest is JSON text");
  const length = codePointLength(text);
  if (length > MAX_MANIFEST_BYTES) throw new ManifestError(`manifest of ${length} characters exceeds ${MAX_MANIFEST_BYTES}`);
  const manifest = parsed(text, "manifest", MAX_JSON_DEPTH);
  if (!validManifest(manifest)) throw new ManifestError(`invalid manifest ${explain(validManifest)}`);
  const { weights, initial_weights: blob } = manifest.model;
  const count = weights.reduce((sum, w) => sum + w.shape.reduce((n, d) => n * BigInt(d), 1n), 0n);
  if (count * 4n !== BigInt(blob.size)) {
    throw new ManifestError(`invalid manifest at /model: weights need ${count * 4n} bytes, initial_weights.size is ${blob.size}`);
  }
  if (manifest.gossip?.method === "central" && manifest.gossip.aggregator == null) {
    throw new ManifestError("invalid manifest at /gossip: method 'central' needs the aggregator's public key");
  }
  return manifest;
}

/** The signed envelope {manifest: text, signature: hex} in `text`, or throw ManifestError. */
export function parseEnvelope(text) {
  if (typeof text !== "string") throw new ManifestError("a signed manifest is JSON text");
  if (codePointLength(text) > MAX_MANIFEST_BYTES + 1024) throw new ManifestError("signed manifest exceeds the size limit");
  const envelope = parsed(text, "signed manifest", Infinity);
  if (!validEnvelope(envelope)) throw new ManifestError(`invalid signed manifest ${explain(validEnvelope)}`);
  return envelope;
}
