"""The outbox sender as several replicas run it: one database, each message sent once."""

from __future__ import annotations

import asyncio

from bot.app import OutboxRenderer, Parts
from bot.notify import Notifier
from sandbox.telegram import TelegramServer
from storage import storage_from_url
from storage.base import NewOutbox
from tests.conftest import both_databases


@both_databases
async def test_two_replicas_flushing_one_outbox_send_each_message_once(
    app: Parts, database_url: str, telegram: TelegramServer
) -> None:
    chats = list(range(5001, 5013))
    for chat in chats:
        await app.storage.enqueue(None, NewOutbox("card_saved", chat, {"card": f"4111…{chat}"}))
    other_storage = storage_from_url(database_url)
    await other_storage.open()
    try:
        renderer = OutboxRenderer(other_storage, app.i18n, app.providers, "en", "en")
        replicas = [app.notifier, Notifier(app.bot, other_storage, renderer)]
        await asyncio.gather(*(replica.flush() for replica in replicas for _ in range(3)))
    finally:
        await other_storage.close()
    sent = [params["chat_id"] for method, params in telegram.calls if method == "sendmessage"]
    assert sorted(int(chat) for chat in sent) == chats
