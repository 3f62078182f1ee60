// Error hierarchy of the wire contract (mirrors protocols/errors.py).
// Every error carries a short machine-readable `reason`, the same strings Python counts.

export class ProtocolError extends Error {
  constructor(message, reason = "malformed") {
    super(message);
    this.name = "ProtocolError";
    this.reason = reason;
  }
}

/** A data-channel chunk that breaks the reassembly bounds. */
export class ChunkError extends ProtocolError {
  constructor(message, reason = "bad_chunk") {
    super(message, reason);
    this.name = "ChunkError";
  }
}

/** A model manifest or envelope outside the contract (mirrors protocols.errors.ManifestError). */
export class ManifestError extends ProtocolError {
  constructor(message, reason = "bad_manifest") {
    super(message, reason);
    this.name = "ManifestError";
  }
}
