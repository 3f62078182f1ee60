"""Applications on top of the peer and the server: CLI, publisher, demo."""
