"""The wire contract of the gossip swarm, shared by Python and JavaScript peers.

Pure: imports nothing else of this project. Specified in docs/PROTOCOL.md and pinned by
the test vectors in protocols/vectors/ that both languages check.
"""

PROTOCOL_VERSION = 1
