"""Signaling server: introduces peers, relays WebRTC set-up, hosts what publishers published.

Trained weights never pass through it. Depends only on ``protocols``.
"""
