"""Staff lookups through the chat: /orders with its filters and paging buttons, /find, /order,
the roles (support looks up, never refunds) and times on the merchant's clock with the zone
named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot.app import BotApp, Parts
from bot.formatting import format_when
from bot.keyboards import StaffFindCb, StaffOrdersCb, fits
from money import Money
from sandbox.botuser import BotUser, buttons
from sandbox.telegram import TelegramServer
from storage.base import Buyer, Delivery, Fulfilment, NewOrder, OrderItem, OrderState, Storage
from tests.conftest import ADMIN, CUSTOMER

S = OrderState
SUPPORT = 77
ZONE = "Asia/Ashgabat"
ADA = Buyer("Ada Lovelace", "ada")
PAID_AT = datetime(2026, 12, 2, 4, 30, tzinfo=UTC)  # 09:30 in Ashgabat


async def place(
    storage: Storage,
    n: int,
    *,
    provider: str = "redoya",
    user_id: int = CUSTOMER,
    buyer: Buyer = ADA,
    phone: str = "",
) -> int:
    """An order awaiting payment with a provider payment id `pay-<n>`."""
    delivery = Delivery("Ada L.", phone, "Moda 12") if phone else None
    order = await storage.create_order(
        NewOrder(
            user_id=user_id,
            chat_id=user_id,
            provider=provider,
            total=Money(1000 * n, "TRY" if provider == "redoya" else "RUB"),
            token=f"token-{n}",
            items=[OrderItem("cezve", "Cezve, copper", 1, 1000 * n)],
            buyer=buyer,
            delivery=delivery,
        )
    )
    await storage.set_checkout(
        order.id,
        pay_url="https://pay.example/x",
        provider_payment_id=f"pay-{n}",
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
        next_check_at=None,
    )
    return order.id


async def paid(storage: Storage, order_id: int) -> None:
    order = await storage.get_order(order_id)
    assert order is not None
    moved = await storage.transition(
        order_id, S.AWAITING_PAYMENT, S.PAID, actor="test", paid=order.total
    )
    assert moved is not None


@pytest.fixture
async def shop(make_settings) -> AsyncIterator[Parts]:
    """Twelve orders: 1-8 Redoya (2, 4, 6 paid), 9-11 Payture (9 paid), 12 another customer's
    needing review; support 77, the merchant in Asia/Ashgabat."""
    settings = make_settings(support_ids=frozenset({SUPPORT}), timezone=ZONE)
    async with BotApp(settings) as parts:
        storage = parts.storage
        for n in range(1, 9):
            await place(storage, n, phone="+90 532 123 45 67" if n == 3 else "")
        for n in (9, 10, 11):
            await place(storage, n, provider="payture")
        await place(storage, 12, user_id=2002, buyer=Buyer("Şule Öztürk", "sule_o"))
        for order_id in (2, 4, 6, 9):
            await paid(storage, order_id)
        await storage.transition(12, S.AWAITING_PAYMENT, S.NEEDS_REVIEW, actor="test")
        yield parts


def ids(message: dict) -> list[int]:
    """The order buttons of a list, in order."""
    return [int(b["text"][1:]) for b in buttons(message) if b["text"].startswith("#")]


async def ask(person: BotUser, text: str, expect: str = "") -> dict:
    await person.send(text)
    return await person.wait_message(expect or None)


async def test_orders_pages_newest_first_with_every_column(
    shop: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    admin = BotUser(telegram.url, ADMIN, session=http)
    first = await ask(admin, "/orders", "Orders")
    assert ids(first) == list(range(12, 2, -1))
    assert f"Page 1 · times in {ZONE}" in first["text"]
    row = next(line for line in first["text"].splitlines() if line.startswith("#9 "))
    for part in (
        "Ada Lovelace @ada (1001)",
        "₽90.00",
        "paid",
        "not shipped yet",
        "Bank card (Payture)",
    ):
        assert part in row, row
    assert "being checked by the shop" in first["text"]  # #12, translated
    await admin.press(text="▶")
    second = await admin.wait_message("Page 2")
    assert ids(second) == [2, 1]
    assert [b["text"] for b in buttons(second)][-1] == "◀"  # nothing further
    await admin.press(text="◀")
    assert ids(await admin.wait_message("Page 1")) == ids(first)
    await admin.press(text="#3")
    view = await admin.wait_message("Audit")
    assert "Order #3" in view["text"]


async def test_each_filter_kind_and_its_paging(
    shop: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    admin = BotUser(telegram.url, ADMIN, session=http)
    assert ids(await ask(admin, "/orders paid", "Orders: paid")) == [9, 6, 4, 2]
    assert ids(await ask(admin, "/orders payture paid 7d", "Orders:")) == [9]
    assert ids(await ask(admin, "/orders 2002", "customer 2002")) == [12]
    assert ids(await ask(admin, "/orders needs_review", "Orders:")) == [12]
    assert ids(await ask(admin, "/orders awaiting payment Redoya", "Orders:")) == [8, 7, 5, 3, 1]
    assert ids(await ask(admin, "/orders 1001 paid needs_review", "Orders:")) == [9, 6, 4, 2]
    shop.checkout.clock = lambda: datetime.now(UTC) + timedelta(days=10)  # ten days on
    assert "No orders match." in (await ask(admin, "/orders 7d", "Orders: last 7 days"))["text"]
    assert len(ids(await ask(admin, "/orders 30d", "Orders: last 30 days"))) == 10

    # the filter rides in the paging button, compactly
    listed = await ask(admin, "/orders 1001 30d", "Orders:")
    forward = next(b for b in buttons(listed) if b["text"] == "▶")
    assert forward["callback_data"] == StaffOrdersCb(user=CUSTOMER, days=30, page=1).pack()
    await admin.press(text="▶")
    assert ids(await admin.wait_message("Page 2")) == [1]

    russian = BotUser(telegram.url, ADMIN, language_code="ru", session=http)
    in_russian = shop.i18n.gettext("paid", locale="ru")
    assert ids(await ask(russian, f"/orders {in_russian}", in_russian)) == [9, 6, 4, 2]


async def test_a_filter_nobody_understands_gets_what_is_accepted(
    shop: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    admin = BotUser(telegram.url, ADMIN, session=http)
    answer = await ask(admin, "/orders payed ７ 0d", "Not understood")
    assert "Not understood: payed ７ 0d." in answer["text"]
    for accepted in (
        "a state:",
        "paid",
        "needs_review",
        "a provider:",
        "payture",
        "7d",
        "1001",
        "/find <text>",
    ):
        assert accepted in answer["text"], accepted
    twice = await ask(admin, "/orders redoya payture", "One provider")
    assert "payture" in twice["text"].splitlines()[0]
    listed = await ask(admin, "/orders help", "/orders takes these words")
    for forged, expected in (
        ("so:Z9:nosuch:-1:999999:-2:7x", "No orders match."),  # clamped, unknown codes dropped
        ("so::x:a:b:c", "out of date"),  # does not unpack: the stale-button answer
        ("sv:99999", "not found"),
    ):
        answer = await admin.press(forged, message_id=listed["message_id"], force=True)
        assert answer is not None
        if answer["text"]:
            assert expected in answer["text"], (forged, answer)
        else:
            assert expected in (await admin.wait_message(expected))["text"]


async def test_find_by_name_phone_payment_id_and_order_id(
    shop: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    admin = BotUser(telegram.url, ADMIN, session=http)
    assert ids(await ask(admin, "/find şule", "Orders matching şule")) == [12]
    assert ids(await ask(admin, "/find @SULE_O", "Orders matching")) == [12]
    assert ids(await ask(admin, "/find 532 123 45 67", "Orders matching")) == [3]
    assert ids(await ask(admin, "/find pay-10", "Orders matching")) == [10]
    assert ids(await ask(admin, "/find 7", "Orders matching 7")) == [7]
    nothing = await ask(admin, "/find nobody here", "Orders matching")
    assert "No orders match." in nothing["text"]
    for bad in ("/find", "/find a", f"/find {'x' * 65}"):
        await ask(admin, bad, "Usage: /find <text>")

    lovelace = await ask(admin, "/find lovelace", "Orders matching lovelace")  # 11 of them
    assert ids(lovelace) == list(range(11, 1, -1))
    await admin.press(text="▶")
    assert ids(await admin.wait_message("Page 2")) == [1]
    assert not fits(StaffFindCb(text="ш" * 40, page=1))  # 80 bytes: no button carries it
    assert not fits(StaffFindCb(text="a:b", page=1))


async def test_support_looks_up_but_never_refunds(
    shop: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    support = BotUser(telegram.url, SUPPORT, session=http)
    admin = BotUser(telegram.url, ADMIN, session=http)
    help_text = (await ask(support, "/admin", "/order <id>"))["text"]
    assert "/find <text>" in help_text
    assert "/refund" not in help_text
    assert "/refund <id> [amount]" in (await ask(admin, "/admin", "/order"))["text"]

    assert ids(await ask(support, "/orders paid", "Orders: paid")) == [9, 6, 4, 2]
    assert ids(await ask(support, "/find pay-4", "Orders matching")) == [4]
    await support.press(text="#4")
    view = await support.wait_message("Receipt for order #4")
    assert "/refund" not in view["text"]
    assert "/refund" not in (await ask(support, "/order 4", "Receipt for order #4"))["text"]
    assert "/refund 4 [amount]" in (await ask(admin, "/order 4", "Receipt"))["text"]

    refused = await ask(support, "/refund 4", "Only admins may do that")
    assert refused["text"].startswith("Only admins")
    assert (await shop.storage.get_order(4)).state is S.PAID  # type: ignore[union-attr]
    await ask(support, "/reconcile", "Only admins")
    await ask(support, "/review", "Only admins may do that")
    answer = await support.press(
        "rf:4:4000:4000:ab12cd34:0", message_id=refused["message_id"], force=True
    )
    assert answer is not None
    assert "Only admins" in answer["text"]
    assert (await shop.storage.get_order(4)).state is S.PAID  # type: ignore[union-attr]

    customer = BotUser(telegram.url, CUSTOMER, session=http)  # not staff: their own orders
    assert "Your orders" in (await ask(customer, "/orders", "Your orders"))["text"]
    await ask(customer, "/find ada", "I do not know that command")


async def test_times_are_on_the_merchants_clock_with_the_zone_named(
    shop: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    order = await shop.storage.get_order(4)
    assert order is not None
    assert order.paid_at is not None
    zone = ZoneInfo(ZONE)

    def shown(moment: datetime) -> str:  # one style everywhere: day first, 24 hours, the zone
        return f"{moment.astimezone(zone):%d.%m.%Y, %H:%M}"

    assert format_when(PAID_AT, zone) == f"02.12.2026, 09:30 ({ZONE})"
    admin = BotUser(telegram.url, ADMIN, session=http)
    view = (await ask(admin, "/order 4", "Receipt for order #4"))["text"]
    assert f"Paid at: {shown(order.paid_at)} ({ZONE})" in view
    assert f"Created: {shown(order.created_at)} ({ZONE})" in view
    assert f"Audit ({ZONE})" in view
    payment = (await shop.storage.audit_trail(4))[-1]
    assert f"{shown(payment.created_at)} awaiting payment → paid · test" in view
    listed = (await ask(admin, "/orders paid", "Orders: paid"))["text"]
    created = shown(order.created_at)
    assert f"#4 · {created} · " in listed
    customer = BotUser(telegram.url, order.user_id, session=http)  # the same clock, named once
    own = (await ask(customer, "/orders", "Your orders"))["text"]
    assert f"Times in {ZONE}" in own
    assert f"#4 · {created} · " in own


async def test_orders_by_shipping_in_english_and_the_admins_language(
    shop: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    """The morning's list is one command: `/orders not shipped` = paid and not sent yet."""
    storage = shop.storage
    await storage.set_fulfilment(4, Fulfilment.NEW, Fulfilment.SHIPPED, actor="test")
    await storage.set_fulfilment(6, Fulfilment.NEW, Fulfilment.SHIPPED, actor="test")
    await storage.set_fulfilment(6, Fulfilment.SHIPPED, Fulfilment.DELIVERED, actor="test")
    await storage.set_fulfilment(9, Fulfilment.NEW, Fulfilment.CANCELLED, actor="test")
    admin = BotUser(telegram.url, ADMIN, session=http)
    assert ids(await ask(admin, "/orders shipped", "Orders: shipped")) == [4]
    assert ids(await ask(admin, "/orders delivered", "Orders: delivered")) == [6]
    owed = await ask(admin, "/orders not shipped", "Orders: not shipped yet")
    assert ids(owed) == [2]
    assert "· paid · not shipped yet · Redoya" in owed["text"]
    assert ids(await ask(admin, "/orders new redoya", "Orders: not shipped yet, Redoya")) == [2]
    shop_cancelled = await ask(admin, "/orders cancelled by the shop", "cancelled by the shop")
    assert ids(shop_cancelled) == [9]
    assert ids(await ask(admin, "/orders paid shipped", "Orders: paid, shipped")) == [4]
    every = (await ask(admin, "/orders", "Orders"))["text"]
    unpaid = next(line for line in every.splitlines() if line.startswith("#8 "))
    assert "not shipped" not in unpaid  # nothing is owed for an unpaid order
    assert "shipping: not shipped, shipped" in (await ask(admin, "/orders help", "/orders"))["text"]
    russian = BotUser(telegram.url, ADMIN, language_code="ru", session=http)
    assert ids(await ask(russian, "/orders не отправлен", "Заказы")) == [2]
    assert ids(await ask(russian, "/orders отправлен", "Заказы")) == [4]
