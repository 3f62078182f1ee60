"""Error feedback for lossy codecs: what a neighbor receives stays within one residual of our model.

Pure state per neighbor, no transport: the live mesh (``peer.transport``) and the simulator
(``research``) both call ``ErrorFeedback.apply`` on the tensors they are about to encode.
Lossy codecs send ``w + r`` and keep ``r <- (w + r) - decode(encode(w + r))`` per neighbor,
so the rounding error of one exchange is paid back in the next one instead of accumulating
(Seide et al. 2014; Karimireddy et al. 2019, "Error feedback fixes SignSGD").
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from protocols.codecs import CodecId, codec_for

MAX_RESIDUALS = 256  # neighbors remembered; departed ones are forgotten oldest first


class ErrorFeedback:
    def __init__(self, max_peers: int = MAX_RESIDUALS) -> None:
        self.max_peers = max_peers
        self.residuals: dict[Hashable, list[np.ndarray]] = {}

    def apply(self, peer: Hashable, weights: list[np.ndarray], codec: CodecId) -> list[np.ndarray]:
        """The tensors to encode for ``peer``: ``weights`` itself for float32, else ``weights + residual``.

        Updates the residual to what ``codec`` will lose of the returned tensors.
        """
        if codec == CodecId.FLOAT32:
            return weights
        residual = self.residuals.get(peer)
        target = [w + r for w, r in zip(weights, residual, strict=True)] if residual else list(weights)
        c = codec_for(codec)
        sent = c.decode(c.encode(target), [t.shape for t in target])
        self.residuals[peer] = [t - q for t, q in zip(target, sent, strict=True)]
        while len(self.residuals) > self.max_peers:  # departed neighbors: forget the oldest
            self.residuals.pop(next(iter(self.residuals)))
        return target
