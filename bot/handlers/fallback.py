"""Last router: whatever no other handler took. A clear answer, nothing changed."""

from __future__ import annotations

import contextlib
import logging

from aiogram import F, Router
from aiogram.types import CallbackQuery, ErrorEvent, Message
from aiogram.utils.i18n import gettext as _

log = logging.getLogger("bot.handlers")


async def stale_button(query: CallbackQuery) -> None:
    """Buttons of a removed product, an old keyboard, or a payload a client edited."""
    await query.answer(
        _("This button is out of date. Please use /catalog or /orders."), show_alert=True
    )


async def unknown_command(message: Message) -> None:
    await message.answer(_("I do not know that command. /help lists what I can do."))


async def anything_else(message: Message) -> None:
    await message.answer(_("Please use the buttons or a command; /help lists them."))


async def on_error(event: ErrorEvent) -> bool:
    """Any exception in a handler: logged with its traceback, the user gets a plain apology
    (and their button stops spinning), nothing else changes."""
    log.exception("update %s failed", event.update.update_id, exc_info=event.exception)
    with contextlib.suppress(Exception):
        if event.update.callback_query:
            await event.update.callback_query.answer(
                _("Something went wrong on our side. Please try again."), show_alert=True
            )
        elif event.update.message:
            await event.update.message.answer(
                _("Something went wrong on our side. Please try again.")
            )
    return True


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(F.chat.type == "private")  # never chatter in the merchant's group
    router.callback_query.register(stale_button)
    router.message.register(unknown_command, F.text.startswith("/"))
    router.message.register(anything_else)
    return router
