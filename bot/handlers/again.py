""" "Try again" on a failed, cancelled or expired order: the same items go back into the cart
at today's catalog prices, and the customer goes on as from the cart's Checkout button (so
every step of a checkout runs, the delivery questions included), told which prices changed
and which products are gone."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import cart as carts
from bot import texts
from bot.catalog import Catalog
from bot.core import CheckoutService, Order
from bot.handlers.delivery import begin
from bot.handlers.shop import cart_checkout
from bot.keyboards import AGAIN_STATES, OrderAction, OrderCb


def summary(order: Order, refill: carts.Refill, catalog: Catalog) -> str:
    """What changed since the order, every product named in the customer's language."""
    rows = [_("Order #{id} again, at today's prices.").format(id=order.id)]
    rows += [
        _("{name}: the price changed, {old} → {new}").format(
            name=texts.escape(texts.product_name(product)),
            old=texts.money(old),
            new=texts.money(new),
        )
        for product, old, new in refill.changed
    ]
    if refill.gone:
        names = ", ".join(texts.escape(texts.item_name(item, catalog)) for item in refill.gone)
        rows.append(_("No longer sold: {names}").format(names=names))
    return "\n".join(rows)


async def order_again(
    query: CallbackQuery,
    callback_data: OrderCb,
    checkout: CheckoutService,
    catalog: Catalog,
    state: FSMContext,
) -> None:
    order = await checkout.order_of(query.from_user.id, callback_data.id)
    if order is None:
        await query.answer(_("That order was not found."), show_alert=True)
        return
    if order.state not in AGAIN_STATES:
        await query.answer(
            _(
                "Order #{id} is {state}: only a failed, cancelled or expired order is tried again."
            ).format(id=order.id, state=texts.state_name(order.state)),
            show_alert=True,
        )
        return
    refill = carts.refill(order, catalog)
    if not refill.cart:
        await query.answer(
            _("None of the products of order #{id} is sold any more.").format(id=order.id),
            show_alert=True,
        )
        return
    await state.update_data(cart=refill.cart)
    if isinstance(query.message, Message):
        await query.message.answer(summary(order, refill, catalog))
    if carts.needs_delivery(carts.lines(refill.cart, catalog)):
        await begin(
            query, "", catalog, state, checkout
        )  # the details asked (the last ones offered)
    else:
        await cart_checkout(query, catalog, state, checkout)


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.callback_query.register(order_again, OrderCb.filter(F.action == OrderAction.AGAIN))
    return router
