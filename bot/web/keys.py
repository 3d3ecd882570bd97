"""Typed application keys (aiohttp's AppKey) instead of string keys."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiogram.utils.i18n import I18n
from aiohttp import web

from bot.cards import CardService
from bot.checkout import CheckoutService
from storage.base import Storage


@dataclass
class WebServices:
    checkout: CheckoutService
    storage: Storage
    bot_username: str
    i18n: I18n
    cards: CardService | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)


SERVICES_KEY = web.AppKey("services", WebServices)
