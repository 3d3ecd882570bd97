"""POST /telegram/{hash}: aiogram's webhook handler, refusing what is not an update.

aiogram parses the body after answering 200 (in the background, the traceback in the log) or,
for JSON nested past the parser or a body it cannot decode, answers 500. Here the body is read
and validated first: anything that is not an Update is a 400 and reaches no handler.

An update is handled after the answer, in the background, except a payment or its refund:
Telegram reports those once, so it is answered 200 only once its handler has stored it, and
500 otherwise, so that Telegram sends it again (to this replica or another).
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


INT64 = range(-(2**63), 2**63)


def fits_int64(value: object) -> bool:
    """Every integer in a parsed JSON value is a signed 64-bit one (walked without recursion:
    the value may be nested as deep as the parser allows)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and item not in INT64:
            return False
    return True


def carries_money(update: Update) -> bool:
    """A payment made in the chat, or its refund."""
    message = update.message
    return message is not None and bool(message.successful_payment or message.refunded_payment)


class TelegramWebhook(SimpleRequestHandler):
    async def _handle_request_background(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            raw = bot.session.json_loads(await request.read())
            if not fits_int64(raw):  # Telegram's ids fit; a bigger one cannot be stored
                raise ValueError("a number past 64 bits")
            update = Update.model_validate(raw, context={"bot": bot})
        except (ValueError, TypeError, RecursionError, web.RequestPayloadError) as exc:
            # pydantic's ValidationError and json's errors are ValueErrors
            log.warning("webhook body refused: %s", type(exc).__name__)
            return web.json_response({"error": "not an update"}, status=400)
        if carries_money(update):
            try:
                await self._feed(bot, update)
            except Exception:  # logged by the payments' error handler, with its traceback
                return web.json_response({"error": "not stored"}, status=500)
            return web.json_response({}, dumps=bot.session.json_dumps)
        task = asyncio.create_task(self._feed(bot, update))
        self._background_feed_update_tasks.add(task)
        task.add_done_callback(self._background_feed_update_tasks.discard)
        return web.json_response({}, dumps=bot.session.json_dumps)

    async def _feed(self, bot: Bot, update: Update) -> None:
        result = await self.dispatcher.feed_update(bot, update, **self.data)
        if isinstance(result, TelegramMethod):  # a handler answered with a method to call
            await self.dispatcher.silent_call_request(bot=bot, result=result)
