"""/export's CSV as a Turkish or Russian Excel opens it: ';' between cells and decimal commas,
by EXPORT_CSV_DIALECT or, unset, by the merchant's language (English keeps ',' and '.')."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot.app import BotApp
from bot.config import Settings
from bot.export import write_csv
from bot.wiring import ConfigError, load_settings
from money import Money
from sandbox.botuser import BotUser
from sandbox.telegram import TelegramServer
from storage.base import NewOrder, Order, OrderItem, OrderState
from tests.conftest import ADMIN, CUSTOMER


@pytest.mark.parametrize(
    ("lines", "semicolons"),
    [
        ({}, False),
        ({"MERCHANT_LOCALE": "tr"}, True),
        ({"DEFAULT_LOCALE": "ru"}, True),
        ({"DEFAULT_LOCALE": "ru", "MERCHANT_LOCALE": "en"}, False),
        ({"MERCHANT_LOCALE": "tr", "EXPORT_CSV_DIALECT": "comma"}, False),
        ({"EXPORT_CSV_DIALECT": " Semicolon "}, True),
        ({"EXPORT_CSV_DIALECT": ""}, False),  # empty: unset
    ],
)
def test_the_dialect_is_set_or_follows_the_merchants_language(
    lines: dict[str, str], semicolons: bool
) -> None:
    settings = load_settings({"BOT_TOKEN": "1:x", **lines}, providers={})
    assert settings.csv_semicolons is semicolons


def test_an_unknown_dialect_is_named() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"BOT_TOKEN": "1:x", "EXPORT_CSV_DIALECT": "tab"}, providers={})
    assert refused.value.problems[0].startswith("EXPORT_CSV_DIALECT: ")


async def test_semicolons_and_decimal_commas_in_every_amount() -> None:
    when = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    order = Order(
        1, 7, 7, "redoya", Money(17050, "TRY"), OrderState.CREATED, "t", "tr", "", when, when,
        items=(OrderItem("cezve", "Cezve; copper", 2, 8525),),
    )  # fmt: skip

    async def batches() -> AsyncIterator[list[Order]]:
        yield [order]

    out = io.StringIO()
    assert await write_csv(batches(), out, ZoneInfo("UTC"), semicolons=True) == 1
    header, row = list(csv.reader(io.StringIO(out.getvalue()), delimiter=";"))
    cells = dict(zip(header, row, strict=True))
    assert (cells["total"], cells["refunded"]) == ("170,50", "0,00")
    assert cells["items"] == "Cezve; copper x2 @ 85,25"
    assert out.getvalue().splitlines()[0].startswith("order_id;created_at;")


async def test_export_in_a_turkish_shop_opens_in_columns(
    make_settings: Callable[..., Settings], telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    async with BotApp(make_settings(merchant_locale="tr")) as app:
        await app.storage.create_order(
            NewOrder(
                user_id=CUSTOMER,
                chat_id=CUSTOMER,
                provider="redoya",
                total=Money(17000, "TRY"),
                token="tok",
                items=[OrderItem("cezve", "Cezve", 2, 8500)],
            )
        )
        admin = BotUser(telegram.url, ADMIN, session=http)
        await admin.send("/export 1")
        sent = await admin.wait_message(predicate=lambda m: "document" in m)
        text = telegram.files[sent["document"]["file_id"]].decode("utf-8-sig")
        [row] = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=";"))
        assert (row["currency"], row["total"]) == ("TRY", "170,00")
