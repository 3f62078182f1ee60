"""Error hierarchy of the wire contract.

Every error carries a short machine-readable ``reason`` so receivers can count rejects by
reason (the same strings the browser peer uses), and a message that says what was wrong.
"""


class ProtocolError(ValueError):
    """A message or frame that does not follow docs/PROTOCOL.md."""

    reason = "malformed"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class SignatureError(ProtocolError):
    """A signature that does not verify against the claimed key."""

    reason = "bad_signature"


class ManifestError(ProtocolError):
    """A model manifest that is malformed, unsigned, or signed by someone else."""

    reason = "bad_manifest"


class ChunkError(ProtocolError):
    """A data-channel chunk that breaks the reassembly bounds."""

    reason = "bad_chunk"
