"""The customer's orders and saved cards: the list, a receipt, "Check payment", cancel, saving
and forgetting a card. Thin handlers: each asks the checkout service once and renders."""

from __future__ import annotations

from contextlib import suppress
from datetime import tzinfo

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import texts
from bot.catalog import Catalog
from bot.config import Settings
from bot.core import PAYABLE, CheckoutError, CheckoutService, Order, OrderState
from bot.core.cards import CardError, CardService
from bot.formatting import format_when, zone_name
from bot.handlers.common import checkout_error, edit
from bot.keyboards import (
    CardCb,
    OrderAction,
    OrderCb,
    OrdersPage,
    cards_keyboard,
    link_keyboard,
    order_keyboard,
    orders_keyboard,
)

ORDERS_PAGE = 8


def mask(card_name: str) -> str:
    """'411111xxxxxx1111' -> '4111 11** **** 1111'."""
    digits = card_name.replace("x", "*").replace("X", "*")
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


async def orders_command(message: Message, checkout: CheckoutService, settings: Settings) -> None:
    text, markup = await render_orders(checkout, message.chat.id, 0, settings.zone)
    await message.answer(text, reply_markup=markup)


async def render_orders(
    checkout: CheckoutService, user_id: int, page: int, zone: tzinfo
) -> tuple[str, object]:
    """The customer's orders, times on the shop's clock, the zone named once in the title."""
    orders = await checkout.orders_of(user_id, limit=ORDERS_PAGE + 1, offset=page * ORDERS_PAGE)
    more = len(orders) > ORDERS_PAGE
    orders = orders[:ORDERS_PAGE]
    if not orders:
        return _("You have no orders yet. /catalog"), None
    title = _("Your orders")
    rows = [f"<b>{title}</b>", _("Times in {zone}").format(zone=zone_name(zone))]
    for order in orders:
        total = texts.money(order.total)
        when = format_when(order.created_at, zone, named=False)
        row = f"#{order.id} · {when} · {total} · {texts.state_name(order.state)}"
        if shipping := texts.fulfilment_status(order):
            row += f" · {shipping}"
        rows.append(row)
    return "\n".join(rows), orders_keyboard(orders, page, more)


async def orders_page(
    query: CallbackQuery, callback_data: OrdersPage, checkout: CheckoutService, settings: Settings
) -> None:
    await query.answer()
    text, markup = await render_orders(
        checkout, query.from_user.id, callback_data.page, settings.zone
    )
    await edit(query, text, markup)


async def own_order(query: CallbackQuery, order_id: int, checkout: CheckoutService) -> Order | None:
    order = await checkout.order_of(query.from_user.id, order_id)
    if order is None:
        await query.answer(_("That order was not found."), show_alert=True)
        return None
    return order


async def order_show(
    query: CallbackQuery,
    callback_data: OrderCb,
    checkout: CheckoutService,
    settings: Settings,
    catalog: Catalog,
) -> None:
    order = await own_order(query, callback_data.id, checkout)
    if order is None:
        return
    if order.state is OrderState.AWAITING_PAYMENT and checkout.pays_in_chat(order):
        await order_pay(query, callback_data, checkout)  # its card is a fresh invoice
        return
    await query.answer()
    paid = order.state in (OrderState.PAID, OrderState.PARTIALLY_REFUNDED, OrderState.REFUNDED)
    provider = texts.provider_name(checkout.display_name(order.provider))
    check_here = checkout.checked_by_hand(order)
    text = (
        texts.receipt(order, provider, settings.zone, catalog)
        if paid
        else texts.order_card(order, catalog, check_here=check_here)
    )
    if isinstance(query.message, Message):
        card = await query.message.answer(text, reply_markup=order_keyboard(order))
        if order.state in PAYABLE:  # this one carries the Pay button now
            await checkout.remember_card(order.id, card.message_id)


async def order_pay(
    query: CallbackQuery, callback_data: OrderCb, checkout: CheckoutService
) -> None:
    """An in-chat order's Pay: the same order's invoice, sent again at the bottom of the chat."""
    try:
        order = await checkout.send_invoice_again(query.from_user.id, callback_data.id)
    except CheckoutError as exc:
        await query.answer(checkout_error(exc.reason), show_alert=True)
        return
    if order is None:
        current = await checkout.order_of(query.from_user.id, callback_data.id)
        state = texts.state_name(current.state) if current else _("That order was not found.")
        await query.answer(state, show_alert=True)
        return
    await query.answer()


async def order_check(
    query: CallbackQuery, callback_data: OrderCb, checkout: CheckoutService, catalog: Catalog
) -> None:
    order = await own_order(query, callback_data.id, checkout)
    if order is None:
        return
    confirmation = await checkout.confirm(order.id, actor="button")
    order = confirmation.order
    if order.state is OrderState.PAID:
        await query.answer(_("Paid. Thank you!"))
    elif not confirmation.answered:
        await query.answer(
            _("The payment service is not answering right now; we will keep checking."),
            show_alert=True,
        )
    elif order.state is OrderState.AWAITING_PAYMENT and checkout.answers_by_callback(order):
        await query.answer(  # the bank's answer comes by itself: nothing to ask before it
            _("We will send you a message in the chat as soon as the payment is confirmed."),
            show_alert=True,
        )
    elif order.state is OrderState.AWAITING_PAYMENT:
        await query.answer(
            _("No payment yet. Press Pay to open the payment page."), show_alert=True
        )
    else:
        await query.answer(texts.state_name(order.state), show_alert=True)
    check_here = checkout.checked_by_hand(order)
    await edit(
        query, texts.order_card(order, catalog, check_here=check_here), order_keyboard(order)
    )


async def order_cancel(
    query: CallbackQuery, callback_data: OrderCb, checkout: CheckoutService, catalog: Catalog
) -> None:
    order = await own_order(query, callback_data.id, checkout)
    if order is None:
        return
    if order.state not in PAYABLE:
        await query.answer(
            _("This order can no longer be cancelled: it is {state}.").format(
                state=texts.state_name(order.state)
            ),
            show_alert=True,
        )
        return
    cancelled = await checkout.cancel(order.id, query.from_user.id)
    current = cancelled or await checkout.order_of(query.from_user.id, order.id) or order
    await query.answer(_("Order cancelled.") if cancelled else texts.state_name(current.state))
    await edit(query, texts.order_card(current, catalog), order_keyboard(current))
    if (
        isinstance(query.message, Message)
        and query.message.invoice
        and current.state not in PAYABLE
    ):
        # a Stars invoice keeps its Pay button whatever its keyboard says: the closed order's
        # invoice goes (the new card above says where the order is); past Telegram's 48 hours
        # it stays, and its Pay is refused at pre-checkout
        with suppress(TelegramBadRequest):
            await query.message.delete()


async def order_save_card(
    query: CallbackQuery,
    callback_data: OrderCb,
    checkout: CheckoutService,
    cards: CardService | None,
) -> None:
    order = await own_order(query, callback_data.id, checkout)
    if order is None:
        return
    if cards is None or order.state not in (OrderState.PAID, OrderState.PARTIALLY_REFUNDED):
        await query.answer(_("Saving a card is not available for this order."), show_alert=True)
        return
    try:
        url = await cards.open_session(order.provider, query.from_user.id)
    except CardError:
        await query.answer(
            _("The payment service is not answering right now. Please try again in a minute."),
            show_alert=True,
        )
        return
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(
            _("Open the page to save your card. We keep only its masked number."),
            reply_markup=link_keyboard(_("Save a card"), url),
        )


async def render_cards(checkout: CheckoutService, user_id: int) -> tuple[str, object]:
    saved = await checkout.saved_cards(user_id)
    if not saved:
        return _("You have no saved cards."), None
    title = _("Your saved cards")
    rows = [f"<b>{title}</b>"] + [f"• {texts.escape(mask(c.card_name))}" for c in saved]
    return "\n".join(rows), cards_keyboard([(c.id, mask(c.card_name)) for c in saved])


async def cards_command(message: Message, checkout: CheckoutService) -> None:
    text, markup = await render_cards(checkout, message.chat.id)
    await message.answer(text, reply_markup=markup)


async def card_forget(
    query: CallbackQuery, callback_data: CardCb, checkout: CheckoutService
) -> None:
    if not await checkout.forget_card(query.from_user.id, callback_data.id):
        await query.answer(_("That saved card is no longer available."), show_alert=True)
        return
    await query.answer(_("Card forgotten."))
    text, markup = await render_cards(checkout, query.from_user.id)
    await edit(query, text, markup)


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(F.chat.type == "private")
    router.message.register(orders_command, Command("orders"))
    router.message.register(cards_command, Command("cards"))
    router.callback_query.register(orders_page, OrdersPage.filter(F.page >= 0))
    router.callback_query.register(order_show, OrderCb.filter(F.action == OrderAction.SHOW))
    router.callback_query.register(order_check, OrderCb.filter(F.action == OrderAction.CHECK))
    router.callback_query.register(order_pay, OrderCb.filter(F.action == OrderAction.PAY))
    router.callback_query.register(order_cancel, OrderCb.filter(F.action == OrderAction.CANCEL))
    router.callback_query.register(
        order_save_card, OrderCb.filter(F.action == OrderAction.SAVE_CARD)
    )
    router.callback_query.register(card_forget, CardCb.filter())
    return router
