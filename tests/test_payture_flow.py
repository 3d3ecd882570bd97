"""Issue 5 through the chat: Payture checkout, GetState confirmation, refunds by an admin,
saved cards."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp

from bot.app import Parts
from money import Money
from sandbox.botuser import BotUser, button_url
from sandbox.payture import PaytureServer
from sandbox.telegram import TelegramServer
from storage.base import OrderState
from tests.conftest import ADMIN, CUSTOMER, both_databases
from tests.flows import browse, eventually, order_product, pay

S = OrderState


async def latest(app: Parts):
    return (await app.storage.orders_for_user(CUSTOMER, limit=1))[0]


async def paid_order(app: Parts, user: BotUser, payture: PaytureServer, http) -> dict:
    message = await order_product(user, "Tea", "Ivan-chai")
    await browse(http, await pay(http, payture.url, message, "paid"))
    await user.wait_message("Payment received")
    return message


async def test_happy_path_via_the_chat(app: Parts, user: BotUser, payture, http) -> None:
    message = await order_product(user, "Tea", "Ivan-chai")
    assert "450" in message["text"]
    status, page = await browse(http, await pay(http, payture.url, message, "paid"))
    assert (status, "Payment received" in page) == (200, True)
    await user.wait_message("Payment received")
    order = await latest(app)
    assert (order.state, order.paid) == (S.PAID, Money(45000, "RUB"))


async def test_forged_success_flag_on_an_unpaid_order_pays_nothing(app: Parts, user, http) -> None:
    await order_product(user, "Tea", "Ivan-chai")
    order = await latest(app)
    query = f"orderid={order.provider_payment_id}&success=True"
    forged = f"{app.web_url}/return/payture/{order.token}?{query}"
    _, page = await browse(http, forged)
    assert "Checking your payment" in page
    assert (await latest(app)).state is S.AWAITING_PAYMENT


async def test_getstate_outage_then_recovery_by_the_sweep(app: Parts, user, payture, http) -> None:
    message = await order_product(user, "Tea", "Ivan-chai")
    redirect = await pay(http, payture.url, message, "paid")
    payture.getstate_status_override = 503
    await browse(http, redirect)
    order = await latest(app)
    assert order.state is S.AWAITING_PAYMENT
    payture.getstate_status_override = None
    await app.reconciler.run_once(now=order.next_check_at)
    await user.wait_message("Payment received")
    assert (await latest(app)).state is S.PAID


@both_databases
async def test_duplicate_notifications_pay_once(app: Parts, user, payture, http) -> None:
    payture.notify_url = f"{app.web_url}/callbacks/payture"
    payture.duplicate_notifications = True
    message = await order_product(user, "Tea", "Ivan-chai")
    await pay(http, payture.url, message, "paid")  # the customer never comes back
    await payture.settle()
    await user.wait_message("Payment received")
    order = await latest(app)
    trail = await app.storage.audit_trail(order.id)
    assert [e.to_state for e in trail].count(S.PAID) == 1
    assert any(e.actor == "callback" for e in trail)
    await asyncio.sleep(0.3)
    texts = [m.get("text", "") for m in await user.bot_messages()]
    assert sum("Payment received" in t for t in texts) == 1


async def test_forged_callbacks_change_nothing(app: Parts, user, http) -> None:
    await order_product(user, "Tea", "Ivan-chai")
    url = f"{app.web_url}/callbacks/payture"
    async with http.post(url, data=b"Notification=EnginePaySuccess&OrderId=nope") as answer:
        assert answer.status == 404
    async with http.post(url, data=b"not a notification") as answer:
        assert answer.status == 400
    async with http.post(f"{app.web_url}/callbacks/nosuch", data=b"x=1") as answer:
        assert answer.status == 404
    assert (await latest(app)).state is S.AWAITING_PAYMENT


async def test_callbacks_about_a_pending_payment_leave_the_sweeps_schedule_alone(
    app: Parts, user, http
) -> None:
    """Each notification about an order whose payment is still pending is checked with
    GetState, but only the sweep's own checks back off: a burst of them (Payture's retries, or a
    forger's) never pushes the order's next background check away."""
    await order_product(user, "Tea", "Ivan-chai")
    before = await latest(app)
    url = f"{app.web_url}/callbacks/payture"
    for n in range(5):
        body = f"Notification=EnginePaySuccess&OrderId={before.provider_payment_id}"
        async with http.post(url, data=f"{body}&TransactionDate={n}".encode()) as answer:
            assert answer.status == 200
    await asyncio.sleep(0.5)  # their follow-ups: GetState, still pending
    after = await latest(app)
    assert after.state is S.AWAITING_PAYMENT
    assert (after.check_attempts, after.next_check_at) == (
        before.check_attempts,
        before.next_check_at,
    )
    await app.reconciler.run_once(now=before.next_check_at)  # the sweep's check backs off
    assert (await latest(app)).check_attempts == before.check_attempts + 1


@both_databases
async def test_the_sweep_forgets_what_arrived_once_it_is_old(
    app: Parts, user, payture, http
) -> None:
    """INBOX_KEEP_DAYS (180 by default) after it arrived, a processed return or callback is
    forgotten by a sweep; the order and its audit trail stay as they were."""
    await paid_order(app, user, payture, http)
    order = await latest(app)

    async def all_processed() -> bool:  # the callback's follow-up marks off the request path
        return all(event.processed_at for event in await app.storage.inbound_for_order(order.id))

    await eventually(all_processed)
    stored = await app.storage.inbound_for_order(order.id)
    assert stored  # the customer's return, at least
    assert all(event.processed_at for event in stored)
    trail = await app.storage.audit_trail(order.id)
    assert order.paid_at is not None
    await app.reconciler.run_once(now=order.paid_at + timedelta(days=179))
    assert await app.storage.inbound_for_order(order.id) == stored
    await app.reconciler.run_once(now=order.paid_at + timedelta(days=181))
    assert await app.storage.inbound_for_order(order.id) == []
    assert (await latest(app)).state is S.PAID
    assert await app.storage.audit_trail(order.id) == trail


@both_databases
async def test_partial_then_full_refund_by_an_admin(
    app: Parts, user, payture, telegram: TelegramServer, http
) -> None:
    await paid_order(app, user, payture, http)
    order = await latest(app)
    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.send(f"/refund {order.id} 500")  # more than was paid: refused by us
    assert "only" in (await admin.wait_message("Refund refused"))["text"]
    assert payture.orders[order.provider_payment_id].amount == 45000
    await admin.send(f"/refund {order.id} 150")
    await admin.wait_message("Refund ₽150.00 of order")
    assert payture.orders[order.provider_payment_id].amount == 45000  # asked, nothing done yet
    await admin.press(text="Refund")
    await admin.wait_message("Refunded")
    assert (await latest(app)).state is S.PARTIALLY_REFUNDED
    assert payture.orders[order.provider_payment_id].amount == 30000
    await user.wait_message("refunded for order")
    await admin.send(f"/refund {order.id}")
    await admin.wait_message("Refund ₽300.00 of order")
    await admin.press(text="Refund")
    await admin.wait_message(predicate=lambda m: "is refunded" in (m.get("text") or ""))
    order = await latest(app)
    assert (order.state, order.refunded) == (S.REFUNDED, Money(45000, "RUB"))
    await admin.send(f"/order {order.id}")
    await admin.wait_message("Audit")


@both_databases
async def test_save_a_card_pay_with_it_and_forget_it(app: Parts, user, payture, http) -> None:
    await paid_order(app, user, payture, http)
    await user.press(text="Save this card")
    invite = await user.wait_message("save your card")
    redirect = await pay_card(http, payture, button_url(invite, "Save a card"))
    _, page = await browse(http, redirect)
    assert "Card saved" in page
    await user.wait_message("411111xxxxxx1111 saved")
    cards = await app.storage.saved_cards(CUSTOMER)
    assert [(c.provider, c.card_name) for c in cards] == [("payture", "411111xxxxxx1111")]

    message = await order_product(user, "Tea", "Ivan-chai", provider="Pay with 4111 11** **** 1111")
    assert "/vwapi/Pay" in button_url(message, "Pay")
    await browse(http, await pay(http, payture.url, message, "paid"))
    await user.wait_message("Payment received")
    assert (await latest(app)).state is S.PAID

    await user.send("/cards")
    await user.wait_message("Your saved cards")
    await user.press(text="Forget")
    assert await app.storage.saved_cards(CUSTOMER) == []


async def test_a_forged_card_return_saves_nothing(app: Parts, user, http) -> None:
    status, _ = await browse(
        http, f"{app.web_url}/cards/payture/{CUSTOMER}-9999999999-forged?result=True"
    )
    assert status == 404
    assert await app.storage.saved_cards(CUSTOMER) == []


async def test_malformed_xml_keeps_the_order_safe_with_a_clear_log(
    app: Parts, user, payture, http, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    message = await order_product(user, "Tea", "Ivan-chai")
    redirect = await pay(http, payture.url, message, "paid")
    payture.malformed_xml = True
    _, page = await browse(http, redirect)
    assert "Checking your payment" in page
    assert (await latest(app)).state is S.AWAITING_PAYMENT
    assert "malformed answer to GetState from Payture" in caplog.text


async def pay_card(http: aiohttp.ClientSession, payture: PaytureServer, url: str) -> str:
    async with http.post(f"{payture.url}/sandbox/pay", json={"url": url, "outcome": "paid"}) as r:
        return (await r.json())["redirect"]
