"""/review as an admin works it, through the chat: an order brought to needs_review the way
the code really does it (Redoya reports a different amount than the order's), then each of the
three actions with the customer told, a second press harmless; and paging, with a payment we
did not expect shown and refunded with its own button."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import pytest

from bot.app import Parts
from bot.keyboards import FulfilCb, ReviewAction, ReviewCb, UnexpectedCb
from money import Money
from sandbox.botuser import BotUser, buttons
from sandbox.payture import PaytureServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage.base import Fulfilment, NewOrder, OrderItem, OrderState
from tests.conftest import ADMIN, CUSTOMER, both_databases
from tests.flows import browse, eventually, order_product, pay

S = OrderState


pytestmark = pytest.mark.usefixtures("no_flood_gaps")


async def in_review(
    app: Parts, user: BotUser, admin: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> int:
    """A Cezve (₺85.00) for which Redoya says ₺80.00 was paid: an amount mismatch."""
    card = await order_product(user, "Coffee", "Cezve")
    redoya.paid_amount_override = 8000
    await browse(http, await pay(http, redoya.url, card, "paid"))
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    await eventually(lambda: _state(app, order.id, S.NEEDS_REVIEW))
    await user.wait_message("checking the payment")
    await admin.wait_message(f"Order #{order.id} needs review")  # the admins are told first
    return order.id


async def _state(app: Parts, order_id: int, state: OrderState) -> bool:
    order = await app.checkout.order(order_id)
    return order is not None and order.state is state


async def reviewed(admin: BotUser, order_id: int) -> dict:
    await admin.send("/review")
    shown = await admin.wait_message(f"Order #{order_id} needs review")
    assert "the provider says ₺80.00 was paid, the order is ₺85.00" in shown["text"]
    assert [b["text"] for b in buttons(shown)] == ["Accept as paid", "Refund", "Mark failed"]
    return shown


async def test_the_review_and_the_audit_speak_the_admins_language(
    app: Parts, user: BotUser, redoya: RedoyaServer, telegram: TelegramServer, http
) -> None:
    """The core writes its reasons and the audit in English; a Russian admin reads them in
    Russian: the reason, the states, who acted, amounts in one style, Redoya by its name."""
    admin = BotUser(telegram.url, ADMIN, language_code="ru", session=http)
    card = await order_product(user, "Coffee", "Cezve")
    redoya.paid_amount_override = 8000
    await browse(http, await pay(http, redoya.url, card, "paid"))
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    await eventually(lambda: _state(app, order.id, S.NEEDS_REVIEW))
    await admin.send("/review")
    shown = await admin.wait_message(f"Заказ №{order.id}")
    said = "провайдер сообщает об оплате 80,00\xa0₺, а заказ на 85,00\xa0₺"
    assert said in shown["text"], shown["text"]
    assert "Redoya" in shown["text"]
    assert "redoya" not in shown["text"]
    await admin.send(f"/order {order.id}")
    view = (await admin.wait_message("ожидает оплаты → проверяется магазином"))["text"]
    for english in ("awaiting_payment", "needs_review", " by ", "created by checkout", "TRY"):
        assert english not in view, (english, view)
    assert "- → создан · оформление заказа" in view
    assert said in view


async def test_a_late_payment_of_an_order_paid_again_says_a_refund_is_likely(
    app: Parts, user: BotUser, redoya: RedoyaServer, telegram: TelegramServer, http
) -> None:
    """Order A cancelled, the same coffee bought again as B and paid, then A's old payment
    link paid too: A's review names B, so nobody accepts a second charge for one coffee."""
    first = await order_product(user, "Coffee", "Cezve")
    await user.press(text="Cancel order", message_id=first["message_id"])
    await user.wait_message("cancelled")
    again = await order_product(user, "Coffee", "Cezve")
    await browse(http, await pay(http, redoya.url, again, "paid"))
    await user.wait_message("Payment received")
    await browse(http, await pay(http, redoya.url, first, "paid"))  # the old link, paid late
    late, paid = sorted(o.id for o in await app.checkout.orders_of(CUSTOMER, limit=5))
    await eventually(lambda: _state(app, late, S.NEEDS_REVIEW))
    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.wait_message(f"Order #{late} needs review")  # the admins' alert comes first
    await admin.send("/review")
    shown = await admin.wait_message(
        f"Order #{late} needs review", predicate=lambda m: bool(buttons(m))
    )
    assert (
        f"The customer already paid order #{paid} with the same items: accepting this one "
        "charges them twice. A refund is likely the right action."
    ) in shown["text"]


async def test_accept_as_paid_tells_the_customer_and_the_merchant(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    admin = BotUser(telegram.url, ADMIN, session=http)
    order_id = await in_review(app, user, admin, redoya, http)
    shown = await reviewed(admin, order_id)
    asked = await admin.press(text="Accept as paid", message_id=shown["message_id"])
    assert asked is not None
    assert "press Yes to confirm" in asked["text"]
    assert (await app.checkout.order(order_id)).state is S.NEEDS_REVIEW  # type: ignore[union-attr]
    await admin.press(text="No, go back", message_id=shown["message_id"])
    back = await admin.wait_message(f"Order #{order_id} needs review")
    assert [b["text"] for b in buttons(back)] == ["Accept as paid", "Refund", "Mark failed"]
    await admin.press(text="Accept as paid", message_id=shown["message_id"])
    await admin.press(text="Yes, accept as paid", message_id=shown["message_id"])
    await admin.wait_message(f"Order #{order_id} accepted as paid")
    await user.wait_message(f"The shop checked the payment for order #{order_id}: it is received")
    paid = await merchant.wait_message(f"Order #{order_id} paid")
    assert "📦 Shipped" in [b["text"] for b in buttons(paid)]  # now the merchant ships it
    again = ReviewCb(action=ReviewAction.FAIL, order=order_id).pack()
    answer = await admin.press(again, message_id=shown["message_id"], force=True)
    assert answer is not None
    assert "no longer in review: it is paid" in answer["text"]
    order = await app.checkout.order(order_id)
    assert order is not None
    assert (order.state, order.paid) == (S.PAID, Money(8500, "TRY"))
    trail = await app.checkout.audit(order_id)
    assert (trail[-1].actor, trail[-1].detail) == (f"admin:{ADMIN}", "accepted as paid")
    await admin.send("/review")
    await admin.wait_message("No orders need review.")


@both_databases
async def test_refund_of_what_the_provider_took_through_the_manual_flow(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    admin = BotUser(telegram.url, ADMIN, session=http)
    order_id = await in_review(app, user, admin, redoya, http)
    shown = await reviewed(admin, order_id)
    await admin.press(text="Refund", message_id=shown["message_id"])
    question = await admin.wait_message(f"Refund ₺80.00 of order #{order_id}?")
    assert "back office" in question["text"]  # Redoya has no refund API
    await admin.press(text="Refunded in the back office", message_id=question["message_id"])
    await admin.wait_message("is refunded")
    await user.wait_message(f"₺80.00 refunded for order #{order_id}")
    await merchant.wait_message(f"Order #{order_id}: ₺80.00 refunded to the customer")
    order = await app.checkout.order(order_id)
    assert order is not None
    assert (order.state, order.refunded, order.left_to_refund) == (
        S.REFUNDED,
        Money(8000, "TRY"),
        Money(0, "TRY"),
    )
    assert [r.state for r in await app.storage.refunds_for_order(order_id)] == ["done"]
    answer = await admin.press(text="Accept as paid", message_id=shown["message_id"])
    assert answer is not None
    assert "no longer in review: it is refunded" in answer["text"]


async def test_mark_failed_tells_the_customer_who_may_try_again(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    admin = BotUser(telegram.url, ADMIN, language_code="tr", session=http)
    order_id = await in_review(app, user, admin, redoya, http)
    await admin.send("/review")
    shown = await admin.wait_message(f"#{order_id}")
    await admin.press(text="Başarısız olarak işaretle", message_id=shown["message_id"])
    await admin.press(text="Evet, başarısız olarak işaretle", message_id=shown["message_id"])
    await admin.wait_message("başarısız olarak işaretlendi")
    told = await user.wait_message("could not accept it")
    assert [b["text"] for b in buttons(told)] == ["Try again"]
    await merchant.wait_message("do not ship it")
    assert (await app.checkout.order(order_id)).state is S.FAILED  # type: ignore[union-attr]


@both_databases
async def test_many_reviews_page_and_an_unexpected_payment_has_its_own_refund(
    app: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    ids = []
    for n in range(6):  # set up in storage: six orders a confirm sent to review
        order = await app.storage.create_order(
            NewOrder(
                user_id=CUSTOMER,
                chat_id=CUSTOMER,
                provider="redoya",
                total=Money(8500, "TRY"),
                token=f"review-{n}",
                items=[OrderItem("cezve", "Cezve, copper", 1, 8500)],
            )
        )
        await app.storage.transition(
            order.id, S.CREATED, S.NEEDS_REVIEW, actor="sweep", detail=f"reason {n}"
        )
        ids.append(order.id)
    kept, _ = await app.storage.record_unexpected(
        ids[0], "redoya", "LATE1", {}, Money(8500, "TRY"), "TRY", "paid after the order expired"
    )
    assert [p.id for p in await app.storage.unexpected_for_order(ids[0])] == [kept.id]
    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.send("/review")
    pages = await admin.wait_message("Page 1")
    texts = [m.get("text") or "" for m in await admin.bot_messages()]
    assert sum("needs review" in t for t in texts) == 5  # the newest five
    assert not any(f"Order #{ids[0]} needs review" in t for t in texts)
    await admin.press(text="▶", message_id=pages["message_id"])
    oldest = await admin.wait_message(f"Order #{ids[0]} needs review: reason 0")
    assert (
        "Payment we did not expect: ₺85.00, Redoya payment LATE1 (not refunded yet)"
        in oldest["text"]
    )
    await admin.press(text="Refund", message_id=oldest["message_id"])
    offer = await admin.wait_message(f"Refund ₺85.00: payment LATE1 of order #{ids[0]}?")
    await admin.press(text="Refunded in the back office", message_id=offer["message_id"])
    await admin.wait_message("Refunded ₺85.00: payment LATE1")
    assert (await app.storage.get_unexpected(kept.id)).state == "refunded"  # type: ignore[union-attr]


async def test_refund_through_the_api_of_an_order_in_review(
    app: Parts,
    user: BotUser,
    payture: PaytureServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    card = await order_product(user, "Tea", "Ivan-chai")
    await browse(http, await pay(http, payture.url, card, "paid"))
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    await eventually(lambda: _state(app, order.id, S.PAID))
    # what confirm does with an answer nobody understands (a chargeback notice)
    await app.storage.transition(
        order.id, S.PAID, S.NEEDS_REVIEW, actor="callback", detail="provider says needs_review"
    )
    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.send("/review")
    shown = await admin.wait_message(f"Order #{order.id} needs review: provider says needs_review")
    await admin.press(text="Refund", message_id=shown["message_id"])
    question = await admin.wait_message(f"Refund ₽450.00 of order #{order.id}?")
    refund = buttons(question)[0]["callback_data"]
    await admin.press(refund, message_id=question["message_id"])
    await admin.wait_message("is refunded")
    await user.wait_message(f"₽450.00 refunded for order #{order.id}")
    assert payture.orders[order.provider_payment_id].refunds == [45000]  # type: ignore[index]
    done = await app.checkout.order(order.id)
    assert done is not None
    assert (done.state, done.refunded) == (S.REFUNDED, Money(45000, "RUB"))
    await admin.press(refund, message_id=question["message_id"], force=True)  # a second press
    assert payture.orders[order.provider_payment_id].refunds == [45000]  # type: ignore[index]


async def review_of_a_payture_order(
    app: Parts, user: BotUser, payture: PaytureServer, admin: BotUser, http: aiohttp.ClientSession
) -> tuple[int, dict]:
    """An Ivan-chai paid with Payture, then sent to review by an answer nobody understands;
    the admin's /review message for it."""
    card = await order_product(user, "Tea", "Ivan-chai")
    await browse(http, await pay(http, payture.url, card, "paid"))
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    await eventually(lambda: _state(app, order.id, S.PAID))
    await app.storage.transition(
        order.id, S.PAID, S.NEEDS_REVIEW, actor="callback", detail="provider says needs_review"
    )
    await admin.send("/review")
    return order.id, await admin.wait_message(f"Order #{order.id} needs review")


async def test_an_order_whose_refund_is_in_flight_cannot_be_accepted(
    app: Parts,
    user: BotUser,
    payture: PaytureServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    """The refund of an order in review went out and nobody can tell yet whether it landed:
    the order is locked in refund_pending (the audit says it came from review), Accept and
    Mark failed are refused, and the sweep finishes the refund as done."""
    admin = BotUser(telegram.url, ADMIN, session=http)
    order_id, shown = await review_of_a_payture_order(app, user, payture, admin, http)
    await admin.press(text="Refund", message_id=shown["message_id"])
    question = await admin.wait_message(f"Refund ₽450.00 of order #{order_id}?")
    payture.lose_next_refund_answer = payture.down_after_next_refund = True
    await admin.press(text="Refund", message_id=question["message_id"])
    await admin.wait_message("checked again shortly")
    pending = await app.checkout.order(order_id)
    assert pending is not None
    assert pending.state is S.REFUND_PENDING
    trail = await app.checkout.audit(order_id)
    assert (trail[-1].from_state, trail[-1].detail) == (
        S.NEEDS_REVIEW,
        "refund 450.00 RUB (from review)",
    )
    for action in (ReviewAction.ACCEPT, ReviewAction.FAIL):
        press = ReviewCb(action=action, order=order_id, sure=True).pack()
        answer = await admin.press(press, message_id=shown["message_id"], force=True)
        assert answer is not None
        assert "no longer in review: it is refund in progress" in answer["text"]
    ship = FulfilCb(order=order_id, step=Fulfilment.DELIVERED).pack()  # never accepted: no goods
    answer = await admin.press(ship, message_id=shown["message_id"], force=True)
    assert answer is not None
    assert "only a paid order is shipped" in answer["text"]

    payture.getstate_status_override = None  # the bank is back: the sweep reads what is left
    (refund,) = await app.storage.refunds_for_order(order_id)
    await app.reconciler.run_once(now=refund.updated_at + timedelta(minutes=3))
    done = await app.checkout.order(order_id)
    assert done is not None
    assert (done.state, done.paid, done.refunded) == (
        S.REFUNDED,
        Money(45000, "RUB"),
        Money(45000, "RUB"),
    )
    assert [r.state for r in await app.storage.refunds_for_order(order_id)] == ["done"]
    assert payture.orders[done.provider_payment_id].refunds == [45000]  # type: ignore[index]
    await user.wait_message(f"₽450.00 refunded for order #{order_id}")


async def test_two_refund_questions_of_an_order_in_review_refund_once(
    app: Parts,
    user: BotUser,
    payture: PaytureServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    """Refund pressed twice on /review makes two questions (two keys); both pressed at once,
    then again one after the other: the money goes back once."""
    admin = BotUser(telegram.url, ADMIN, session=http)
    order_id, shown = await review_of_a_payture_order(app, user, payture, admin, http)
    questions = []
    for _ in range(2):
        await admin.press(text="Refund", message_id=shown["message_id"])
        questions.append(await admin.wait_message(f"Refund ₽450.00 of order #{order_id}?"))
    assert questions[0]["message_id"] != questions[1]["message_id"]
    presses = [(buttons(q)[0]["callback_data"], q["message_id"]) for q in questions]
    await asyncio.gather(*(admin.press(data, message_id=at) for data, at in presses))
    await admin.wait_message("is refunded")
    for data, at in presses:  # each again, after the refund: refused, nothing moves
        answer = await admin.press(data, message_id=at, force=True)
        assert answer is not None
        assert "Refund refused" in answer["text"]
    done = await app.checkout.order(order_id)
    assert done is not None
    assert (done.state, done.refunded) == (S.REFUNDED, Money(45000, "RUB"))
    assert payture.orders[done.provider_payment_id].refunds == [45000]  # type: ignore[index]
    assert [r.state for r in await app.storage.refunds_for_order(order_id)].count("done") == 1


async def test_accepting_a_late_payment_closes_its_one_tap_refund(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    """A payment that came after the order expired, accepted as the order's: its row is kept
    as accepted, so its one-tap refund can no longer send the money back after the goods
    went out; while that refund is under way, Accept is refused instead."""
    order = await app.storage.create_order(
        NewOrder(
            user_id=CUSTOMER,
            chat_id=CUSTOMER,
            provider="redoya",
            total=Money(8500, "TRY"),
            token="late-1",
            items=[OrderItem("cezve", "Cezve, copper", 1, 8500)],
        )
    )
    await app.storage.transition(order.id, S.CREATED, S.NEEDS_REVIEW, actor="sweep", detail="late")
    late, _ = await app.storage.record_unexpected(
        order.id, "redoya", "LATE1", {}, Money(8500, "TRY"), "TRY", "paid after the order expired"
    )
    admin = BotUser(telegram.url, ADMIN, session=http)
    await app.storage.move_unexpected(late.id, "open", "refunding")  # an admin's tap under way
    await admin.send("/review")
    shown = await admin.wait_message(f"Order #{order.id} needs review")
    await admin.press(text="Accept as paid", message_id=shown["message_id"])
    answer = await admin.press(text="Yes, accept as paid", message_id=shown["message_id"])
    assert answer is not None
    assert "is being refunded" in answer["text"]
    assert (await app.checkout.order(order.id)).state is S.NEEDS_REVIEW  # type: ignore[union-attr]

    await app.storage.move_unexpected(late.id, "refunding", "open")  # that refund was refused
    await admin.press(text="Yes, accept as paid", message_id=shown["message_id"])
    await admin.wait_message(f"Order #{order.id} accepted as paid")
    assert (await app.storage.get_unexpected(late.id)).state == "accepted"  # type: ignore[union-attr]
    tap = UnexpectedCb(id=late.id, manual=True).pack()
    answer = await admin.press(tap, message_id=shown["message_id"], force=True)
    assert answer is not None
    assert "accepted as the order's own" in answer["text"]
    assert (await app.storage.get_unexpected(late.id)).state == "accepted"  # type: ignore[union-attr]
    assert (await app.checkout.order(order.id)).state is S.PAID  # type: ignore[union-attr]
