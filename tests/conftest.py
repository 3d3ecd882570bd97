"""Shared fixtures: the sandbox emulators on loopback ports, a real SQLite file, the bot itself.

Every test gets fresh emulators and a fresh database, so tests never see each other's chats.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import BotApp, Parts
from bot.config import Settings
from bot.demo import sandbox_settings
from sandbox.botuser import BotUser
from sandbox.payture import PaytureServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer

CUSTOMER = 1001
ADMIN = 42
MERCHANT_CHAT = -1000001


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramServer]:
    server = TelegramServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def redoya() -> AsyncIterator[RedoyaServer]:
    server = RedoyaServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def payture() -> AsyncIterator[PaytureServer]:
    server = PaytureServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def make_settings(
    tmp_path: Path, telegram: TelegramServer, redoya: RedoyaServer, payture: PaytureServer
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path}/bot.db",
            "admin_ids": frozenset({ADMIN}),
            "merchant_chat_id": MERCHANT_CHAT,
            "sweep_every": 3600,  # tests run the sweep themselves
        }
        values.update(overrides)
        return sandbox_settings(telegram, redoya, payture, **values)

    return make


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Parts]:
    async with BotApp(make_settings()) as parts:
        yield parts


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def user(telegram: TelegramServer, http: aiohttp.ClientSession) -> BotUser:
    return BotUser(telegram.url, CUSTOMER, first_name="Ada", session=http)


@pytest.fixture
async def merchant(telegram: TelegramServer, http: aiohttp.ClientSession) -> BotUser:
    return BotUser(telegram.url, MERCHANT_CHAT, session=http)
