"""Shared fixtures: the sandbox emulators on loopback ports, a real database, the bot itself.

Each emulator starts once per session (on first use) and is reset before and after every test;
every test gets a fresh database (a SQLite file, or its own schema in the machine's
PostgreSQL), so tests never see each other's chats.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.app import BotApp, Parts
from bot.config import Settings
from bot.demo import sandbox_settings
from sandbox import registry
from sandbox.base import FakeServer
from sandbox.botuser import BotUser
from sandbox.erp import ErpServer
from sandbox.ktwidget import KtwidgetServer
from sandbox.payture import PaytureServer
from sandbox.pocket import PocketServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage.postgres import describe
from tests.browser import browser, chromium  # noqa: F401 - fixtures for every test module
from tests.flows import fast

CUSTOMER = 1001
ADMIN = 42
MERCHANT_CHAT = -1000001

# The PostgreSQL every machine of this project runs (trust auth on loopback).
TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


SUITE_LOCK = Path(tempfile.gettempdir()) / "checkout-bot-tests.lock"


@pytest.fixture(autouse=True)
def one_alone(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests share the machine's PostgreSQL across workers: each holds the suite lock shared,
    and one marked `alone` (it restarts the cluster) holds it exclusively, so no other test
    runs meanwhile in any worker."""
    alone = request.node.get_closest_marker("alone") is not None
    with SUITE_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A URL to a fresh schema of the test database, dropped after the test."""
    schema = f"t_{secrets.token_hex(6)}"
    try:
        server = await asyncpg.connect(TEST_POSTGRES_URL)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {describe(TEST_POSTGRES_URL)} does not answer ({exc}); start it with "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    await server.execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in TEST_POSTGRES_URL else "?"
    try:
        yield f"{TEST_POSTGRES_URL}{joiner}search_path={schema}"
    finally:
        await server.execute(f"DROP SCHEMA {schema} CASCADE")
        await server.close()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite unless TEST_DATABASE=postgres; `both_databases` runs a test on each."""
    if getattr(request, "param", os.environ.get("TEST_DATABASE", "sqlite")) == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path}/bot.db"


both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


class EmulatorPool:
    """The session's emulators, by registry name: each started on first use, stopped at the end."""

    def __init__(self) -> None:
        self.servers: dict[str, FakeServer] = {}

    async def get(self, name: str) -> FakeServer:
        if name not in self.servers:
            server = registry.server_class(name)()
            try:
                await server.start()
            except RuntimeError as exc:
                pytest.fail(str(exc))
            self.servers[name] = server
        return self.servers[name]

    async def stop(self) -> None:
        await registry.stop_all(self.servers)
        self.servers.clear()


@pytest.fixture(scope="session")
async def emulator_pool() -> AsyncIterator[EmulatorPool]:
    pool = EmulatorPool()
    yield pool
    await pool.stop()


def _emulator_fixture(name: str) -> Any:
    """The `name` fixture: the session's server of that emulator, reset before the test and
    after it (so nothing a test left in flight reaches the next one)."""

    async def fixture(emulator_pool: EmulatorPool) -> AsyncIterator[FakeServer]:
        server = await emulator_pool.get(name)
        server.reset()
        yield server
        server.reset()

    fixture.__name__ = fixture.__qualname__ = name
    return pytest.fixture(name=name)(fixture)


# One function-scoped fixture per registry entry: `telegram`, `redoya`, `payture`, ...
for _name in registry.emulator_names():
    globals()[_name] = _emulator_fixture(_name)


@pytest.fixture
def make_settings(
    database_url: str,
    telegram: TelegramServer,
    redoya: RedoyaServer,
    payture: PaytureServer,
    ktwidget: KtwidgetServer,
    pocket: PocketServer,
    erp: ErpServer,
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "admin_ids": frozenset({ADMIN}),
            "merchant_chat_id": MERCHANT_CHAT,
            "sweep_every": 3600,  # tests run the sweep themselves
        }
        values.update(overrides)
        return sandbox_settings(telegram, redoya, payture, ktwidget, pocket, erp, **values)

    return make


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Parts]:
    async with BotApp(make_settings()) as parts:
        yield parts


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test when anything logged an exception (a handler's, aiohttp's, the core's)."""
    caplog.set_level(logging.WARNING)
    yield
    failed = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not failed, [f"{r.name}: {r.getMessage()}" for r in failed]


@pytest.fixture
def no_flood_gaps(request: pytest.FixtureRequest, no_tracebacks: None) -> None:
    """The flood limits are test_notify's business: in a module that uses this, messages go
    out at once (and nothing may log a traceback)."""
    if "app" in request.fixturenames:
        fast(request.getfixturevalue("app"))


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
