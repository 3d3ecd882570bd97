"""Who may do what: ADMIN_IDS do everything; SUPPORT_IDS look orders up and export them, but
never refund, resolve a review or change an order. Checked once, on each staff router."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import TelegramObject

from bot.config import Settings


def _user_id(event: TelegramObject) -> int | None:
    user = getattr(event, "from_user", None)
    return user.id if user is not None else None


class IsAdmin(Filter):
    async def __call__(self, event: TelegramObject, settings: Settings) -> bool:
        return _user_id(event) in settings.admin_ids


class IsStaff(Filter):
    """An admin or a support person."""

    async def __call__(self, event: TelegramObject, settings: Settings) -> bool:
        user_id = _user_id(event)
        return user_id in settings.admin_ids or user_id in settings.support_ids


def _chat_id(event: TelegramObject) -> int | None:
    chat = getattr(event, "chat", None) or getattr(getattr(event, "message", None), "chat", None)
    return chat.id if chat is not None else None


class CanFulfil(Filter):
    """Anyone in the merchant's own chat, or an admin in private, may act on an order's
    fulfilment; support people may not change orders, not even in the merchant chat."""

    async def __call__(self, event: TelegramObject, settings: Settings) -> bool:
        chat_id, user_id = _chat_id(event), _user_id(event)
        if user_id in settings.support_ids and user_id not in settings.admin_ids:
            return False
        if settings.merchant_chat_id is not None and chat_id == settings.merchant_chat_id:
            return True
        return chat_id == user_id and user_id in settings.admin_ids


def actor_of(event: TelegramObject, settings: Settings) -> str:
    """Who acted, for the audit: "merchant:<id>" in the merchant chat, else "admin:<id>"."""
    user_id = _user_id(event)
    in_merchant_chat = settings.merchant_chat_id is not None and (
        _chat_id(event) == settings.merchant_chat_id
    )
    return f"{'merchant' if in_merchant_chat else 'admin'}:{user_id}"
