"""The embedded web server: provider callbacks, customer returns, bridge pages, saved-card
returns, health, and the Telegram webhook."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.web import callbacks, cards, health, pay, returns
from bot.web.keys import SERVICES_KEY, WebServices

MAX_BODY = 256 * 1024  # provider callbacks are small; anything bigger is refused with 413

__all__ = ["SERVICES_KEY", "WebServices", "create_web_app"]


class MalformedRequests(logging.Filter):
    """aiohttp logs each request it cannot parse (a header too long, two Content-Types, a
    false gzip claim) or whose sender hung up, at ERROR with a traceback: anyone on the
    internet could fill the log. Those become one WARNING line; real errors stay as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | ConnectionResetError):
            code = getattr(exc, "code", 400)
            reason = getattr(exc, "message", "") or str(exc)
            record.msg, record.args = "refused a malformed request (%s): %s", (code, reason[:200])
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def quiet_malformed_requests() -> None:
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server.filters):
        server.addFilter(MalformedRequests())


def create_web_app(services: WebServices) -> web.Application:
    quiet_malformed_requests()
    app = web.Application(client_max_size=MAX_BODY)
    app[SERVICES_KEY] = services
    app.add_routes(callbacks.routes)  # first: the router tries routes in order, and these are hot
    app.add_routes(returns.routes)
    app.add_routes(health.routes)
    app.add_routes(cards.routes)
    app.add_routes(pay.routes)
    return app
