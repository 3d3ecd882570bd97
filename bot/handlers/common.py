"""What the customer's routers share."""

from __future__ import annotations

import logging

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, Message, User
from aiogram.utils.i18n import gettext as _

from bot.core import Buyer

log = logging.getLogger("bot.handlers")


async def edit(query: CallbackQuery, text: str, markup: object = None) -> None:
    """Edit the message the button was on; a photo card or an invoice gets a new message, an
    unchanged text nothing, never an error for the customer."""
    message = query.message
    if not isinstance(message, Message):
        return
    try:
        if message.photo or message.invoice:
            await message.answer(text, reply_markup=markup)  # type: ignore[arg-type]
        else:
            await message.edit_text(text, reply_markup=markup)  # type: ignore[arg-type]
    except TelegramBadRequest as exc:
        if "not modified" not in str(exc):
            log.warning("edit failed: %s", exc)


def buyer_of(user: User) -> Buyer:
    """The customer as Telegram names them, recorded with every order for the merchant."""
    name = " ".join(part for part in (user.first_name, user.last_name) if part)
    return Buyer(name=name, username=user.username or "")


def checkout_error(reason: str, refused: tuple[tuple[str, str], ...] = ()) -> str:
    if reason == "lines_refused" and refused:
        return refused_lines(refused)
    messages = {
        "empty_cart": _("Your cart is empty."),
        "mixed_currencies": _("A cart holds one currency. Check out or clear the cart first."),
        "amount_not_accepted": _(
            "This payment method cannot take that amount. Please change the cart."
        ),
        "provider_unavailable": _(
            "The payment service is not answering right now. Please try again in a minute."
        ),
        "provider_rejected": _(
            "The payment service refused this order. Please choose another way to pay or try later."
        ),
        "unknown_provider": _("This payment method is no longer available."),
        "card_gone": _("That saved card is no longer available."),
        "order_closed": _("This order can no longer be paid. Please order again from the catalog."),
        "delivery_needed": _(
            "This order needs delivery details: please press Checkout (or Buy now) again."
        ),
    }
    return messages.get(reason, _("That did not work. Please try again."))


def refused_lines(refused: tuple[tuple[str, str], ...]) -> str:
    """The shop's stock refused some products: which, and why, short enough for an alert."""
    why = {
        "gone": _("no longer sold"),
        "inactive": _("not sold now"),
        "sold_out": _("sold out"),
        "price": _("its price changed"),
    }
    unknown = _("not available")
    named = "; ".join(f"{title[:40]}: {why.get(reason, unknown)}" for title, reason in refused[:3])
    more = "…" if len(refused) > 3 else ""
    return _("The shop cannot sell this order now ({lines}{more}). Please change the cart.").format(
        lines=named, more=more
    )
