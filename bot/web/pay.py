"""GET|POST /pay/{provider}/{token}: our bridge page, for providers whose browser step we host
(Pocket: the customer's token inside the Pocket app). The adapter renders the page and reads
its post; the core stores the payment it opened and confirms it off the request path."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.core import BadCallback
from bot.web.inbound import to_inbound, to_response
from bot.web.keys import SERVICES_KEY
from bot.web.returns import bad_link, unknown_link

log = logging.getLogger("bot.web")
routes = web.RouteTableDef()


@routes.route("GET", "/pay/{provider}/{token}")
@routes.route("POST", "/pay/{provider}/{token}")
async def bridge_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    provider, token = request.match_info["provider"], request.match_info["token"]
    try:
        found = await services.checkout.open_bridge(provider, token, await to_inbound(request))
    except BadCallback as exc:
        log.warning("bad bridge request for %s: %s", provider, exc)
        return bad_link()
    if found is None:
        return unknown_link()
    ack, follow_up = found
    services.detach(follow_up)
    return to_response(ack)
