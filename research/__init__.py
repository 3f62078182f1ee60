"""Research harness: gossip vs central averaging (FedAvg) on the same data, transport and budget."""

import peer  # noqa: F401  (sets TensorFlow's environment before anything imports it)
