"""Typed application keys (aiohttp's AppKey) instead of string keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiogram.utils.i18n import I18n
from aiohttp import web

from bot.core import CheckoutService
from bot.core.cards import CardService
from storage.base import Storage


@dataclass
class WebServices:
    checkout: CheckoutService
    storage: Storage
    bot_username: str
    i18n: I18n
    cards: CardService | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)
    # what else updates need, by name, for /readyz (Redis carts)
    dependencies: dict[str, Callable[[], Awaitable[object]]] = field(default_factory=dict)

    def detach(self, follow_up: Callable[[], Awaitable[None]] | None) -> None:
        """Run a confirm off the request path; shutdown waits for these."""
        if follow_up is None:
            return
        task = asyncio.create_task(follow_up())
        self.background.add(task)
        task.add_done_callback(self.background.discard)


SERVICES_KEY = web.AppKey("services", WebServices)
