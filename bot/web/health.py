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
    """Readiness: storage answers, and so does every other dependency updates need (Redis
    for the carts, when configured): a bot that cannot serve customers is not ready."""
    services = request.app[SERVICES_KEY]
    checks = {"storage": await services.storage.ping()}
    for name, ping in services.dependencies.items():
        try:
            checks[name] = bool(await ping())
        except Exception:  # a dependency that cannot be reached is simply not ready
            checks[name] = False
    ready = all(checks.values())
    return web.json_response({"ok": ready, **checks}, status=200 if ready else 503)
