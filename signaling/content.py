"""Static content and pages: content-addressed blobs, the index page, a swarm's join and board pages, the browser peer.

Pages of the browser peer are cross-origin isolated (``cross_origin_isolation``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from .catalog import swarm_rows
from .pages import swarm_index
from .state import CONFIG, STORE, json_error


async def index_page(request: web.Request) -> web.Response:
    return web.Response(text=swarm_index(swarm_rows(request)), content_type="text/html")


async def get_content(request: web.Request) -> web.StreamResponse:
    path = request.app[STORE].blob_path(request.match_info["digest"])
    if path is None:
        return json_error(404, "not_found", "no blob with that sha256 digest")
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable",
                                           "Content-Type": "application/octet-stream"})  # fmt: skip


def _swarm_page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page of browser_peer/ served under a published swarm's link (the page reads the id)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.app[STORE].manifest(request.match_info["swarm_id"]) is None:
            return json_error(404, "unknown_swarm", "no such swarm on this server")
        browser_dir = request.app[CONFIG].browser_dir
        page = browser_dir / name if browser_dir else None
        if page is not None and page.is_file():
            return web.FileResponse(page)
        return web.Response(text="The browser peer is not installed on this server.", content_type="text/plain")

    return handler


join_page = _swarm_page("index.html")
board_page = _swarm_page("board.html")


async def cross_origin_isolation(request: web.Request, response: web.StreamResponse) -> None:
    """Pages of the browser peer are cross-origin isolated: SharedArrayBuffer, hence TF.js's
    multi-threaded wasm backend, is only available then (measured in benchmarks/browser.py).
    Everything those pages load is same-origin, so require-corp costs nothing."""
    if request.path.startswith(("/s/", "/peer/")):
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault("Cross-Origin-Embedder-Policy", "require-corp")


def default_browser_dir() -> Path | None:
    here = Path(os.environ.get("SWARM_BROWSER_DIR", Path(__file__).resolve().parent.parent / "browser_peer"))
    return here if here.is_dir() else None

