"""The staff's reports through the chat: /stats and /today counting one way on paid, partly
refunded and refunded orders in two currencies through two providers; the chart as a PNG;
/export's CSV read back row by row; a bad argument answered; the daily report sent once at its
local time, however many sweeps (replicas, restarts) ask."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import aiohttp

from bot.app import BotApp, Parts
from bot.core import CartLine, Order
from bot.export import safe, write_csv
from bot.notify import Notifier
from bot.reconcile import Reconciler
from money import Money
from sandbox.botuser import BotUser
from sandbox.payture import PaytureServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage.base import Buyer, Delivery, NewOrder, OrderItem, OrderState
from tests.conftest import ADMIN, CUSTOMER, MERCHANT_CHAT, both_databases
from tests.flows import browse, eventually

S = OrderState
SUPPORT = 77
ZONE = "Asia/Ashgabat"  # +05:00 all year, for decades
PNG = b"\x89PNG\r\n\x1a\n"


async def paid(app: Parts, http, server, line: CartLine) -> int:
    """An order placed and paid on the provider's page, confirmed by the customer's return."""
    order = await app.checkout.place_order(
        user_id=CUSTOMER, chat_id=CUSTOMER, lines=[line], provider_name=server.name
    )
    body = {"url": order.pay_url, "outcome": "paid"}
    async with http.post(f"{server.url}/sandbox/pay", json=body) as answer:
        await browse(http, (await answer.json())["redirect"])

    async def is_paid() -> bool:
        return (await app.checkout.order(order.id)).state is S.PAID  # type: ignore[union-attr]

    await eventually(is_paid)
    return order.id


CEZVE = CartLine("cezve", "Cezve, copper", 1, Money(8500, "TRY"))
COFFEE = CartLine("turkish-coffee", "Turkish coffee 250 g", 1, Money(15000, "TRY"))
IVAN_CHAI = CartLine("ivan-chai", "Ivan-chai 100 g", 1, Money(45000, "RUB"))


async def a_mix(app: Parts, redoya: RedoyaServer, payture: PaytureServer, http) -> int:
    """TRY through Redoya: one paid, one partly refunded by hand (no refund API); RUB through
    Payture: one refunded through its API; and one order left unpaid."""
    await paid(app, http, redoya, CEZVE)
    partly = await paid(app, http, redoya, COFFEE)
    refunded = await paid(app, http, payture, IVAN_CHAI)
    await app.checkout.place_order(
        user_id=CUSTOMER, chat_id=CUSTOMER, lines=[CEZVE], provider_name="redoya"
    )
    await app.checkout.record_manual_refund(
        partly, Money(3500, "TRY"), actor="admin:42", request="r1"
    )
    await app.checkout.refund(refunded, None, actor="admin:42", request="r2")
    return partly


def staff(telegram: TelegramServer, http: aiohttp.ClientSession, who: int = ADMIN) -> BotUser:
    return BotUser(telegram.url, who, session=http)


FIGURES = [
    "Orders created: 4 (awaiting payment: 1 · paid: 1 · refunded: 1 · partially refunded: 1)",
    "RUB: paid: ₽450.00 (orders: 1) · refunded: ₽450.00 · net: ₽0.00",
    "  • Bank card (Payture): paid: ₽450.00 (orders: 1) · refunded: ₽450.00 · net: ₽0.00",
    "TRY: paid: ₺235.00 (orders: 2) · refunded: ₺35.00 · net: ₺200.00",
    "  • Redoya: paid: ₺235.00 (orders: 2) · refunded: ₺35.00 · net: ₺200.00",
]


@both_databases
async def test_stats_and_today_count_the_same_way(
    make_settings,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    payture: PaytureServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    async with BotApp(make_settings(support_ids=frozenset({SUPPORT}), timezone=ZONE)) as app:
        await a_mix(app, redoya, payture, http)
        admin, support = staff(telegram, http), staff(telegram, http, SUPPORT)
        await admin.send("/stats 7")
        stats = (await admin.wait_message("Orders of the last 7 days"))["text"].split("\n")
        assert stats[1:] == FIGURES
        await support.send("/today")  # support reads the figures too
        today = (await support.wait_message("Today, "))["text"].split("\n")
        assert f"({ZONE})" in today[0]
        assert today[1:] == FIGURES
        await merchant.send("/today")
        assert (await merchant.wait_message("Today, "))["text"].split("\n")[1:] == FIGURES
        await user.send("/stats")  # a customer is no staff
        await user.wait_message("I do not know that command")


async def test_a_bad_argument_gets_the_usage(app: Parts, telegram: TelegramServer, http) -> None:
    admin = staff(telegram, http)
    for args in ("abc", "0", "-3", "7 8", "１", "400 chart", "99999999"):
        await admin.send(f"/stats {args}")
        await admin.wait_message("Usage: /stats [days] [chart], days from 1 to 36600")
    await admin.send("/export soon")
    await admin.wait_message("Usage: /export [days]")


def photo_of(telegram: TelegramServer, message: dict) -> bytes:
    return telegram.files[message["photo"][-1]["file_id"]]


async def test_the_chart_is_a_png(
    app: Parts, user: BotUser, redoya: RedoyaServer, telegram: TelegramServer, http
) -> None:
    admin = staff(telegram, http)
    await admin.send("/stats 3 chart")
    await admin.wait_message("Nothing was paid in the last 3 days")
    await paid(app, http, redoya, CEZVE)
    await admin.send("/stats 30 chart")
    chart = await admin.wait_message(predicate=lambda m: "photo" in m)
    assert chart["caption"] == "Paid per day, the last 30 days (UTC)"
    assert photo_of(telegram, chart).startswith(PNG)
    await admin.press(text="Chart")
    pressed = await admin.wait_message(predicate=lambda m: "photo" in m)
    assert pressed["message_id"] != chart["message_id"]
    assert photo_of(telegram, pressed).startswith(PNG)


def test_starting_the_bot_never_imports_matplotlib() -> None:
    found = subprocess.run(
        [sys.executable, "-c", "import sys, bot.app; print('matplotlib' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "False"


async def test_export_is_a_csv_read_back_row_by_row(
    make_settings,
    user: BotUser,
    redoya: RedoyaServer,
    payture: PaytureServer,
    telegram: TelegramServer,
    http,
) -> None:
    async with BotApp(make_settings(timezone=ZONE)) as app:
        partly = await a_mix(app, redoya, payture, http)
        tricky = await app.storage.create_order(
            NewOrder(
                user_id=CUSTOMER,
                chat_id=CUSTOMER,
                provider="redoya",
                total=Money(24000, "TRY"),
                token="tricky",
                items=[OrderItem("mug", 'Mug "Istanbul", 0,5 l', 2, 12000)],
                buyer=Buyer('=HYPERLINK("http://x")', "ada"),
                delivery=Delivery("Ada", "+905551234567", "Moda, Kadıköy\nİstanbul", "@door"),
            )
        )
        admin = staff(telegram, http)
        await admin.send("/export 1")
        sent = await admin.wait_message(predicate=lambda m: "document" in m)
        assert sent["caption"] == "Orders of the last 1 day: 5"
        assert sent["document"]["file_name"].endswith("-1d.csv")
        text = telegram.files[sent["document"]["file_id"]].decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert [r["order_id"] for r in rows] == [str(i) for i in range(1, 6)]
        zone = ZoneInfo(ZONE)
        orders = {o.id: o for o in await app.checkout.orders_of(CUSTOMER, limit=10)}
        for row in rows:
            order = orders[int(row["order_id"])]
            assert row["state"] == order.state.value
            assert row["provider"] == order.provider
            assert row["provider_payment_id"] == (order.provider_payment_id or "")
            assert row["created_at"] == order.created_at.astimezone(zone).isoformat(
                sep=" ", timespec="seconds"
            )
            assert row["created_at"].endswith("+05:00")
            assert row["fulfilment"] == "new"
        by_id = {int(r["order_id"]): r for r in rows}
        assert by_id[partly]["state"] == "partially_refunded"
        assert (by_id[partly]["currency"], by_id[partly]["total"]) == ("TRY", "150.00")
        assert (by_id[partly]["paid"], by_id[partly]["refunded"]) == ("150.00", "35.00")
        assert by_id[partly]["items"] == "Turkish coffee 250 g x1 @ 150.00"
        assert by_id[3]["state"] == "refunded"
        assert (by_id[3]["paid"], by_id[3]["refunded"]) == ("450.00", "450.00")
        assert (by_id[4]["state"], by_id[4]["paid"], by_id[4]["paid_at"]) == (
            "awaiting_payment",
            "",
            "",
        )
        odd = by_id[tricky.id]
        assert odd["items"] == 'Mug "Istanbul", 0,5 l x2 @ 120.00'
        assert odd["buyer_name"] == '\'=HYPERLINK("http://x")'  # never a formula
        assert odd["delivery_phone"] == "+905551234567"  # checked digits: left as they are
        assert odd["delivery_address"] == "Moda, Kadıköy\nİstanbul"
        assert odd["delivery_comment"] == "'@door"
        assert odd["buyer_username"] == "ada"
        # the progress message was replaced by the document
        assert not [m for m in await admin.bot_messages() if "Exporting" in (m.get("text") or "")]


@both_databases
async def test_the_daily_report_goes_out_once_at_its_local_time(
    make_settings, user: BotUser, merchant: BotUser, redoya: RedoyaServer, http
) -> None:
    at = time(9, 0)
    zone = ZoneInfo(ZONE)
    settings = make_settings(timezone=ZONE, daily_report_at=at)
    async with BotApp(settings, background=False) as app:
        # a sender without the group gap: the report follows the paid message at once
        sender = Notifier(app.bot, app.storage, app.notifier.render, per_group_gap=0)
        await paid(app, http, redoya, CEZVE)
        await sender.flush()
        tomorrow = datetime.now(zone).date() + timedelta(days=1)
        report_time = datetime.combine(tomorrow, at, tzinfo=zone).astimezone(UTC)
        await app.reconciler.run_once(report_time - timedelta(minutes=1))  # not yet
        assert not await app.storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1))
        replicas = [app.reconciler, Reconciler(app.checkout, report_at=at, zone=zone)]
        for sweep in (*replicas, *replicas):
            await sweep.run_once(report_time + timedelta(minutes=5))
        restarted = Reconciler(app.checkout, report_at=at, zone=zone)
        await restarted.run_once(report_time + timedelta(hours=3))
        await sender.flush()
        report = await merchant.wait_message("📊 The day's report")
        assert f"({ZONE})" in report["text"]
        assert "TRY: paid: ₺85.00 (orders: 1)" in report["text"]
        await sender.flush()
        reports = [
            m for m in await merchant.bot_messages() if "day's report" in (m.get("text") or "")
        ]
        assert len(reports) == 1
        assert reports[0]["chat"]["id"] == MERCHANT_CHAT


def an_order(n: int) -> Order:
    when = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)
    return Order(n, 7, 7, "redoya", Money(100, "TRY"), S.CREATED, f"t{n}", "en", "", when, when)


async def test_the_writer_reports_progress_and_defuses_formulas() -> None:
    async def batches() -> AsyncIterator[list[Order]]:
        for first in range(0, 12_000, 2_500):
            yield [an_order(n) for n in range(first + 1, min(first + 2_500, 12_000) + 1)]

    heard: list[int] = []

    async def progress(count: int) -> None:
        heard.append(count)

    out = io.StringIO()
    assert await write_csv(batches(), out, ZoneInfo(ZONE), progress) == 12_000
    assert heard == [5_000, 10_000]
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert len(rows) == 12_001
    assert rows[1][:3] == ["1", "2026-12-02 02:30:00+05:00", ""]  # the merchant's day
    for cell, shown in [("=1+1", "'=1+1"), ("+7", "'+7"), ("-2", "'-2"), ("@x", "'@x")]:
        assert safe(cell) == shown
    assert safe("\tx") == "'\tx"
    assert safe("Ada") == "Ada"
