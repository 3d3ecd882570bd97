from __future__ import annotations

from aiohttp import web

from bot.web.keys import SERVICES_KEY

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"ok": True})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: storage answers."""
    ready = await request.app[SERVICES_KEY].storage.ping()
    return web.json_response({"ok": ready}, status=200 if ready else 503)
