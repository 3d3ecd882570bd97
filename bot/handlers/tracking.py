"""The tracking-note question after Shipped. Asked with ForceReply and answered only by a reply
to it: a reply reaches the bot in a group with privacy mode on, and plain text in a private chat
(an admin halfway through their own delivery questions) is never taken as a note. It ends with
the reply, with No note or with Cancel, whoever presses them. Each open question is kept in the
FSM storage under its own key (the chat and the question's message id, in a destiny apart from
the conversations' default one), so it never shares a slot with the delivery questions."""

from __future__ import annotations

from aiogram import Bot
from aiogram.filters import Filter
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.types import Message

DESTINY = "tracking"


def question_key(bot_id: int, chat_id: int, question_id: int) -> StorageKey:
    return StorageKey(
        bot_id=bot_id, chat_id=chat_id, user_id=chat_id, destiny=f"{DESTINY}:{question_id}"
    )


async def open_question(storage: BaseStorage, key: StorageKey, order_id: int, shown: int) -> None:
    await storage.set_data(key, {"order": order_id, "shown": shown})


async def end_question(storage: BaseStorage, key: StorageKey) -> tuple[int | None, int | None]:
    """The order the question was for and the message whose buttons to update (None, None:
    it was answered or cancelled already); the question ends here either way."""
    data = await storage.get_data(key)
    await storage.set_data(key, {})
    order_id, shown = data.get("order"), data.get("shown")
    return (
        order_id if isinstance(order_id, int) else None,
        shown if isinstance(shown, int) else None,
    )


class TrackingReply(Filter):
    """A text reply (not a command) to one of our open tracking questions; hands the
    handler the question's storage key as `question`."""

    async def __call__(self, message: Message, bot: Bot, fsm_storage: BaseStorage) -> bool | dict:
        replied = message.reply_to_message
        if replied is None or not message.text or message.text.startswith("/"):
            return False
        if replied.from_user is None or replied.from_user.id != bot.id:
            return False
        key = question_key(bot.id, message.chat.id, replied.message_id)
        if not isinstance((await fsm_storage.get_data(key)).get("order"), int):
            return False
        return {"question": key}
