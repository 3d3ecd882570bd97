"""Refunds as an admin makes them: asked first, one press one refund, durable across a lost
answer or a crash, retried after a refusal, and by hand where the provider has no refund API."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp

from bot.app import Parts
from money import Money
from providers.base import PaymentRef
from sandbox.botuser import BotUser, buttons
from sandbox.payture import PaytureServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage.base import OrderState
from tests.conftest import ADMIN, CUSTOMER, both_databases
from tests.flows import browse, order_product, pay

S = OrderState


async def paid(app: Parts, user: BotUser, server, http, category: str, product: str):
    message = await order_product(user, category, product)
    await browse(http, await pay(http, server.url, message, "paid"))
    await user.wait_message("Payment received")
    return (await app.checkout.orders_of(CUSTOMER, limit=1))[0]


def admin_of(telegram: TelegramServer, http: aiohttp.ClientSession) -> BotUser:
    return BotUser(telegram.url, ADMIN, session=http)


def refunds_at(payture: PaytureServer, order) -> list[int]:
    """The refunds the emulated bank made on this order's payment."""
    return payture.orders[order.provider_payment_id].refunds


@both_databases
async def test_refund_asks_first_and_one_press_refunds_once(
    app: Parts, user: BotUser, payture: PaytureServer, telegram: TelegramServer, http
) -> None:
    order = await paid(app, user, payture, http, "Tea", "Ivan-chai")
    admin = admin_of(telegram, http)
    await admin.send(f"/refund {order.id}")
    question = await admin.wait_message("Refund ₽450.00 of order")
    assert "Buyer: " in question["text"]
    assert "(id 1001)" in question["text"]
    assert [b["text"] for b in buttons(question)] == ["Refund", "Not now"]
    assert "Left to refund: ₽450.00" in question["text"]
    assert (await app.checkout.order(order.id)).state is S.PAID  # type: ignore[union-attr]
    await admin.send(f"/refund {order.id}")  # the same command again: a second question
    second = await admin.wait_message(
        predicate=lambda m: (
            "Refund ₽450.00" in (m.get("text") or "") and m["message_id"] != question["message_id"]
        )
    )
    await asyncio.gather(  # a double tap: both presses reach the bot
        admin.press(text="Refund", message_id=question["message_id"]),
        admin.press(text="Refund", message_id=question["message_id"]),
    )
    await admin.wait_message("is refunded")
    await admin.press(text="Refund", message_id=second["message_id"])  # the stale question
    later = await admin.press(text="Not now", message_id=second["message_id"])
    assert later is not None
    assert later["text"] == f"Nothing refunded. /refund {order.id} when you are ready."
    closed = await admin.wait_message(
        predicate=lambda m: m["message_id"] == second["message_id"] and not buttons(m)
    )
    assert "Refund ₽450.00" in closed["text"]
    done = await app.checkout.order(order.id)
    assert done is not None
    assert (done.state, done.refunded) == (S.REFUNDED, Money(45000, "RUB"))
    assert refunds_at(payture, order) == [45000]
    refunds = await app.storage.refunds_for_order(order.id)
    assert [r.state for r in refunds] == ["done"]
    await user.wait_message("refunded for order")
    customer = [m.get("text") or "" for m in await user.messages()]
    assert sum("refunded for order" in t for t in customer) == 1


async def test_a_refused_refund_can_be_tried_again(
    app: Parts, user: BotUser, payture: PaytureServer, telegram: TelegramServer, http
) -> None:
    order = await paid(app, user, payture, http, "Tea", "Ivan-chai")
    admin = admin_of(telegram, http)
    payture.refuse_next_refund = "ORDER_TIME_OUT"
    await admin.send(f"/refund {order.id}")
    await admin.wait_message("Refund ₽450.00")
    await admin.press(text="Refund")
    await admin.wait_message("too old to refund")
    assert (await app.checkout.order(order.id)).state is S.PAID  # type: ignore[union-attr]
    await admin.send(f"/refund {order.id}")  # a new request, a new key: not a "duplicate"
    second = await admin.wait_message(
        predicate=lambda m: (
            "Refund ₽450.00" in (m.get("text") or "") and "[Refund]" not in (m.get("text") or "")
        )
    )
    await admin.press(text="Refund", message_id=second["message_id"])
    await admin.wait_message("is refunded")
    assert [r.state for r in await app.storage.refunds_for_order(order.id)] == [
        "rejected",
        "done",
    ]


@both_databases
async def test_a_refund_whose_answer_was_lost_is_finished_from_what_is_left(
    app: Parts, user: BotUser, payture: PaytureServer, telegram: TelegramServer, http
) -> None:
    """The money moved, the answer did not come back: the core reads what is left on the
    payment (Payture reports it) and records the refund once; nothing is sent twice."""
    order = await paid(app, user, payture, http, "Tea", "Ivan-chai")
    admin = admin_of(telegram, http)
    payture.lose_next_refund_answer = True
    await admin.send(f"/refund {order.id} 150")
    await admin.wait_message("Refund ₽150.00")
    await admin.press(text="Refund")
    await admin.wait_message("is partially refunded")
    after = await app.checkout.order(order.id)
    assert after is not None
    assert after.refunded == Money(15000, "RUB")
    assert refunds_at(payture, order) == [15000]


@both_databases
async def test_a_crash_between_the_refund_and_our_write_is_finished_by_the_sweep(
    app: Parts, user: BotUser, payture: PaytureServer, http
) -> None:
    order = await paid(app, user, payture, http, "Tea", "Ivan-chai")
    # what a process that died right after the provider's answer leaves behind
    refund, _ = await app.storage.create_refund(order.id, order.total, f"{order.id}:x", "admin:42")
    pending = await app.storage.transition(order.id, S.PAID, S.REFUND_PENDING, actor="admin:42")
    assert pending is not None
    provider = app.providers.get("payture")
    ref = PaymentRef(pending.provider_payment_id, pending.payment_data)  # type: ignore[arg-type]
    await provider.refund(ref, order.total, "refund-1")
    assert refunds_at(payture, order) == [45000]

    await app.reconciler.run_once(now=refund.updated_at + timedelta(seconds=30))
    assert (await app.checkout.order(order.id)).state is S.REFUND_PENDING  # type: ignore[union-attr]
    await app.reconciler.run_once(now=refund.updated_at + timedelta(minutes=3))
    done = await app.checkout.order(order.id)
    assert done is not None
    assert (done.state, done.refunded) == (S.REFUNDED, order.total)
    assert refunds_at(payture, order) == [45000]  # asked what is left, never refunded again
    await user.wait_message("refunded for order")
    assert [r.state for r in await app.storage.refunds_for_order(order.id)] == ["done"]


async def test_a_cut_off_refund_that_moved_nothing_is_released(
    app: Parts, user: BotUser, payture: PaytureServer, http
) -> None:
    order = await paid(app, user, payture, http, "Tea", "Ivan-chai")
    refund, _ = await app.storage.create_refund(order.id, order.total, f"{order.id}:y", "admin:42")
    await app.storage.transition(order.id, S.PAID, S.REFUND_PENDING, actor="admin:42")
    await app.reconciler.run_once(now=refund.updated_at + timedelta(minutes=3))
    back = await app.checkout.order(order.id)
    assert back is not None
    assert back.state is S.PAID
    assert [r.state for r in await app.storage.refunds_for_order(order.id)] == ["rejected"]
    assert refunds_at(payture, order) == []


async def test_without_a_refund_api_the_admin_records_the_back_office_refund(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http,
) -> None:
    order = await paid(app, user, redoya, http, "Coffee", "Cezve")
    admin = admin_of(telegram, http)
    await admin.send(f"/refund {order.id} 35")
    question = await admin.wait_message("Refund ₺35.00 of order")
    assert "back office" in question["text"]
    await asyncio.gather(  # a double tap records it once
        admin.press(text="Refunded in the back office"),
        admin.press(text="Refunded in the back office"),
    )
    await admin.wait_message("is partially refunded")
    after = await app.checkout.order(order.id)
    assert after is not None
    assert (after.state, after.refunded) == (S.PARTIALLY_REFUNDED, Money(3500, "TRY"))
    await user.wait_message("₺35.00 refunded for order")
    await merchant.wait_message("₺35.00 refunded to the customer; ₺50.00 left")
    trail = await app.checkout.audit(order.id)
    assert "back office" in trail[-1].detail


async def test_two_refund_questions_make_one_refund(
    app: Parts, user: BotUser, payture: PaytureServer, telegram: TelegramServer, http
) -> None:
    """Two questions for ₽100.00 each: pressed at once, one refund; the other pressed while
    a refund is in flight (its outcome unknown), or after it, is refused as stale."""
    order = await paid(app, user, payture, http, "Tea", "Ivan-chai")
    admin = admin_of(telegram, http)
    questions = []
    for _ in range(4):
        await admin.send(f"/refund {order.id} 100")
        questions.append(await admin.wait_message("Refund ₽100.00"))
    presses = [(buttons(q)[0]["callback_data"], q["message_id"]) for q in questions]
    await asyncio.gather(*(admin.press(data, message_id=at) for data, at in presses[:2]))
    await admin.wait_message("is partially refunded")
    assert refunds_at(payture, order) == [10000]

    payture.lose_next_refund_answer = payture.down_after_next_refund = True
    await admin.press(text="Refund", message_id=questions[2]["message_id"])  # stale already
    await admin.wait_message("changed since this question")
    await admin.send(f"/refund {order.id} 100")
    fresh = await admin.wait_message("Left to refund: ₽350.00")
    await admin.press(text="Refund", message_id=fresh["message_id"])
    await admin.wait_message("checked again shortly")
    assert (await app.checkout.order(order.id)).state is S.REFUND_PENDING  # type: ignore[union-attr]
    data, at = buttons(fresh)[0]["callback_data"], fresh["message_id"]
    for press, message_id in [(data, at), presses[3]]:  # in flight: refused, nothing moves
        answer = await admin.press(press, message_id=message_id, force=True)
        assert answer is not None
        assert "Refund refused" in answer["text"]
    assert refunds_at(payture, order) == [10000, 10000]
    states = [r.state for r in await app.storage.refunds_for_order(order.id)]
    assert states.count("pending") == 1
    assert states.count("done") == 1
