"""The aiohttp application, wired: typed state, routes and lifecycles; the handlers live by concern.

- ``membership``: the WebSocket (``/ws``): challenge, join, welcome, relay, reports, leave;
- ``publishing``: ``/api/publish`` (upload and limits), ``/api/datasets``;
- ``prepare``: ``/api/prepare`` (a model/data file turned into an unsigned draft, in a child process);
- ``catalog``: ``/api/swarms``, a swarm's manifest, board and receipts, ``/health``;
- ``content``: blobs (``/content``), the index page, a swarm's join and board pages, ``/peer/``;
- ``tls``: the TLS context and a LAN server's self-signed certificate (used by ``swarm serve``);
- ``state``: the typed app keys every handler reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from . import catalog, content, membership, prepare, publishing
from .config import ServerConfig
from .content import default_browser_dir
from .limits import AddressLimits
from .membership import SAME_KEY_PROBE_S
from .registry import Registry
from .state import CONFIG, LIMITS, REGISTRY, STORE, STUN, STUN_PORT
from .store import ContentStore
from .stun import start_stun
from .tls import self_signed_certificate, tls_context

__all__ = ["make_app", "default_browser_dir", "tls_context", "self_signed_certificate", "SAME_KEY_PROBE_S",
           "CONFIG", "STORE", "REGISTRY", "LIMITS", "STUN", "STUN_PORT"]  # fmt: skip


def make_app(config: ServerConfig) -> web.Application:
    """The server for ``config``: state, routes, and what lives as long as it (sockets, STUN)."""
    app = web.Application(client_max_size=config.max_upload_bytes)
    app[CONFIG] = config
    app.on_response_prepare.append(content.cross_origin_isolation)
    app[LIMITS] = AddressLimits(
        max_connections=config.max_connections_per_address, connects_per_second=config.connects_per_second_per_address,
        connect_burst=config.connect_burst_per_address, uploads_per_minute=config.uploads_per_minute_per_address,
        exempt_loopback=config.exempt_loopback,
    )  # fmt: skip
    app[STORE] = ContentStore(config.data_dir)
    app[REGISTRY] = Registry()
    app[prepare.PREPARING] = asyncio.Lock()
    _routes(app.router, config)
    app.on_shutdown.append(membership.close_sockets)
    if config.stun_port is not None:
        app.cleanup_ctx.append(_stun_server)
    return app


def _routes(router: web.UrlDispatcher, config: ServerConfig) -> None:
    router.add_get("/health", catalog.health)
    router.add_get("/ws", membership.ws_handler)
    router.add_get("/", content.index_page)
    router.add_get("/swarms", content.index_page)
    router.add_get("/api/publish", publishing.publish_limits)
    router.add_post("/api/publish", publishing.publish)
    router.add_get("/api/datasets", publishing.list_datasets)
    router.add_post("/api/prepare", prepare.prepare)
    router.add_get("/api/swarms", catalog.list_swarms)
    router.add_get("/api/swarms/{swarm_id}", catalog.get_swarm)
    router.add_get("/api/swarms/{swarm_id}/board", catalog.get_board)
    router.add_get("/api/swarms/{swarm_id}/board/{peer_id}/receipts", catalog.get_receipts)
    router.add_get("/content/{digest}", content.get_content)
    router.add_get("/s/{swarm_id}", content.join_page)
    router.add_get("/s/{swarm_id}/board", content.board_page)
    if config.browser_dir is not None and config.browser_dir.is_dir():
        # show_index off and aiohttp's static route refuses paths leaving the directory
        router.add_static("/peer/", config.browser_dir, follow_symlinks=False)


async def _stun_server(app: web.Application) -> AsyncIterator[None]:
    """The STUN server lives exactly as long as the application."""
    cfg = app[CONFIG]
    assert cfg.stun_port is not None
    transport, protocol = await start_stun(cfg.stun_bind, cfg.stun_port)
    app[STUN], app[STUN_PORT] = protocol, int(transport.get_extra_info("sockname")[1])
    try:
        yield
    finally:
        transport.close()
