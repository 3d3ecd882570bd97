"""Fulfilment as the merchant works it, through the chat: Shipped (with a tracking note, or
none) -> Delivered from the paid-order message, the customer told each step in their language,
a stale button that says so; a cancel by the shop that offers the refund right there; the
steps from an admin's /order, never from a support person; and "Try again" on an order that
failed or was cancelled, at today's prices."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from bot.app import BotApp, Parts
from bot.cart import refill
from bot.catalog import load_catalog
from bot.config import Settings
from bot.core import Fulfilment, OrderState
from bot.demo import DEMO_CATALOG, pay_on
from bot.keyboards import FulfilCb, OrderAction, OrderCb, ProductAction, ProductCb
from money import Money
from sandbox.botuser import BotUser, buttons
from sandbox.payture import PaytureServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage.base import NewOrder, OrderItem
from tests.conftest import ADMIN, CUSTOMER, MERCHANT_CHAT
from tests.flows import browse, eventually, fast, order_product, pay

S = OrderState


pytestmark = pytest.mark.usefixtures("no_flood_gaps")


SUPPORT = 77


def labels(message: dict) -> list[str]:
    return [b["text"] for b in buttons(message)]


async def paid_order(app: Parts, user: BotUser, server, http, category: str, product: str):
    message = await order_product(user, category, product)
    await browse(http, await pay(http, server.url, message, "paid"))
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    await eventually(lambda: _state(app, order.id, S.PAID))
    return order


async def _state(app: Parts, order_id: int, state: OrderState) -> bool:
    order = await app.checkout.order(order_id)
    return order is not None and order.state is state


async def test_shipped_with_a_note_then_delivered_told_in_russian(
    app: Parts,
    merchant: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    user = BotUser(telegram.url, CUSTOMER, language_code="ru", session=http)
    await user.send("/start")
    await user.wait_message(predicate=lambda m: "Кофе" in str(labels(m)))  # the catalog's ru
    await user.press(text="Кофе")
    await user.wait_message(predicate=lambda m: "Джезва" in str(labels(m)))
    await user.press(text="Джезва")
    product = await user.wait_message("Джезва")
    buy = ProductCb(action=ProductAction.BUY, id="cezve").pack()
    await user.press(buy, message_id=product["message_id"])
    card = await user.wait_message("Заказ №1")
    url = next(b["url"] for b in buttons(card) if "url" in b)  # "Оплатить"
    await browse(http, (await pay_on(http, redoya, url=url, outcome="paid"))["redirect"])

    paid = await merchant.wait_message("Order #1 paid")
    assert labels(paid) == ["📦 Shipped", "✅ Delivered", "✖ Cancel the order"]
    await merchant.press(text="📦 Shipped", message_id=paid["message_id"])
    question = await merchant.wait_message("reply to this message with the tracking note")
    assert (MERCHANT_CHAT, question["message_id"]) in telegram.force_replies
    await merchant.send("TRK-42 <Aras>", reply_to=question["message_id"])
    await merchant.wait_message(
        "Order #1: shipped.\nTracking: TRK-42 <Aras>\nThe customer is told."
    )
    shipped = await user.wait_message("📦 Заказ №1 отправлен")
    assert "TRK-42 <Aras>" in shipped["text"]
    await user.send("/orders")
    listed = await user.wait_message("отправлен")
    await user.press(
        text=labels(listed)[0], message_id=listed["message_id"]
    )  # the order's card: the status word is not the delivery header
    card = await user.wait_message("Отправка: отправлен")
    assert "Доставка:" not in card["text"]
    updated = [m for m in await merchant.bot_messages() if m["message_id"] == paid["message_id"]]
    assert labels(updated[0]) == ["✅ Delivered", "✖ Cancel the order"]
    assert "Now: paid\nShipping: shipped · Tracking: TRK-42 <Aras>" in updated[0]["text"]

    stale = FulfilCb(order=1, step=Fulfilment.SHIPPED).pack()  # a second phone, an old screen
    answer = await merchant.press(stale, message_id=paid["message_id"], force=True)
    assert answer is not None
    assert "already shipped" in answer["text"]

    await merchant.press(text="✅ Delivered", message_id=paid["message_id"])
    await user.wait_message("📬 Заказ №1 доставлен")
    card = await merchant.wait_message("Shipping: delivered", after_id=0)
    assert card["message_id"] == paid["message_id"]  # the card follows: no buttons, the state
    assert card["text"].startswith("💰 Order #1 paid")
    assert labels(card) == []
    order = await app.checkout.order(1)
    assert order is not None
    assert (order.state, order.fulfilment, order.tracking) == (
        S.PAID,
        Fulfilment.DELIVERED,
        "TRK-42 <Aras>",
    )
    trail = [e for e in await app.checkout.audit(1) if "fulfilment" in e.detail]
    assert [e.actor for e in trail] == [f"merchant:{MERCHANT_CHAT}"] * 2
    customer = [m.get("text") or "" for m in await user.messages()]
    assert sum("📦 Заказ №1 отправлен" in t for t in customer) == 1  # the stale press told nobody
    await user.send("/orders")
    await user.wait_message("оплачен · доставлен")


async def test_a_cancel_by_the_shop_leaves_the_refund_to_an_admin(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    payture: PaytureServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    """Anyone in the merchant chat may cancel; only an admin refunds: the others are told an
    admin must, and a refund button pressed by one of them (an old question) moves nothing."""
    order = await paid_order(app, user, payture, http, "Tea", "Ivan-chai")
    paid = await merchant.wait_message(f"Order #{order.id} paid")
    asked = await merchant.press(text="✖ Cancel the order", message_id=paid["message_id"])
    assert asked is not None
    assert "The customer is told at once" in asked["text"]  # asked first, nothing done yet
    assert (await app.checkout.order(order.id)).fulfilment is Fulfilment.NEW  # type: ignore[union-attr]
    await merchant.press(text="No, keep it", message_id=paid["message_id"])
    kept = await merchant.wait_message(f"Order #{order.id} paid")
    assert labels(kept) == ["📦 Shipped", "✅ Delivered", "✖ Cancel the order"]
    await merchant.press(text="✖ Cancel the order", message_id=paid["message_id"])
    await merchant.press(text="Yes, cancel the order", message_id=paid["message_id"])
    await merchant.wait_message(f"Order #{order.id} is cancelled; an admin must refund it")
    assert not any("Refund RUB" in (m.get("text") or "") for m in await merchant.bot_messages())
    await user.wait_message(f"The shop cancelled order #{order.id}")
    admin = BotUser(telegram.url, ADMIN, session=http, chat_id=MERCHANT_CHAT)  # in that chat
    await admin.send(f"/refund {order.id}")
    question = await admin.wait_message(f"Refund ₽450.00 of order #{order.id}?")
    answer = await merchant.press(text="Refund", message_id=question["message_id"])
    assert answer is not None
    assert "out of date" in answer["text"]  # not an admin: no refund handler takes it
    assert payture.orders[order.provider_payment_id].refunds == []  # type: ignore[index]
    assert "Buyer: " in question["text"]
    await admin.press(text="Refund", message_id=question["message_id"])
    said = f"↩️ Order #{order.id}: ₽450.00 refunded to the customer."
    await admin.wait_message(said)
    await user.wait_message("refunded for order")
    chat = await merchant.bot_messages()
    told = [m.get("text") or "" for m in chat if m["message_id"] != paid["message_id"]]
    assert [t for t in told if "refunded" in t.casefold()] == [said]  # one message, no "left"
    card = await merchant.wait_message("Now: refunded", after_id=0)  # the card follows
    assert (card["message_id"], labels(card)) == (paid["message_id"], [])
    done = await app.checkout.order(order.id)
    assert done is not None
    assert (done.state, done.fulfilment) == (S.REFUNDED, Fulfilment.CANCELLED)
    assert payture.orders[order.provider_payment_id].refunds == [45000]  # type: ignore[index]
    actors = {e.actor for e in await app.checkout.audit(order.id)}
    assert f"merchant:{MERCHANT_CHAT}" in actors


async def test_admins_step_from_order_support_may_not(
    make_settings: Callable[..., Settings],
    user: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    async with BotApp(make_settings(support_ids=frozenset({SUPPORT}))) as app:
        fast(app)
        order = await paid_order(app, user, redoya, http, "Coffee", "Cezve")
        support = BotUser(telegram.url, SUPPORT, session=http)
        step = FulfilCb(order=order.id, step=Fulfilment.DELIVERED).pack()
        await support.send("/help")
        help_message = await support.wait_message("/catalog")
        answer = await support.press(step, message_id=help_message["message_id"], force=True)
        assert answer is not None
        assert answer["text"] == "Only admins and the merchant chat may change orders."
        in_chat = BotUser(telegram.url, SUPPORT, session=http, chat_id=MERCHANT_CHAT)
        paid = await in_chat.wait_message(f"Order #{order.id} paid", after_id=0)
        answer = await in_chat.press(text="✅ Delivered", message_id=paid["message_id"])
        assert answer is not None
        # support never change orders, even there, and are told why (not "out of date")
        assert answer["text"] == "Only admins and the merchant chat may change orders."
        assert (await app.checkout.order(order.id)).fulfilment is Fulfilment.NEW  # type: ignore[union-attr]

        admin = BotUser(telegram.url, ADMIN, session=http)
        await admin.send(f"/order {order.id}")
        shown = await admin.wait_message("Audit")
        assert "Shipping: not shipped yet" in shown["text"]
        await admin.press(text="📦 Shipped", message_id=shown["message_id"])
        await admin.press(text="No note")
        await admin.wait_message(f"Order #{order.id}: shipped.")
        await user.wait_message(f"Order #{order.id} has been shipped.")
        moved = await app.checkout.order(order.id)
        assert moved is not None
        assert (moved.fulfilment, moved.tracking) == (Fulfilment.SHIPPED, "")
        trail = [e for e in await app.checkout.audit(order.id) if "fulfilment" in e.detail]
        assert [e.actor for e in trail] == [f"admin:{ADMIN}"]


def changed_catalog(tmp_path: Path) -> Path:
    """The demo catalog with the cezve dearer, beside the demo's photos."""
    text = DEMO_CATALOG.read_text(encoding="utf-8")
    cezve = 'name_tr = "Bakır cezve"\nprice = 85'
    assert cezve in text
    text = text.replace(cezve, 'name_tr = "Bakır cezve"\nprice = 95')
    shutil.copytree(DEMO_CATALOG.parent / "photos", tmp_path / "photos")
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_try_again_after_a_failure_and_a_cancel_at_todays_prices(
    make_settings: Callable[..., Settings],
    user: BotUser,
    redoya: RedoyaServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    async with BotApp(make_settings()):
        card = await order_product(user, "Coffee", "Cezve")
        await browse(http, await pay(http, redoya.url, card, "failed"))
        failed = await user.wait_message("did not go through")
        assert labels(failed) == ["Try again"]
    catalog = changed_catalog(tmp_path)  # the merchant raised a price and restarted the bot
    async with BotApp(make_settings(catalog_path=catalog)) as app:
        await user.press(text="Try again", message_id=failed["message_id"])
        said = await user.wait_message("Order #1 again")
        assert "Cezve, copper: the price changed, ₺85.00 → ₺95.00" in said["text"]
        second = await user.wait_message("Order #2")
        assert "₺95.00" in second["text"]
        assert (await app.checkout.order(2)).total == Money(9500, "TRY")  # type: ignore[union-attr]

        await user.press(text="Cancel order", message_id=second["message_id"])
        cancelled = await user.wait_message("cancelled")
        assert "Try again" in labels(cancelled)
        await user.press(text="Try again", message_id=cancelled["message_id"])
        said = await user.wait_message("Order #2 again")
        assert "price changed" not in said["text"]
        await user.wait_message("Order #3")
        again = OrderCb(action=OrderAction.AGAIN, id=3).pack()  # an order still payable
        answer = await user.press(again, message_id=second["message_id"], force=True)
        assert answer is not None
        assert "only a failed, cancelled or expired" in answer["text"]


async def test_try_again_leaves_out_what_is_no_longer_sold(app: Parts) -> None:
    order = await app.storage.create_order(
        NewOrder(
            user_id=CUSTOMER,
            chat_id=CUSTOMER,
            provider="redoya",
            total=Money(18500, "TRY"),
            token="t-again",
            items=[
                OrderItem("cezve", "Cezve, copper", 1, 8500),
                OrderItem("samovar", "Samovar", 1, 10000),  # since taken out of the catalog
            ],
        )
    )
    found = refill(order, load_catalog(DEMO_CATALOG))
    assert (found.cart, found.changed) == ({"cezve": 1}, [])
    assert [item.title for item in found.gone] == ["Samovar"]


async def test_the_tracking_question_takes_only_a_reply_and_ends(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    payture: PaytureServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    """Plain text after Shipped is no note (a group with privacy mode would not even pass it
    on); Cancel ends the question, whoever presses, and a late reply to it ships nothing;
    No note pressed by another member ends the asker's question too."""
    order = await paid_order(app, user, payture, http, "Tea", "Ivan-chai")
    paid = await merchant.wait_message(f"Order #{order.id} paid")
    await merchant.press(text="📦 Shipped", message_id=paid["message_id"])
    first = await merchant.wait_message("reply to this message with the tracking note")
    await merchant.send("the courier comes at five")  # talk in the chat, not a reply
    other = BotUser(telegram.url, 4242, session=http, chat_id=MERCHANT_CHAT)  # another member
    await other.press(text="Cancel: not shipped yet", message_id=paid["message_id"])
    back = await merchant.wait_message(f"Order #{order.id} paid")
    assert labels(back) == ["📦 Shipped", "✅ Delivered", "✖ Cancel the order"]
    await merchant.send("TRK-LATE", reply_to=first["message_id"])  # the question has ended
    await merchant.send("/today")
    await merchant.wait_message("Today")
    assert (await app.checkout.order(order.id)).fulfilment is Fulfilment.NEW  # type: ignore[union-attr]

    await merchant.press(text="📦 Shipped", message_id=paid["message_id"])
    second = await merchant.wait_message("reply to this message with the tracking note")
    await other.press(text="No note", message_id=paid["message_id"])
    await other.wait_message(f"Order #{order.id}: shipped.")
    await merchant.send("TRK-2", reply_to=second["message_id"])  # ended by the No note
    await merchant.send("/today")
    await merchant.wait_message("Today")
    shipped = await app.checkout.order(order.id)
    assert shipped is not None
    assert (shipped.fulfilment, shipped.tracking) == (Fulfilment.SHIPPED, "")
    texts = [m.get("text") or "" for m in await user.messages()]
    assert sum(f"Order #{order.id} has been shipped" in t for t in texts) <= 1


async def test_an_admin_in_the_delivery_questions_keeps_them_when_shipping(
    app: Parts,
    user: BotUser,
    payture: PaytureServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    """An admin who is also buying (halfway through the delivery questions, in private)
    presses Shipped on another order: their next answer stays a delivery answer, and the
    note is their reply to the tracking question."""
    order = await paid_order(app, user, payture, http, "Tea", "Ivan-chai")
    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.send(f"/order {order.id}")
    shown = await admin.wait_message("Audit")
    await admin.send("/start p_mortar")
    await admin.wait_message("Brass grinder")
    await admin.press(text="Buy now")
    await admin.wait_message("the recipient's name")
    await admin.press(text="📦 Shipped", message_id=shown["message_id"])
    question = await admin.wait_message("reply to this message with the tracking note")
    await admin.send("Ada Lovelace")  # the name the delivery question asked for
    await admin.wait_message("phone number")
    assert (await app.checkout.order(order.id)).fulfilment is Fulfilment.NEW  # type: ignore[union-attr]
    await admin.send("TRK-7", reply_to=question["message_id"])
    await admin.wait_message(f"Order #{order.id}: shipped.\nTracking: TRK-7\nThe customer")
    await admin.send("+90 532 123 45 67")
    await admin.wait_message("delivery address")
