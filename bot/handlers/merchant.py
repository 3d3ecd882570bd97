"""The merchant's chat (MERCHANT_CHAT_ID): it receives paid-order messages and may ask for
today's figures. Nothing else is answered there."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, Filter
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot import texts
from bot.config import Settings
from bot.core import CheckoutService


class InMerchantChat(Filter):
    async def __call__(self, message: Message, settings: Settings) -> bool:
        return (
            settings.merchant_chat_id is not None and message.chat.id == settings.merchant_chat_id
        )


async def today(message: Message, checkout: CheckoutService) -> None:
    figures = await checkout.figures(1)
    paid = [texts.money(m) for m in figures.paid]
    count = figures.orders_by_state.get("paid", 0)
    if not count:
        await message.answer(_("No paid orders in the last 24 hours yet."))
        return
    await message.answer(
        _("Paid orders in the last 24 hours: {count}, {amounts}").format(
            count=count, amounts=", ".join(paid)
        )
    )


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(InMerchantChat())
    router.message.register(today, Command("today"))
    return router
