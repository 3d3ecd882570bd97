"""The money path's loose ends: nothing stays half-made, nothing is made twice by a double press."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp

from bot.app import Parts
from money import Money
from sandbox.botuser import BotUser
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage.base import NewOrder, OrderItem, OrderState
from tests.conftest import ADMIN, CUSTOMER, both_databases
from tests.flows import browse, order_product, pay


async def test_buy_now_pressed_twice_opens_one_order(app: Parts, user: BotUser) -> None:
    first = await order_product(user, "Coffee", "Cezve")
    await user.press(text="Buy now")
    second = await user.wait_message(
        predicate=lambda m: (
            m["message_id"] != first["message_id"] and (m.get("text") or "").startswith("Order #")
        )
    )
    assert second["text"].split("\n")[0] == first["text"].split("\n")[0]  # "Order #1 - ..."
    assert len(await app.checkout.orders_of(CUSTOMER, limit=5)) == 1


@both_databases
async def test_an_order_left_in_created_is_closed_by_the_sweep(app: Parts) -> None:
    """A checkout that never finished (the process died before the provider answered)."""
    stuck = await app.storage.create_order(
        NewOrder(
            user_id=CUSTOMER,
            chat_id=CUSTOMER,
            provider="redoya",
            total=Money(8500, "TRY"),
            token="stuck-token-abcdefghijkl",
            items=[OrderItem("cezve", "Cezve", 1, 8500)],
        )
    )
    await app.reconciler.run_once(now=stuck.created_at + timedelta(minutes=1))
    assert (await app.checkout.order(stuck.id)).state is OrderState.CREATED  # type: ignore[union-attr]
    await app.reconciler.run_once(now=stuck.created_at + timedelta(minutes=11))
    closed = await app.checkout.order(stuck.id)
    assert closed is not None
    assert closed.state is OrderState.FAILED
    assert (await app.checkout.audit(stuck.id))[-1].detail == "checkout did not finish"


async def test_check_payment_uses_the_return_stored_while_the_provider_was_down(
    app: Parts, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    """Redoya names its payment only on the return; a return that met an outage is stored,
    and the customer's "Check payment" must ask about that payment, not say "no payment yet"."""
    message = await order_product(user, "Coffee", "Cezve")
    redirect = await pay(http, redoya.url, message, "paid")
    redoya.verify_status_override = 500
    _, page = await browse(http, redirect)
    assert "Checking your payment" in page
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    assert order.provider_payment_id is None
    redoya.verify_status_override = None
    await user.press(text="Check payment", message_id=message["message_id"])
    assert (await user.answers())[-1]["text"] == "Paid. Thank you!"
    await user.wait_message("Payment received")


def texts_in(messages: list[dict]) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in messages]


@both_databases
async def test_paying_the_same_link_twice_reaches_the_admins(
    app: Parts,
    user: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    await browse(http, await pay(http, redoya.url, message, "paid"))
    await user.wait_message("Payment received")
    await app.notifier.flush()
    (card,) = [m for m in await user.messages() if m["message_id"] == message["message_id"]]
    assert "Pay" not in str(card.get("reply_markup") or "")  # the order's card lost its Pay button

    again = await pay(http, redoya.url, message, "paid")  # the old Pay link, paid once more
    _, page = await browse(http, again)
    assert "is paid" in page
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    assert order.state is OrderState.PAID  # the first payment stands; the second is a note
    assert "review: a second payment" in (await app.checkout.audit(order.id))[-1].detail
    admin = BotUser(telegram.url, ADMIN, session=http)
    told = await admin.wait_message("a second payment")
    second_id = again.split("order_id=")[1][:16]
    assert "85.00" in told["text"]
    assert second_id in told["text"]
    await browse(http, again)  # the same return again: told once
    await asyncio.gather(  # a double tap refunds once
        admin.press(text="Refunded in the back office", message_id=told["message_id"]),
        admin.press(text="Refunded in the back office", message_id=told["message_id"]),
    )
    await admin.wait_message(f"payment {second_id} of order #{order.id}")
    await user.wait_message("₺85.00 refunded: a payment for order #1 that the order did not need")
    await app.notifier.flush()
    reviews = [t for t in texts_in(await admin.messages()) if "a second payment" in t]
    assert len(reviews) == 1
    refunded = [t for t in texts_in(await user.messages()) if "refunded" in t]
    assert len(refunded) == 1


async def test_a_payment_after_the_order_was_cancelled_is_not_dropped(
    app: Parts,
    user: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    await user.press(text="Cancel order", message_id=message["message_id"])
    await user.wait_message("cancelled")
    _, page = await browse(http, await pay(http, redoya.url, message, "paid"))
    assert "checking this payment by hand" in page
    admin = BotUser(telegram.url, ADMIN, session=http)
    told = await admin.wait_message("paid after the order was cancelled")
    assert "85.00" in told["text"]
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    assert order.state is OrderState.NEEDS_REVIEW

    # and a second such payment of the same order is told too (a review kind recurs)
    _, page = await browse(http, await pay(http, redoya.url, message, "paid"))
    await admin.wait_message("a second payment for an order already being checked by the shop")


async def test_a_return_pointed_at_another_orders_payment_changes_nothing(
    app: Parts,
    user: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    """The payment id in a return URL is the customer's to edit: naming a payment of another
    order of theirs must not raise a 'second payment' (nor offer to refund it)."""
    first = await order_product(user, "Coffee", "Cezve")
    back_first = await pay(http, redoya.url, first, "paid")
    await browse(http, back_first)
    second = await order_product(user, "Coffee", "Turkish coffee")
    back_second = await pay(http, redoya.url, second, "paid")
    await browse(http, back_second)
    orders = await app.checkout.orders_of(CUSTOMER, limit=2)
    assert [o.state for o in orders] == [OrderState.PAID, OrderState.PAID]
    other_payment = back_second.split("order_id=")[1][:16]
    forged = back_first.split("order_id=")[0] + f"order_id={other_payment}"
    _, page = await browse(http, forged)
    assert "is paid" in page
    for order in orders:
        trail = await app.checkout.audit(order.id)
        assert not [e for e in trail if "second payment" in e.detail]
    admin = BotUser(telegram.url, ADMIN, session=http)
    assert not [t for t in texts_in(await admin.messages()) if "needs review" in t]


async def test_a_payment_after_a_declined_card_is_not_dropped(
    app: Parts,
    user: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    await browse(http, await pay(http, redoya.url, message, "failed"))
    assert (await app.checkout.orders_of(CUSTOMER, limit=1))[0].state is OrderState.FAILED
    await browse(http, await pay(http, redoya.url, message, "paid"))  # tried again, and paid
    admin = BotUser(telegram.url, ADMIN, session=http)
    told = await admin.wait_message("needs review")
    assert "85.00" in told["text"]
    assert (await app.checkout.orders_of(CUSTOMER, limit=1))[0].state is OrderState.NEEDS_REVIEW
