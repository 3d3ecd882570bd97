"""The embedded web server: provider callbacks, customer returns, bridge pages, saved-card
returns, health, and the Telegram webhook."""

from __future__ import annotations

from aiohttp import web

from bot.web import callbacks, cards, health, pay, returns
from bot.web.keys import SERVICES_KEY, WebServices

MAX_BODY = 256 * 1024  # provider callbacks are small; anything bigger is refused with 413

__all__ = ["SERVICES_KEY", "WebServices", "create_web_app"]


def create_web_app(services: WebServices) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SERVICES_KEY] = services
    app.add_routes(returns.routes)
    app.add_routes(callbacks.routes)
    app.add_routes(health.routes)
    app.add_routes(cards.routes)
    app.add_routes(pay.routes)
    return app
