"""A second process polling with the same token. Telegram answers the older of two `getUpdates`
with 409 ("terminated by other getUpdates request"), and any `getUpdates` while a webhook is
set with 409 too; aiogram would log it and poll again forever, the two processes taking turns
with the customers' updates. Here the process that gets the 409 says so once and stops
polling, so one bot answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramAPIError, TelegramConflictError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.config import Settings

log = logging.getLogger("bot.polling")


def conflict_reason(description: str) -> str:
    """What a 409 from getUpdates means, and what to do, in one line for the log and `run`."""
    if "webhook" in description.lower():
        return (
            "a webhook is set for this BOT_TOKEN (another process runs it in webhook mode): this "
            "one stopped polling. Stop the other one, or run every replica with WEBHOOK_URL"
        )
    return (
        "another process polls Telegram with this BOT_TOKEN: this one stopped taking updates. "
        "Run one bot per token (stop the other one), or run replicas with WEBHOOK_URL"
    )


class PollConflict(BaseRequestMiddleware):
    """Watches getUpdates on the bot's session: on its first 409 calls `on_conflict` with the
    reason and holds the poll until polling is stopped (no retry, no flood of errors)."""

    def __init__(self, on_conflict: Callable[[str], None]) -> None:
        self._on_conflict = on_conflict
        self.reason: str | None = None

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[Any],
        bot: Bot,
        method: TelegramMethod[Any],
    ) -> Response[Any]:
        try:
            return await make_request(bot, method)
        except TelegramConflictError as exc:
            if not isinstance(method, GetUpdates):
                raise
            if self.reason is None:
                self.reason = conflict_reason(exc.message)
                log.error("%s (Telegram: %s)", self.reason, exc.message)
                self._on_conflict(self.reason)  # starts a task: the stop cancels this request
            await asyncio.Event().wait()  # until the polling task is cancelled
            raise  # not reached: the wait ends only by cancellation


async def tell_admins(bot: Bot, i18n: I18n, settings: Settings) -> None:
    """Each admin once, from the process that stopped (it can still send, only not poll)."""
    with i18n.context(), i18n.use_locale(settings.default_locale):
        text = _(
            "This bot stopped taking updates: another process uses the same bot token "
            "(Telegram answered 409 Conflict). Stop the other one: only one may poll."
        )
    for admin in sorted(settings.admin_ids):
        try:
            await bot.send_message(admin, text)
        except TelegramAPIError as exc:
            log.warning("admin %s not told of the poll conflict: %s", admin, exc)
