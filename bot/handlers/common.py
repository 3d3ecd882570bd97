"""What the customer's routers share."""

from __future__ import annotations

import logging

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, Message

log = logging.getLogger("bot.handlers")


async def edit(query: CallbackQuery, text: str, markup: object = None) -> None:
    """Edit the message the button was on; a photo card or an unchanged text gets a new
    message or nothing, never an error for the customer."""
    message = query.message
    if not isinstance(message, Message):
        return
    try:
        if message.photo:
            await message.answer(text, reply_markup=markup)  # type: ignore[arg-type]
        else:
            await message.edit_text(text, reply_markup=markup)  # type: ignore[arg-type]
    except TelegramBadRequest as exc:
        if "not modified" not in str(exc):
            log.warning("edit failed: %s", exc)
