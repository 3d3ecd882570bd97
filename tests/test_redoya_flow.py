"""Issue 3: order to paid notification through Redoya, end to end, through the sandbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp

from bot.app import BotApp, Parts
from money import Money
from sandbox.botuser import BotUser
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage.base import OrderState
from tests.conftest import ADMIN, CUSTOMER, both_databases
from tests.flows import browse, order_product, pay

S = OrderState


async def latest_order(app: Parts):
    return (await app.storage.orders_for_user(CUSTOMER, limit=1))[0]


def texts_of(messages: list[dict]) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in messages]


@both_databases
async def test_happy_path_from_start_to_paid_notification(
    app: Parts, user: BotUser, merchant: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    message = await order_product(user, "Coffee", "Turkish coffee")
    assert "₺150" in message["text"] or "₺150" in message["text"]
    redirect = await pay(http, redoya.url, message, "paid")
    status, page = await browse(http, redirect)
    assert status == 200
    assert "Payment received" in page
    await user.wait_message("Payment received for order #1")
    order = await latest_order(app)
    assert order.state is S.PAID
    assert order.paid == Money(15000, "TRY")
    assert order.provider_payment_id is not None
    assert len(order.provider_payment_id) == 16
    await merchant.wait_message("Order #1 paid")


async def test_failed_payment_tells_the_customer(
    app: Parts, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    status, page = await browse(http, await pay(http, redoya.url, message, "failed"))
    assert status == 200
    assert "not paid" in page
    await user.wait_message("did not go through")
    assert (await latest_order(app)).state is S.FAILED


async def test_not_confirmed_yet_then_paid_on_the_check_button(
    app: Parts, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    _, page = await browse(http, await pay(http, redoya.url, message, "pending"))
    assert "Checking your payment" in page
    order = await latest_order(app)
    assert order.state is S.AWAITING_PAYMENT
    assert order.provider_payment_id is not None

    await user.press(text="Check payment", message_id=message["message_id"])
    assert (await latest_order(app)).state is S.AWAITING_PAYMENT
    async with http.post(
        f"{redoya.url}/sandbox/orders/{order.provider_payment_id}/settle", json={"outcome": "paid"}
    ) as settled:
        assert settled.status == 200
    await user.press(text="Check payment", message_id=message["message_id"])
    await user.wait_message("Payment received")
    assert (await latest_order(app)).state is S.PAID


async def test_not_confirmed_yet_then_paid_by_the_sweep(
    app: Parts, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    await browse(http, await pay(http, redoya.url, message, "pending"))
    order = await latest_order(app)
    await app.reconciler.run_once(now=order.next_check_at)
    assert (await latest_order(app)).state is S.AWAITING_PAYMENT
    async with http.post(
        f"{redoya.url}/sandbox/orders/{order.provider_payment_id}/settle", json={"outcome": "paid"}
    ):
        pass
    order = await latest_order(app)
    assert order.next_check_at is not None
    assert await app.reconciler.run_once(now=order.next_check_at) == 1
    await user.wait_message("Payment received")
    assert (await latest_order(app)).state is S.PAID


async def test_an_unpaid_order_expires_after_its_deadline(
    app: Parts, user: BotUser, http: aiohttp.ClientSession
) -> None:
    await order_product(user, "Coffee", "Cezve")  # the customer never pays nor returns
    order = await latest_order(app)
    assert order.expires_at is not None
    await app.reconciler.run_once(now=order.expires_at - timedelta(minutes=1))
    assert (await latest_order(app)).state is S.AWAITING_PAYMENT
    await app.reconciler.run_once(now=order.expires_at + timedelta(minutes=6))
    assert (await latest_order(app)).state is S.EXPIRED
    await user.wait_message("expired before it was paid")


@both_databases
async def test_the_same_return_twenty_times_at_once_pays_and_notifies_once(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    http: aiohttp.ClientSession,
) -> None:
    message = await order_product(user, "Coffee", "Turkish coffee")
    redirect = await pay(http, redoya.url, message, "paid")
    results = await asyncio.gather(*(browse(http, redirect) for _ in range(20)))
    assert all(status == 200 for status, _ in results)
    await user.wait_message("Payment received")
    await merchant.wait_message("paid")
    await app.notifier.flush()
    await asyncio.sleep(0.3)
    order = await latest_order(app)
    trail = await app.storage.audit_trail(order.id)
    assert [e.to_state for e in trail].count(S.PAID) == 1
    assert sum("Payment received" in t for t in texts_of(await user.bot_messages())) == 1
    assert sum("paid" in t for t in texts_of(await merchant.bot_messages())) == 1


async def test_forged_or_unknown_return_token_is_404_and_changes_nothing(
    app: Parts, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    redirect = await pay(http, redoya.url, message, "paid")
    base, _, query = redirect.partition("?")
    forged = base.rsplit("/", 1)[0] + "/not-a-real-token?" + query
    status, _ = await browse(http, forged)
    assert status == 404
    status, _ = await browse(http, f"{app.web_url}/return/payture/{base.rsplit('/', 1)[1]}?{query}")
    assert status == 404  # a real token under another provider's path
    order = await latest_order(app)
    assert order.state is S.AWAITING_PAYMENT
    assert order.provider_payment_id is None

    # a real token with a Redoya order id Redoya never issued: nothing changes either
    status, _ = await browse(http, f"{base}?result=success&order_id=AAAAAAAAAAAAAAAA")
    assert status == 200
    order = await latest_order(app)
    assert order.state is S.AWAITING_PAYMENT
    assert order.provider_payment_id is None


async def test_paid_with_a_different_amount_goes_to_review_not_paid(
    app: Parts,
    user: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    message = await order_product(user, "Coffee", "Turkish coffee")
    redoya.paid_amount_override = 300  # 3 lira instead of 150: a token minted by the customer
    _, page = await browse(http, await pay(http, redoya.url, message, "paid"))
    assert "checking this payment by hand" in page
    await user.wait_message("by hand")
    order = await latest_order(app)
    assert order.state is S.NEEDS_REVIEW
    assert not any("Payment received" in t for t in texts_of(await user.bot_messages()))
    admin = BotUser(telegram.url, ADMIN, session=http)
    review = await admin.wait_message("needs review")
    assert "the provider says ₺3.00 was paid, the order is ₺150.00" in review["text"]


async def test_provider_500_leaves_the_order_awaiting_and_the_sweep_recovers_it(
    app: Parts, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    redirect = await pay(http, redoya.url, message, "paid")
    redoya.verify_status_override = 500
    status, page = await browse(http, redirect)
    assert status == 200
    assert "Checking your payment" in page
    order = await latest_order(app)
    assert order.state is S.AWAITING_PAYMENT
    calls = redoya.verify_calls
    await app.reconciler.run_once()  # the next sweep, 5 s on: the order is backing off
    assert redoya.verify_calls == calls

    redoya.verify_status_override = None
    await app.reconciler.run_once(now=order.next_check_at)  # the stored return is replayed
    await user.wait_message("Payment received")
    assert (await latest_order(app)).state is S.PAID


async def test_provider_timeout_leaves_the_order_awaiting_and_it_is_recovered(
    make_settings, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    async with BotApp(make_settings(http_timeout=0.5)) as app:
        message = await order_product(user, "Coffee", "Cezve")
        redirect = await pay(http, redoya.url, message, "paid")
        redoya.verify_delay = 2.0
        _, page = await browse(http, redirect)
        assert "Checking your payment" in page
        order = await latest_order(app)
        assert order.state is S.AWAITING_PAYMENT
        redoya.verify_delay = 0
        await app.reconciler.run_once(now=order.next_check_at)
        assert (await latest_order(app)).state is S.PAID


@both_databases
async def test_restart_between_paid_and_sent_delivers_exactly_once(
    make_settings,
    user: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    settings = make_settings()
    async with BotApp(settings) as app:
        message = await order_product(user, "Coffee", "Cezve")
        redirect = await pay(http, redoya.url, message, "paid")
        telegram.fail_next(
            "sendMessage", error_code=500, description="Internal Server Error", times=100
        )
        await browse(http, redirect)
        assert (await latest_order(app)).state is S.PAID
    telegram.fail_next("sendMessage", error_code=500, times=0)  # Telegram is healthy again

    async with BotApp(settings) as app:
        await user.wait_message("Payment received", timeout=10)
        await app.notifier.flush()
        await asyncio.sleep(0.5)
    assert sum("Payment received" in t for t in texts_of(await user.bot_messages())) == 1


async def test_a_customer_who_blocked_the_bot_is_not_retried_and_the_merchant_still_hears(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    admin = BotUser(telegram.url, ADMIN, session=http)
    message = await order_product(user, "Coffee", "Cezve")
    redirect = await pay(http, redoya.url, message, "paid")
    telegram.fail_next(
        "sendMessage", error_code=403, description="Forbidden: bot was blocked by the user"
    )
    await browse(http, redirect)
    await merchant.wait_message("Order #1 paid")
    await app.notifier.flush()
    assert await app.storage.due_outbox(datetime.now(UTC) + timedelta(hours=1)) == []
    assert not any("Payment received" in t for t in texts_of(await user.bot_messages()))
    await admin.send("/stats")
    await admin.wait_message("Messages Telegram refused: 1")
