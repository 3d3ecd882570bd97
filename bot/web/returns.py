"""GET /return/{provider}/{token}: the customer's browser after paying.

The token is the order's unguessable value, never the bare order id. An unknown token is a 404
and changes nothing; whatever the query claims ("success"), the page shows what `confirm` found.
"""

from __future__ import annotations

import logging
from html import escape

from aiogram.utils.i18n import gettext as _
from aiohttp import web

from bot.core import BadCallback, Order, OrderState
from bot.web.inbound import to_inbound
from bot.web.keys import SERVICES_KEY, WebServices

log = logging.getLogger("bot.web")
S = OrderState
WAS_PAID = frozenset({S.PAID, S.REFUND_PENDING, S.PARTIALLY_REFUNDED, S.REFUNDED})
routes = web.RouteTableDef()

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32em;margin:3em auto;padding:0 1em}}</style>
</head><body><h1>{title}</h1><p>{text}</p>{link}</body></html>"""


def page(title: str, text: str, bot_username: str = "", status: int = 200) -> web.Response:
    link = ""
    if bot_username:
        back = escape(_("Back to the chat"))
        link = f'<p><a href="https://t.me/{escape(bot_username)}">{back}</a></p>'
    body = PAGE.format(title=escape(title), text=escape(text), link=link)
    return web.Response(text=body, status=status, content_type="text/html")


def bad_link() -> web.Response:
    return page("Bad request", "This link is not valid.", status=400)


def unknown_link() -> web.Response:
    return page("Not found", "This payment link is not known.", status=404)


@routes.get("/return/{provider}/{token}")
async def customer_return(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    provider, token = request.match_info["provider"], request.match_info["token"]
    try:
        order = await services.checkout.handle_return(provider, token, await to_inbound(request))
    except BadCallback as exc:
        log.warning("bad return for %s: %s", provider, exc)
        return bad_link()
    if order is None:
        return unknown_link()
    return order_page(services, order)


def order_page(services: WebServices, order: Order) -> web.Response:
    """Where the order stands, in its language: the return page, and a bridge page opened
    again once there is nothing left to pay."""
    with services.i18n.context(), services.i18n.use_locale(order.locale):
        if order.state in WAS_PAID:  # a refund since does not unpay it
            title, text = (
                _("Payment received"),
                _("Thank you! Your order #{id} is paid.").format(id=order.id),
            )
        elif order.state is OrderState.AWAITING_PAYMENT:
            title = _("Checking your payment")
            text = _("We will send you a message in the chat as soon as the payment is confirmed.")
        elif order.state is OrderState.NEEDS_REVIEW:
            title = _("Checking your payment")
            text = _("The shop is checking this payment by hand and will get back to you.")
        else:
            title = _("Payment not completed")
            text = _("Order #{id} was not paid. You can try again from the chat.").format(
                id=order.id
            )
        return page(title, text, services.bot_username)
