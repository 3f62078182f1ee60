"""Headless Python peer: identity, averaging core, frame verification, WebRTC mesh, trainer."""
