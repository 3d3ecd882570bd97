"""Faults, small sizes on a compressed clock (bench/reliability/faults.py runs the full ones):
provider outages, Telegram's 429 storms and outages, database faults."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.reliability import faults, faults_db
from bot.app import BotApp
from bot.notify import Notifier
from sandbox.telegram import TelegramServer
from storage.base import NewOutbox
from storage.postgres import PostgresStorage
from tests.conftest import TEST_POSTGRES_URL, both_databases


@pytest.fixture
def servers(telegram, redoya, payture, ktwidget, pocket, erp) -> dict[str, Any]:
    return {
        "telegram": telegram,
        "redoya": redoya,
        "payture": payture,
        "ktwidget": ktwidget,
        "pocket": pocket,
        "erp": erp,
    }


@pytest.mark.parametrize("timeout", [False, True], ids=["503", "timeout"])
async def test_orders_paid_during_a_provider_outage_end_paid_within_the_schedule(
    servers: dict[str, Any], database_url: str, timeout: bool
) -> None:
    rows = await faults.provider_outage(
        servers,
        database_url,
        per_provider=1 if timeout else 2,
        outage=timedelta(minutes=10),
        timeout=timeout,
    )
    assert {row.scenario.split()[0] for row in rows} == {"redoya", "payture", "halkbank", "pocket"}
    for row in rows:
        assert row.lost == 0, row
        assert "EXCEEDED" not in row.note, row
        assert "while it was down" not in row.note, row
    (pocket,) = [row for row in rows if row.scenario.startswith("pocket")]
    assert "webhooks answered [200]" in pocket.note, pocket  # they reached us, taken
    assert " 0 of them for a token" not in pocket.note, pocket  # its token endpoint was down too


async def test_ktwidget_retries_reach_a_bot_that_was_down(
    servers: dict[str, Any], database_url: str
) -> None:
    servers["ktwidget"].retry_scale = 0.0005
    row = await faults.ktwidget_outage(servers, database_url, orders=2, down=0.5)
    assert row.lost == 0, row


async def test_telegram_429_storm_and_outage_lose_nothing_and_send_nothing_twice(
    servers: dict[str, Any], database_url: str
) -> None:
    row = await faults.telegram_storm(servers, database_url, orders=2, storm=1.5, outage=0.5)
    assert (row.lost, row.doubled) == (0, 0), row
    assert row.note.startswith("0 calls"), row


@both_databases
async def test_a_429_is_no_attempt_so_a_long_storm_cannot_use_the_attempts_up(
    make_settings: Any, telegram: TelegramServer
) -> None:
    """Telegram said when to come back: a 429 is no failed send. Counted as one, a storm of
    MAX_ATTEMPTS refusals followed by a single 5xx gave the message up (lost)."""
    async with BotApp(make_settings(), background=False) as app:
        await app.storage.enqueue(None, NewOutbox("card_saved", 7101, {"card": "x"}))
        telegram.fail_next("sendMessage", retry_after=1)
        notifier = Notifier(app.bot, app.storage, app.notifier.render, per_chat_gap=0)
        assert await notifier.flush() is False
        (row,) = await app.storage.due_outbox(datetime.now(UTC) + timedelta(seconds=2))
        assert row.attempts == 0
        assert row.next_attempt_at >= datetime.now(UTC) + timedelta(seconds=0.5)


async def test_sqlite_locked_by_another_process_refuses_callbacks_and_loses_nothing(
    servers: dict[str, Any], tmp_path: Path
) -> None:
    servers["ktwidget"].retry_scale = 0.01
    row = await faults_db.sqlite_fault(servers, str(tmp_path), fault="locked", orders=1)
    assert (row.lost, row.doubled) == (0, 0), row
    assert "0 answered not ok" not in row.fault, row


async def test_sqlite_disk_full_refuses_callbacks_and_writes_nothing_half(
    servers: dict[str, Any], small_disk: Path
) -> None:
    servers["ktwidget"].retry_scale = 0.01
    row = await faults_db.sqlite_fault(servers, str(small_disk), fault="full", orders=2)
    assert (row.lost, row.doubled) == (0, 0), row
    assert "0 answered not ok" not in row.fault, row


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (the suite runs as root here), unmounted after."""
    with faults_db.small_disk(str(tmp_path / "disk")) as path:
        yield Path(path)


@pytest.mark.alone
async def test_postgres_restarted_mid_run_readyz_503_then_reconnects_and_loses_nothing(
    servers: dict[str, Any], restarted_schema: str
) -> None:
    """Restarts the machine's cluster (the other tests' too: it takes about a second)."""
    servers["ktwidget"].retry_scale = 0.01
    row = await faults_db.postgres_restart(servers, restarted_schema, orders=2)
    assert (row.lost, row.doubled) == (0, 0), row
    assert "answers [200, 503] in" in row.note, row  # never a 500 with a traceback


@pytest.fixture
async def restarted_schema() -> AsyncIterator[str]:
    """A fresh schema, dropped after over a new connection (the restart closed the old one)."""
    schema = f"t_{secrets.token_hex(6)}"
    server = await asyncpg.connect(TEST_POSTGRES_URL)
    await server.execute(f"CREATE SCHEMA {schema}")
    await server.close()
    try:
        yield f"{TEST_POSTGRES_URL}{'&' if '?' in TEST_POSTGRES_URL else '?'}search_path={schema}"
    finally:
        server = await asyncpg.connect(TEST_POSTGRES_URL)
        await server.execute(f"DROP SCHEMA {schema} CASCADE")
        await server.close()


async def test_readyz_ping_says_not_ready_when_postgres_drops_the_connections(
    postgres_url: str,
) -> None:
    """Seen in the restart: a ping on a connection the server just closed raised asyncpg's
    InternalClientError ("cannot switch to state ..."), and /readyz answered 500 with a
    traceback instead of 503. Here the server ends our backends (pg_terminate_backend) while
    pings run: each ping answers True or False, never raises."""
    storage = PostgresStorage(postgres_url)
    await storage.open()
    admin = await asyncpg.connect(TEST_POSTGRES_URL)
    raised: list[BaseException] = []
    stop = asyncio.Event()

    async def pinger() -> None:
        while not stop.is_set():
            try:
                await storage.ping()
            except Exception as exc:
                raised.append(exc)
            await asyncio.sleep(0.005)

    pingers = [asyncio.create_task(pinger()) for _ in range(8)]
    try:
        for _ in range(30):
            for pid in own_backends(storage):  # only ours: other tests share the server
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            await asyncio.sleep(0.03)
    finally:
        stop.set()
        await asyncio.gather(*pingers)
        await admin.close()
        await storage.close()
    assert raised == [], {type(e).__name__ for e in raised}


def own_backends(storage: PostgresStorage) -> list[int]:
    """The server pids of the storage's pooled connections (asyncpg's pool holds them)."""
    holders = storage._pool._holders  # type: ignore[union-attr]
    return [h._con.get_server_pid() for h in holders if h._con is not None]
