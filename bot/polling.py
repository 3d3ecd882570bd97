"""A second process polling with the same token. Telegram answers the older of two `getUpdates`
with 409 ("terminated by other getUpdates request"), and any `getUpdates` while a webhook is
set with 409 too; aiogram would log it and poll again forever, the two processes taking turns
with the customers' updates.

Here a 409 is first taken for a passing one (a `bot check`, a restart's last poll): the poll is
tried again after each of RETRY_DELAYS. A poll that goes through ends the episode. When every
try met a 409, another process really holds the token: this one says so once (the log, and
each admin once per episode, which ends the process: `run` exits), and stops polling, so one
bot answers. Of two pollers the one hit first, the older, gives up first. A restart policy
that starts the loser again makes the two take turns, each turn telling the admins: the
message says to stop the other one (or, for a webhook, to run every replica with one)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
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

RETRY_DELAYS: tuple[float, ...] = (5.0, 10.0, 15.0)  # seconds before each try after a 409


def is_webhook(description: str) -> bool:
    """The 409 says a webhook is set (not a second poller)."""
    return "webhook" in description.lower()


def conflict_reason(description: str) -> str:
    """What a 409 from getUpdates means, and what to do, in one line for the log and `run`."""
    if is_webhook(description):
        return (
            "a webhook is set for this BOT_TOKEN (another process runs it in webhook mode): this "
            "one stopped polling. Stop the other one, or run every replica with WEBHOOK_URL"
        )
    return (
        "another process polls Telegram with this BOT_TOKEN: this one stopped taking updates. "
        "Run one bot per token (stop the other one), or run replicas with WEBHOOK_URL"
    )


class PollConflict(BaseRequestMiddleware):
    """Watches getUpdates on the bot's session: a 409 is tried again after each of `delays`
    (default RETRY_DELAYS); when the last try meets a 409 too, calls `on_conflict` with
    Telegram's description once and holds the poll until polling is stopped (no flood of
    errors)."""

    def __init__(
        self, on_conflict: Callable[[str], None], delays: Sequence[float] | None = None
    ) -> None:
        self._on_conflict = on_conflict
        self.delays = tuple(RETRY_DELAYS if delays is None else delays)
        self.reason: str | None = None

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[Any],
        bot: Bot,
        method: TelegramMethod[Any],
    ) -> Response[Any]:
        if not isinstance(method, GetUpdates):
            return await make_request(bot, method)
        for delay in self.delays:
            try:
                return await make_request(bot, method)
            except TelegramConflictError as exc:
                log.warning("getUpdates: %s; polling again in %ss", exc.message, delay)
            await asyncio.sleep(delay)
        try:
            return await make_request(bot, method)
        except TelegramConflictError as exc:
            if self.reason is None:
                self.reason = conflict_reason(exc.message)
                log.error("%s (Telegram: %s)", self.reason, exc.message)
                self._on_conflict(exc.message)  # starts a task: the stop cancels this request
            await asyncio.Event().wait()  # until the polling task is cancelled
            raise  # not reached: the wait ends only by cancellation


async def tell_admins(bot: Bot, i18n: I18n, settings: Settings, description: str) -> None:
    """Each admin once, from the process that stopped (it can still send, only not poll);
    `description` is Telegram's, which says whether a webhook or a poller holds the token."""
    with i18n.context(), i18n.use_locale(settings.default_locale):
        if is_webhook(description):
            text = _(
                "This bot stopped taking updates: a webhook is set for its token (another "
                "process runs in webhook mode). Stop that one, or run every replica with "
                "WEBHOOK_URL."
            )
        else:
            text = _(
                "This bot stopped taking updates: another process uses the same bot token "
                "(Telegram answered 409 Conflict). Stop the other one: only one may poll."
            )
    for admin in sorted(settings.admin_ids):
        try:
            await bot.send_message(admin, text)
        except TelegramAPIError as exc:
            log.warning("admin %s not told of the poll conflict: %s", admin, exc)
