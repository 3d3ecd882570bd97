"""POST /telegram/{hash}: aiogram's webhook handler, refusing what is not an update.

aiogram parses the body after answering 200 (in the background, the traceback in the log) or,
for JSON nested past the parser or a body it cannot decode, answers 500. Here the body is read
and validated first: anything that is not an Update is a 400 and reaches no handler.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

log = logging.getLogger("bot.web")


class TelegramWebhook(SimpleRequestHandler):
    async def _handle_request_background(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            raw = bot.session.json_loads(await request.read())
            update = Update.model_validate(raw, context={"bot": bot})
        except (ValueError, TypeError, RecursionError, web.RequestPayloadError) as exc:
            # pydantic's ValidationError and json's errors are ValueErrors
            log.warning("webhook body refused: %s", type(exc).__name__)
            return web.json_response({"error": "not an update"}, status=400)
        task = asyncio.create_task(self._feed(bot, update))
        self._background_feed_update_tasks.add(task)
        task.add_done_callback(self._background_feed_update_tasks.discard)
        return web.json_response({}, dumps=bot.session.json_dumps)

    async def _feed(self, bot: Bot, update: Update) -> None:
        result = await self.dispatcher.feed_update(bot, update, **self.data)
        if isinstance(result, TelegramMethod):  # a handler answered with a method to call
            await self.dispatcher.silent_call_request(bot=bot, result=result)
