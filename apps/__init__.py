"""Applications on top of the peer and the server: CLI, publisher, demo."""

import peer  # noqa: F401  (sets TensorFlow's environment before anything imports it)
