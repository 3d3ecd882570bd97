"""GET /cards/{provider}/{token}: the customer's browser back from the provider's card page."""

from __future__ import annotations

import logging

from aiogram.utils.i18n import gettext as _
from aiohttp import web

from bot.core.cards import CardError
from bot.web.keys import SERVICES_KEY
from bot.web.returns import page

log = logging.getLogger("bot.web")
routes = web.RouteTableDef()


@routes.get("/cards/{provider}/{token}")
async def card_return(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    if services.cards is None:
        raise web.HTTPNotFound()
    provider, token = request.match_info["provider"], request.match_info["token"]
    try:
        saved = await services.cards.card_page_returned(
            provider, token, request.query.get("result", "")
        )
    except CardError as exc:
        log.warning("card return for %s: %s", provider, exc.reason)
        saved = []
    user_id = services.cards.user_of(token)
    locale = (await services.storage.get_user_locale(user_id) if user_id else None) or "en"
    with services.i18n.context(), services.i18n.use_locale(locale):
        if saved is None:
            return page("Not found", "This link is not known.", status=404)
        if saved:
            return page(
                _("Card saved"),
                _("You can pay with it next time, right in the chat."),
                services.bot_username,
            )
        return page(
            _("No card saved"),
            _("Nothing was saved. You can try again from the chat."),
            services.bot_username,
        )
