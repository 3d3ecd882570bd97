"""Issue 20: Telegram Stars end to end through the Telegram emulator: the invoice in the chat,
the pre-checkout question answered from storage, exactly one payment per charge, whole refunds,
the `refunded_payment` update, and reconciliation with the star ledger."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiogram.exceptions import TelegramBadRequest

from bot.app import BotApp, Parts
from bot.config import Settings
from bot.core import ChatPayment, CheckoutService
from money import Money
from providers.base import PaymentRef, PaymentState
from sandbox.botuser import BotUser
from sandbox.telegram import TelegramServer
from storage.base import OrderState
from tests.conftest import ADMIN, CUSTOMER, both_databases
from tests.flows import eventually
from tests.test_modes import free_port

S = OrderState
STRANGER = 2002

CATALOG = """
[[categories]]
id = "gifts"
title = "Gifts"

[[products]]
id = "mug"
category = "gifts"
name = "Star mug"
price = 50
currency = "XTR"
description = "A mug for stargazers."

[[products]]
id = "club"
category = "gifts"
name = "Coffee club, one month"
price = 120
currency = "XTR"
"""


@pytest.fixture
def stars_settings(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Callable[..., Settings]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG, encoding="utf-8")

    def make(**overrides: Any) -> Settings:
        return make_settings(catalog_path=catalog, **overrides)

    return make


@pytest.fixture
async def app(stars_settings: Callable[..., Settings]) -> AsyncIterator[Parts]:
    async with BotApp(stars_settings()) as parts:
        yield parts


def is_invoice(message: dict) -> bool:
    return "invoice" in message


async def buy(user: BotUser, product: str = "mug") -> dict:
    """Buy now on a Stars product: the invoice message is the order's card."""
    await user.send(f"/start p_{product}")
    await user.wait_message("Star mug" if product == "mug" else "Coffee club")
    await user.press(text="Buy now")
    return await user.wait_message(predicate=is_invoice)


async def bought(user: BotUser) -> dict:
    """Bought and paid: the emulator's answer to the payment (its charge id)."""
    await buy(user)
    paid = await user.pay_invoice()
    assert paid["ok"] is True, paid
    await user.wait_message("Payment received")
    return paid


async def paid_after_cancel(user: BotUser) -> dict:
    """Charged, then cancelled before the payment's update reached the bot, then delivered."""
    invoice = await buy(user)
    charged = await user.pay_invoice(drop_update=True)
    await user.press(text="Cancel order", message_id=invoice["message_id"])
    await user.redeliver_payment(charged["charge_id"])
    return charged


async def order_of(app: Parts, order_id: int = 1):
    order = await app.checkout.order(order_id)
    assert order is not None
    return order


def admin_of(telegram: TelegramServer, http: aiohttp.ClientSession) -> BotUser:
    return BotUser(telegram.url, ADMIN, session=http)


async def count_messages(user: BotUser, text: str) -> int:
    return sum(text in (m.get("text") or "") for m in await user.bot_messages())


async def settle(app: Parts, seconds: float = 0.3) -> None:
    """Let polling deliver what the emulator queued, then flush the outbox."""
    await asyncio.sleep(seconds)
    await app.notifier.flush()


@both_databases
async def test_a_stars_purchase_from_the_invoice_to_paid(
    app: Parts, user: BotUser, merchant: BotUser, telegram: TelegramServer
) -> None:
    invoice = await buy(user)
    details = invoice["invoice"]
    assert (details["currency"], details["total_amount"]) == ("XTR", 50)
    assert details["title"] == "Order #1"
    assert "Star mug" in details["description"]
    assert invoice["reply_markup"]["inline_keyboard"][0][0]["pay"] is True
    stored = telegram.invoices[(CUSTOMER, invoice["message_id"])]
    assert len(stored["payload"].encode()) <= 128
    assert ".1." in stored["payload"]

    paid = await user.pay_invoice()
    assert paid["ok"] is True, paid
    assert paid["answered_in"] < 10
    await user.wait_message("Payment received for order #1")
    order = await order_of(app)
    assert order.state is S.PAID
    assert order.paid == Money(50, "XTR")
    assert order.provider_payment_id == paid["charge_id"]
    assert order.payment_data["user_id"] == str(CUSTOMER)
    await merchant.wait_message("Order #1 paid")


async def test_webhook_mode_answers_the_pre_checkout_and_confirms(
    stars_settings: Callable[..., Settings], telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    settings = stars_settings(
        web_port=port, webhook_url=f"http://127.0.0.1:{port}", webhook_secret="hook-secret-123"
    )
    async with BotApp(settings) as parts:
        user = BotUser(telegram.url, CUSTOMER, session=http)
        await buy(user)
        paid = await user.pay_invoice()
        assert paid["ok"] is True, paid
        await user.wait_message("Payment received for order #1")
        assert (await order_of(parts)).state is S.PAID


@contextlib.contextmanager
def held_by_another_process(path: Path) -> Iterator[None]:
    """The SQLite file locked for writing (BEGIN EXCLUSIVE) for the block: the bot's stores fail
    after their busy timeout, its reads go on."""
    lock = sqlite3.connect(path, isolation_level=None, timeout=0)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        lock.execute("ROLLBACK")
        lock.close()


async def test_webhook_mode_answers_a_payment_only_once_it_is_stored(
    stars_settings: Callable[..., Settings],
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A `successful_payment` the bot cannot store (another process holds the SQLite file) is
    answered 500, not 200 with the work left to the background: Telegram sends it again, and
    once the file is free the order is paid. The payer is never asked to try again."""
    port = free_port()
    settings = stars_settings(
        web_port=port,
        webhook_url=f"http://127.0.0.1:{port}",
        webhook_secret="hook-secret-123",
        database_url=f"sqlite:///{tmp_path}/bot.db",
    )
    async with BotApp(settings) as parts:
        user = BotUser(telegram.url, CUSTOMER, session=http)
        await buy(user)
        with held_by_another_process(tmp_path / "bot.db"):
            paid = await user.pay_invoice()
            assert paid["ok"] is True, paid  # the pre-checkout only reads
            await eventually(lambda: telegram.webhook_refused, timeout=15)
        assert {status for _, status in telegram.webhook_refused} == {500}
        await user.wait_message("Payment received for order #1", timeout=10)
        assert (await order_of(parts)).state is S.PAID
        assert await count_messages(user, "Please try again") == 0


async def test_a_polled_payment_that_cannot_be_stored_is_found_in_the_ledger(
    stars_settings: Callable[..., Settings],
    user: BotUser,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Polling has taken the update when its store fails: the payer is not asked to try again
    (they would pay twice), and the ledger's reconciliation pays the order once the file is
    free."""
    settings = stars_settings(database_url=f"sqlite:///{tmp_path}/bot.db")
    async with BotApp(settings) as parts:
        await buy(user)
        with held_by_another_process(tmp_path / "bot.db"):
            assert (await user.pay_invoice())["ok"] is True
            await eventually(lambda: "was not stored" in caplog.text, timeout=15)
        assert (await order_of(parts)).state is S.AWAITING_PAYMENT
        await parts.checkout.reconcile_ledgers()
        await user.wait_message("Payment received for order #1")
        assert await count_messages(user, "Please try again") == 0


async def test_a_pre_checkout_answered_too_late_is_a_warning_and_nothing_more(
    app: Parts, user: BotUser, telegram: TelegramServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The payer gave up (or Telegram's 10 s ran out) before the bot answered: Telegram refuses
    the answer and charged nothing, so there is nobody to tell. A warning in the log, not a
    traceback, and no apology in the chat."""
    await buy(user)
    assert (await user.pay_invoice(timeout=0))["timed_out"] is True
    await eventually(lambda: "Telegram refused the answer, nothing was charged" in caplog.text)
    assert not [record for record in caplog.records if record.exc_info]
    assert (await order_of(app)).state is S.AWAITING_PAYMENT
    assert not telegram.charges
    assert await count_messages(user, "Please try again") == 0


async def test_a_cancelled_orders_invoice_offers_pay_no_more(
    app: Parts, user: BotUser, telegram: TelegramServer
) -> None:
    """Cancel on the invoice: the invoice (whose Pay button Telegram always shows) is gone,
    the order's card says it is cancelled."""
    invoice = await buy(user)
    await user.press(text="Cancel order", message_id=invoice["message_id"])
    await user.wait_message("Order #1 — cancelled")
    assert (await order_of(app)).state is S.CANCELLED
    shown = await user.bot_messages()
    assert invoice["message_id"] not in [m["message_id"] for m in shown]
    assert not any("invoice" in m for m in shown)


async def test_the_pre_checkout_refuses_a_cancelled_order(
    app: Parts, user: BotUser, telegram: TelegramServer
) -> None:
    await buy(user)
    assert await app.checkout.cancel(1, user.user_id) is not None  # from /orders, say
    assert (await order_of(app)).state is S.CANCELLED
    refused = await user.pay_invoice()
    assert refused["ok"] is False
    assert refused["charge_id"] is None
    assert "can no longer be paid" in refused["error_message"]
    assert not telegram.charges


async def test_the_pre_checkout_refuses_a_forged_payload_and_another_users_invoice(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    invoice = await buy(user)
    stored = telegram.invoices[(CUSTOMER, invoice["message_id"])]
    forged = stored["payload"][:-4] + "AAAA"
    await app.bot.send_invoice(
        CUSTOMER, "Order 1", "Star mug", forged, "XTR", [{"label": "x", "amount": 1}]
    )
    refused = await user.pay_invoice()  # the newest invoice: the forged one, for 1 star
    assert refused["ok"] is False
    assert "not valid" in refused["error_message"]
    # the customer's real invoice, forwarded to someone else, who tries to pay it
    stranger = BotUser(telegram.url, STRANGER, session=http)
    refused = await stranger.pay_invoice(chat_id=CUSTOMER, message_id=invoice["message_id"])
    assert refused["ok"] is False
    assert "another customer" in refused["error_message"]
    assert not telegram.charges
    assert (await order_of(app)).state is S.AWAITING_PAYMENT


async def test_the_same_payment_delivered_again_changes_nothing(
    app: Parts, user: BotUser, merchant: BotUser
) -> None:
    paid = await bought(user)
    await asyncio.gather(*(user.redeliver_payment(paid["charge_id"]) for _ in range(5)))
    await settle(app)
    assert await count_messages(user, "Payment received") == 1
    assert await count_messages(merchant, "Order #1 paid") == 1
    trail = await app.checkout.audit(1)
    assert [e.to_state for e in trail].count(S.PAID) == 1


async def test_a_payment_racing_the_customers_cancel_has_one_outcome(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    invoice = await buy(user)
    charged = await user.pay_invoice(drop_update=True)  # charged; the update is held back
    assert charged["ok"] is True
    await asyncio.gather(
        user.redeliver_payment(charged["charge_id"]),
        user.press(text="Cancel order", message_id=invoice["message_id"]),
    )
    await settle(app, 0.5)
    order = await order_of(app)
    admin = admin_of(telegram, http)
    if order.state is S.PAID:  # the payment came first: the cancel was refused
        assert await count_messages(user, "Payment received") == 1
        assert not await admin.bot_messages()
    else:  # the cancel came first: the stars are kept as a payment we did not expect
        assert order.state is S.NEEDS_REVIEW
        review = await admin.wait_message("needs review")
        assert charged["charge_id"] in review["text"]
        assert any(
            "Refund" in b["text"] for row in review["reply_markup"]["inline_keyboard"] for b in row
        )
        assert await count_messages(user, "Payment received") == 0
        assert len(await admin.bot_messages()) == 1


async def test_a_payment_after_the_cancel_is_kept_for_review_with_a_one_tap_refund(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    charged = await paid_after_cancel(user)
    admin = admin_of(telegram, http)
    review = await admin.wait_message("needs review")
    assert "50" in review["text"]
    assert charged["charge_id"] in review["text"]
    assert (await order_of(app)).state is S.NEEDS_REVIEW
    await admin.press(text="Refund")
    await admin.wait_message("Refunded 50")
    assert telegram.charges[charged["charge_id"]]["refunded"] is True
    await user.wait_message("that the order did not need")
    trail = await app.checkout.audit(1)
    assert "not expected" in trail[-1].detail  # the refund is in the order's trail


@both_databases
async def test_a_full_refund_then_a_second_is_refused_as_already_refunded(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    paid = await bought(user)
    admin = admin_of(telegram, http)
    await admin.send("/refund 1")
    await admin.wait_message("Refund 50 ⭐ of order #1")
    await admin.press(text="Refund")
    await admin.wait_message("Refunded. Order #1 is refunded")
    assert telegram.charges[paid["charge_id"]]["refunded"] is True
    await user.wait_message("50 ⭐ refunded for order #1")
    await settle(app)  # Telegram's refunded_payment update came too: nothing changes twice
    assert await count_messages(user, "refunded for order") == 1
    order = await order_of(app)
    assert order.state is S.REFUNDED
    assert order.refunded_so_far == Money(50, "XTR")
    await admin.send("/refund 1")
    await admin.wait_message("already refunded in full")


async def test_a_partial_stars_refund_is_refused_before_any_call(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    paid = await bought(user)
    admin = admin_of(telegram, http)
    await admin.send("/refund 1 10")
    await admin.wait_message("refunds only the whole amount")
    assert telegram.charges[paid["charge_id"]]["refunded"] is False
    assert (await order_of(app)).state is S.PAID


async def test_a_refund_made_elsewhere_arrives_as_refunded_payment_once(
    app: Parts, user: BotUser, merchant: BotUser
) -> None:
    paid = await bought(user)
    # refunded outside the bot (another tool on the same token): Telegram tells the bot
    assert await app.bot.refund_star_payment(CUSTOMER, paid["charge_id"])
    await user.wait_message("50 ⭐ refunded for order #1")
    await merchant.wait_message("refunded to the customer")
    await user.redeliver_payment(paid["charge_id"])  # and an old payment update again
    await settle(app)
    order = await order_of(app)
    assert order.state is S.REFUNDED
    assert await count_messages(user, "refunded for order") == 1
    assert [e.actor for e in await app.checkout.audit(1)].count("telegram") == 2


async def test_telegrams_already_refunded_is_an_outcome_not_an_error(
    app: Parts, user: BotUser
) -> None:
    paid = await bought(user)
    stars = app.providers.get("stars")
    ref = (await order_of(app)).provider_payment_id
    assert ref == paid["charge_id"]
    with pytest.raises(TelegramBadRequest):  # the emulator says it as Telegram does
        await app.bot.refund_star_payment(CUSTOMER, "no-such-charge")
    pref = PaymentRef(ref, {"user_id": str(CUSTOMER)})
    first = await stars.refund(pref, Money(50, "XTR"), "k1")
    again = await stars.refund(pref, Money(50, "XTR"), "k2")
    assert (first.already, again.already) == (False, True)
    assert again.provider_code == "CHARGE_ALREADY_REFUNDED"
    status = await stars.fetch_status(pref)
    assert status.state is PaymentState.REFUNDED


async def test_reconciliation_confirms_a_payment_whose_update_was_lost(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    await buy(user)
    charged = await user.pay_invoice(drop_update=True)  # Telegram took the stars; we never heard
    assert (await order_of(app)).state is S.AWAITING_PAYMENT
    admin = admin_of(telegram, http)
    await admin.send("/reconcile")
    report = await admin.wait_message("Telegram lists for the last 48 hours: 1")
    assert "#1" in report["text"]
    assert "never reached us" in report["text"]
    await user.wait_message("Payment received for order #1")
    order = await order_of(app)
    assert order.state is S.PAID
    assert order.provider_payment_id == charged["charge_id"]
    told = await admin.wait_message("whose update never reached us")
    assert charged["charge_id"] in told["text"]
    reports = await app.checkout.reconcile_ledgers()  # again: nothing new, nothing told twice
    assert (reports[0].recovered, reports[0].unlisted) == ([], [])
    await settle(app)
    assert await count_messages(admin, "whose update never reached us") == 1


async def test_reconciliation_tells_the_admins_of_a_paid_order_telegram_does_not_list(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    await bought(user)
    order = await order_of(app)
    assert order.paid_at is not None
    telegram.star_transactions.clear()  # Telegram's list no longer has it
    later = order.paid_at + timedelta(minutes=15)
    for _ in range(2):
        reports = await app.checkout.reconcile_ledgers(now=later, window=timedelta(hours=1))
        assert reports[0].unlisted == [order.id]
    admin = admin_of(telegram, http)
    await admin.wait_message("does not list its payment")
    await settle(app)
    assert await count_messages(admin, "does not list its payment") == 1


async def test_the_ledger_is_read_from_its_end_however_long(
    app: Parts, user: BotUser, telegram: TelegramServer
) -> None:
    """Telegram lists oldest first with no total: 250 older lines before ours."""
    old = {"id": "old", "amount": 1, "date": 1_000_000, "source": {"type": "fragment"}}
    telegram.star_transactions.extend({**old, "id": f"old{i}"} for i in range(250))
    await buy(user)
    charged = await user.pay_invoice(drop_update=True)
    reports = await app.checkout.reconcile_ledgers()
    assert reports[0].listed == 1
    assert reports[0].recovered == [1]
    stars = app.providers.get("stars")
    status = await stars.fetch_status(PaymentRef(charged["charge_id"], {"user_id": str(CUSTOMER)}))
    assert status.state is PaymentState.PAID
    assert status.paid == Money(50, "XTR")


async def test_orders_sends_a_fresh_invoice_for_the_same_order(app: Parts, user: BotUser) -> None:
    first = await buy(user)
    await user.send("/orders")
    await user.wait_message("Your orders")
    await user.press(text="#1")
    again = await user.wait_message(predicate=is_invoice)
    assert again["message_id"] != first["message_id"]
    assert again["invoice"]["total_amount"] == 50
    paid = await user.pay_invoice(message_id=again["message_id"])
    assert paid["ok"] is True
    await user.wait_message("Payment received for order #1")
    refused = await user.pay_invoice(message_id=first["message_id"])  # the old one, same order
    assert refused["ok"] is False
    assert "paid already" in refused["error_message"]


async def test_an_expired_stars_order_is_not_payable(app: Parts, user: BotUser) -> None:
    await buy(user)
    order = await order_of(app)
    assert order.expires_at is not None
    await app.reconciler.run_once(now=order.expires_at + timedelta(minutes=6))
    assert (await order_of(app)).state is S.EXPIRED
    refused = await user.pay_invoice()
    assert refused["ok"] is False
    assert "can no longer be paid" in refused["error_message"]


async def test_two_invoices_of_one_order_both_charged_keep_the_second_for_review(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    """Both pre-checkouts were answered while the order still awaited payment."""
    one = await buy(user)
    order = await order_of(app)
    await app.checkout.send_invoice_again(CUSTOMER, order.id)
    two = await user.wait_message(predicate=is_invoice, after_id=one["message_id"])
    charges = await asyncio.gather(
        user.pay_invoice(message_id=one["message_id"], drop_update=True),
        user.pay_invoice(message_id=two["message_id"], drop_update=True),
    )
    assert [c["ok"] for c in charges] == [True, True]
    for charge in charges:
        await user.redeliver_payment(charge["charge_id"])
    admin = admin_of(telegram, http)
    review = await admin.wait_message("a second payment")
    paid = await app.checkout.order(order.id)
    assert paid is not None
    assert paid.state is S.PAID  # keeps its state, the review is a note on it
    second = next(c["charge_id"] for c in charges if c["charge_id"] != paid.provider_payment_id)
    assert second in review["text"]
    await settle(app)
    assert await count_messages(user, "Payment received") == 1


async def test_a_cut_off_stars_refund_is_finished_from_the_ledger(
    app: Parts, user: BotUser, telegram: TelegramServer
) -> None:
    paid = await bought(user)
    order = await order_of(app)
    # what a process that died right after Telegram's answer leaves behind
    refund, _ = await app.storage.create_refund(order.id, order.total, "1:x", "admin:42")
    assert await app.storage.transition(order.id, S.PAID, S.REFUND_PENDING, actor="admin:42")
    assert await app.bot.refund_star_payment(CUSTOMER, paid["charge_id"])
    await settle(app)  # the refunded_payment update: our own refund, left to the sweep
    assert (await order_of(app)).state is S.REFUND_PENDING
    await app.reconciler.run_once(now=refund.updated_at + timedelta(minutes=3))
    done = await order_of(app)
    assert (done.state, done.refunded) == (S.REFUNDED, Money(50, "XTR"))
    assert [r.state for r in await app.storage.refunds_for_order(order.id)] == ["done"]
    await user.wait_message("refunded for order #1")


async def test_a_charge_another_replica_applied_first_is_not_a_payment_we_did_not_expect(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    """Replica B read the order awaiting payment; replica A confirmed the charge meanwhile."""
    replica = CheckoutService(
        app.storage, app.providers, public_url=app.web_url, callback_secret="s", admin_ids=[ADMIN]
    )
    await buy(user)
    charged = await user.pay_invoice(drop_update=True)
    stale = await order_of(app)
    payment = ChatPayment(
        CUSTOMER,
        "XTR",
        50,
        telegram.charges[charged["charge_id"]]["invoice_payload"],
        charged["charge_id"],
        at=datetime.now(UTC),
    )
    await app.checkout.receive_chat_payment("stars", payment)  # replica A
    inbound = app.providers.get("stars").parse_chat_payment(payment)  # type: ignore[attr-defined]
    await replica._confirm(stale, "chat", inbound, datetime.now(UTC))  # replica B goes on
    order = await order_of(app)
    assert order.state is S.PAID
    assert await app.storage.find_unexpected("stars", charged["charge_id"]) is None
    await settle(app)
    assert not await admin_of(telegram, http).bot_messages()


async def test_a_payment_naming_no_order_of_ours_is_told_to_the_admins_once(
    app: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    """Signed with a secret we no longer have: the stars are with us all the same."""
    stranger = ChatPayment(CUSTOMER, "XTR", 70, "s1.9.signed-with-an-older-secret", "stx-old-1")
    assert await app.checkout.receive_chat_payment("stars", stranger) is None
    assert await app.checkout.receive_chat_payment("stars", stranger) is None
    telegram.star_transactions.append(  # the ledger lists it too
        {
            "id": "stx-old-1",
            "amount": 70,
            "date": int(time.time()),
            "source": {
                "type": "user",
                "transaction_type": "invoice_payment",
                "user": {"id": CUSTOMER, "is_bot": False, "first_name": "Ada"},
                "invoice_payload": stranger.invoice_payload,
            },
        }
    )
    [report] = await app.checkout.reconcile_ledgers()
    assert report.strangers == 1
    admin = admin_of(telegram, http)
    told = await admin.wait_message("names no order of ours")
    assert "stx-old-1" in told["text"]
    assert "70 ⭐" in told["text"]
    assert str(CUSTOMER) in told["text"]
    await settle(app)
    assert await count_messages(admin, "names no order of ours") == 1


async def test_a_refunded_payment_of_a_payment_we_did_not_expect_settles_its_row(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    charged = await paid_after_cancel(user)
    admin = admin_of(telegram, http)
    await admin.wait_message("needs review")
    assert await app.bot.refund_star_payment(CUSTOMER, charged["charge_id"])  # refunded elsewhere
    await user.wait_message("50 ⭐ refunded: a payment for order #1 that the order did not need")
    row = await app.storage.find_unexpected("stars", charged["charge_id"])
    assert row is not None
    assert row.state == "refunded"
    answer = await admin.press(text="Refund")
    assert answer is not None
    assert "refunded already" in answer["text"]


async def test_a_payment_confirmed_long_after_its_charge_is_not_reported_unlisted(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    await bought(user)
    order = await order_of(app)
    assert order.paid_at is not None
    telegram.star_transactions[-1]["date"] -= 3600  # charged an hour before we confirmed it
    later = order.paid_at + timedelta(minutes=15)
    [report] = await app.checkout.reconcile_ledgers(now=later, window=timedelta(hours=1))
    assert report.unlisted == []
    await settle(app)
    assert not await admin_of(telegram, http).bot_messages()


async def test_a_cut_off_refund_the_ledger_cannot_find_goes_to_review(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    await bought(user)
    order = await order_of(app)
    refund, _ = await app.storage.create_refund(order.id, order.total, "1:y", "admin:42")
    assert await app.storage.transition(order.id, S.PAID, S.REFUND_PENDING, actor="admin:42")
    telegram.star_transactions.clear()
    await app.reconciler.run_once(now=refund.updated_at + timedelta(minutes=3))
    assert [r.state for r in await app.storage.refunds_for_order(order.id)] == ["unknown"]
    await admin_of(telegram, http).wait_message("unknown outcome")


async def test_reconciliation_of_a_charge_for_a_cancelled_order_reports_a_review(
    app: Parts, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    invoice = await buy(user)
    charged = await user.pay_invoice(drop_update=True)
    await user.press(text="Cancel order", message_id=invoice["message_id"])
    [report] = await app.checkout.reconcile_ledgers()
    assert (report.recovered, report.reviewed) == ([], [1])
    admin = admin_of(telegram, http)
    review = await admin.wait_message("needs review")
    assert charged["charge_id"] in review["text"]
    await settle(app)
    assert await count_messages(admin, "never reached us") == 0
    assert [e.actor for e in await app.checkout.audit(1)][-1] == "ledger"
