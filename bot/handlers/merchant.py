"""The merchant's chat (MERCHANT_CHAT_ID): it receives paid-order messages and may ask for
today's figures. Nothing else is answered there."""

from __future__ import annotations

from datetime import timedelta

from aiogram import Router
from aiogram.filters import Command, Filter
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot import texts
from bot.checkout import CheckoutService
from bot.config import Settings
from providers.base import Money
from storage.base import Storage


class InMerchantChat(Filter):
    async def __call__(self, message: Message, settings: Settings) -> bool:
        return (
            settings.merchant_chat_id is not None and message.chat.id == settings.merchant_chat_id
        )


async def today(message: Message, storage: Storage, checkout: CheckoutService) -> None:
    figures = await storage.figures(checkout.clock() - timedelta(days=1))
    paid = [texts.money(Money(v, c)) for c, v in sorted(figures.paid_by_currency.items())]
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
