"""Faults, small sizes on a compressed clock (bench/reliability/faults.py runs the full ones):
provider outages, Telegram's 429 storms and outages, database faults."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.reliability import faults
from bot.app import BotApp
from bot.notify import Notifier
from sandbox.telegram import TelegramServer
from storage.base import NewOutbox
from tests.conftest import both_databases


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
        servers, database_url, per_provider=2, outage=timedelta(minutes=10), timeout=timeout
    )
    for row in rows:
        assert row.lost == 0, row
        assert "EXCEEDED" not in row.note, row


async def test_ktwidget_retries_reach_a_bot_that_was_down(
    servers: dict[str, Any], database_url: str
) -> None:
    servers["ktwidget"].retry_scale = 0.0005
    row = await faults.ktwidget_outage(servers, database_url, orders=2, down=0.5)
    assert row.lost == 0, row


async def test_telegram_429_storm_and_outage_lose_nothing_and_send_nothing_twice(
    servers: dict[str, Any], database_url: str
) -> None:
    row = await faults.telegram_storm(servers, database_url, orders=3, storm=2.0, outage=1.0)
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
    row = await faults.sqlite_fault(servers, str(tmp_path), fault="locked", orders=1)
    assert (row.lost, row.doubled) == (0, 0), row
    assert "0 answered not ok" not in row.fault, row


async def test_sqlite_disk_full_refuses_callbacks_and_writes_nothing_half(
    servers: dict[str, Any], small_disk: Path
) -> None:
    servers["ktwidget"].retry_scale = 0.01
    row = await faults.sqlite_fault(servers, str(small_disk), fault="full", orders=2)
    assert (row.lost, row.doubled) == (0, 0), row
    assert "0 answered not ok" not in row.fault, row


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (the suite runs as root here), unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
