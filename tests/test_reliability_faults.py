"""Faults, small sizes on a compressed clock (bench/reliability/faults.py runs the full ones):
provider outages, Telegram's 429 storms and outages, database faults."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bench.reliability import faults


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
