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
