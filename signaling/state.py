"""The server's typed application state (``web.AppKey``) and its one JSON error shape.

``app.make_app`` fills these keys; the handler modules (``membership``, ``publishing``,
``catalog``, ``content``) read them from ``request.app``.
"""

from __future__ import annotations

from aiohttp import web

from .config import ServerConfig
from .limits import AddressLimits
from .registry import Registry
from .store import ContentStore
from .stun import StunServer

CONFIG = web.AppKey("config", ServerConfig)
STORE = web.AppKey("store", ContentStore)
REGISTRY = web.AppKey("registry", Registry)
LIMITS = web.AppKey("limits", AddressLimits)
STUN = web.AppKey("stun", StunServer)  # only while the server runs its own STUN (``ServerConfig.stun_port``)
STUN_PORT = web.AppKey("stun_port", int)  # the port it bound


def json_error(status: int, code: str, message: str) -> web.Response:
    """``{"error": code, "message": message}`` with HTTP ``status``: every refusal over HTTP looks like this."""
    return web.json_response({"error": code, "message": message}, status=status)
