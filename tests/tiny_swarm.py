"""Tests import the tiny swarm from here; it lives in ``apps.tiny_swarm`` so benchmarks need no tests."""

from apps.tiny_swarm import Publication, publish_form, tiny_publication

__all__ = ["Publication", "publish_form", "tiny_publication"]
