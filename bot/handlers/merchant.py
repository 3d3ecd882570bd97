"""The merchant's chat (MERCHANT_CHAT_ID): it receives paid-order messages and may ask for
today's figures (the same as the staff's /today). Nothing else is answered there."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, Filter
from aiogram.types import Message

from bot.config import Settings
from bot.handlers.reports import today


class InMerchantChat(Filter):
    async def __call__(self, message: Message, settings: Settings) -> bool:
        return (
            settings.merchant_chat_id is not None and message.chat.id == settings.merchant_chat_id
        )


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(InMerchantChat())
    router.message.register(today, Command("today"))
    return router
