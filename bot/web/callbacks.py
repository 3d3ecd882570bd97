"""POST /callbacks/{provider}: authenticate, identify, store, answer; then confirm off the
request path, so a slow provider never holds a callback open."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.core import BadCallback
from bot.web.inbound import to_inbound, to_response
from bot.web.keys import SERVICES_KEY

log = logging.getLogger("bot.web")
routes = web.RouteTableDef()


@routes.post("/callbacks/{provider}")
async def provider_callback(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    provider = request.match_info["provider"]
    inbound = await to_inbound(request)  # a body too big or unreadable is the sender's 4xx
    try:
        ack, follow_up = await services.checkout.accept_callback(provider, inbound)
    except BadCallback as exc:
        log.warning("callback refused: %s", exc)
        status = exc.http_status if exc.http_status and 400 <= exc.http_status < 500 else 400
        return web.json_response(
            {"error": str(exc.args[0]) if exc.args else "bad callback"}, status=status
        )
    except Exception:  # not stored (storage down): the provider's "try again" so it retries
        log.exception("callback for %s not stored", provider)
        return to_response(services.checkout.not_stored_ack(provider))
    services.detach(follow_up)
    return to_response(ack)
