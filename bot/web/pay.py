"""GET|POST /pay/{provider}/{token}: our bridge page, for providers whose browser step we host
(Pocket: the customer's token inside the Pocket app, or a QR code outside it). The adapter
builds the page from the words given here in the order's language and reads its post; the core
stores the payment it opened and confirms it off the request path."""

from __future__ import annotations

import logging

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiohttp import web

from bot.core import BadCallback, BridgeWords, Order, Provider
from bot.formatting import format_money
from bot.web.inbound import to_inbound, to_response
from bot.web.keys import SERVICES_KEY
from bot.web.returns import bad_link, order_page, unknown_link

log = logging.getLogger("bot.web")
routes = web.RouteTableDef()


@routes.route("GET", "/pay/{provider}/{token}")
@routes.route("POST", "/pay/{provider}/{token}")
async def bridge_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    provider, token = request.match_info["provider"], request.match_info["token"]

    def words(order: Order, provider: Provider) -> BridgeWords:
        return bridge_words(services.i18n, order, provider.display_name)

    try:
        found = await services.checkout.open_bridge(
            provider, token, await to_inbound(request), words
        )
    except BadCallback as exc:
        log.warning("bad bridge request for %s: %s", provider, exc)
        return bad_link()
    if found is None:  # an order of ours with nothing left to pay says where it stands
        order = await services.checkout.order_of_link(provider, token)
        return unknown_link() if order is None else order_page(services, order)
    ack, follow_up = found
    services.detach(follow_up)
    return to_response(ack)


def bridge_words(i18n: I18n, order: Order, app: str) -> BridgeWords:
    """The bridge page's sentences in the order's language; `app` names the provider's app."""
    with i18n.context(), i18n.use_locale(order.locale):
        return BridgeWords(
            lang=order.locale,
            title=_("Order #{id}: {amount}").format(
                id=order.id, amount=format_money(order.total, order.locale)
            ),
            opening=_("Opening the payment in {app}…").format(app=app),
            opened=_(
                "Confirm the payment in {app}. We will send you a message in the chat as soon"
                " as it is paid."
            ).format(app=app),
            outside=_(
                "This payment opens in the {app} app. Copy the link and open it in {app}."
            ).format(app=app),
            copy_link=_("Copy the link"),
            copied=_("Copied"),
            refused=_(
                "{app} could not confirm who you are. Close this page and open it again in {app}."
            ).format(app=app),
            unavailable=_(
                "The payment cannot be opened right now. Please try again in a few minutes."
            ),
            scan=_("Scan this code with the {app} app, or open {app} on this phone.").format(
                app=app
            ),
            open_app=_("Open {app}").format(app=app),
            check=_("I have paid"),
        )
