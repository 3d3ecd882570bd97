"""The merchant chat's paid-order message follows the order wherever it changes: a step taken
from an admin's /order, a refund. It says where the order is now and offers only the steps
still possible (none once the money went back), so nobody presses a stale Shipped."""

from __future__ import annotations

import aiohttp
import pytest

from bot.core.outbox import OutboxKind, message
from sandbox.botuser import BotUser
from sandbox.payture import PaytureServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage.base import OrderState, Storage
from tests.conftest import ADMIN, MERCHANT_CHAT
from tests.test_fulfilment import Parts, labels, paid_order
from tests.test_storage import new_order, storage, url

__all__ = ["storage", "url"]  # fixtures: both databases
pytestmark = pytest.mark.usefixtures("no_flood_gaps")  # messages at once
S = OrderState


async def test_the_merchant_message_is_remembered_apart_from_the_customers(
    storage: Storage,
) -> None:
    order = await storage.create_order(new_order())
    assert order.merchant_message_id is None
    await storage.set_order_message(order.id, 11)
    await storage.set_merchant_message(order.id, 12)
    await storage.set_merchant_message(order.id, 13)  # a second paid message (after a review)
    got = await storage.get_order(order.id)
    assert got is not None
    assert (got.message_id, got.merchant_message_id) == (11, 13)


async def card_of(merchant: BotUser, message_id: int, text: str) -> dict:
    """The paid-order message once it shows `text` (an edit, not a new message)."""
    return await merchant.wait_message(
        predicate=lambda m: m["message_id"] == message_id and text in (m.get("text") or ""),
        after_id=0,
    )


async def test_shipped_from_an_admins_order_shows_on_the_merchant_card(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    order = await paid_order(app, user, redoya, http, "Coffee", "Cezve")
    paid = await merchant.wait_message(f"Order #{order.id} paid")
    assert labels(paid) == ["📦 Shipped", "✅ Delivered", "✖ Cancel the order"]
    admin = BotUser(telegram.url, ADMIN, session=http)  # in private, not in the merchant chat
    await admin.send(f"/order {order.id}")
    shown = await admin.wait_message("Audit")
    await admin.press(text="📦 Shipped", message_id=shown["message_id"])
    await admin.press(text="No note")
    await admin.wait_message(f"Order #{order.id}: shipped.")
    card = await card_of(merchant, paid["message_id"], "Shipping: shipped")
    assert card["text"].startswith(f"💰 Order #{order.id} paid")
    assert "Now: paid" in card["text"]
    assert labels(card) == ["✅ Delivered", "✖ Cancel the order"]
    stale = [m for m in await merchant.bot_messages() if f"Order #{order.id} paid" in m["text"]]
    assert len(stale) == 1  # edited in place, no second paid message


async def test_a_refund_leaves_the_merchant_card_refunded_without_steps(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    payture: PaytureServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    order = await paid_order(app, user, payture, http, "Tea", "Ivan-chai")
    paid = await merchant.wait_message(f"Order #{order.id} paid")
    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.send(f"/refund {order.id}")
    question = await admin.wait_message(f"Refund ₽450.00 of order #{order.id}?")
    await admin.press(text="Refund", message_id=question["message_id"])
    await admin.wait_message("is refunded")
    card = await card_of(merchant, paid["message_id"], "Now: refunded")
    assert card["text"].startswith(f"💰 Order #{order.id} paid")
    assert labels(card) == []


async def test_a_card_sent_before_a_review_comes_back_to_paid_when_it_is_accepted(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    """A paid order went to review (a refund nobody could tell) after its card went out:
    accepting it queued the paid message again, which the outbox's once-per-order key
    dropped, so the card stayed "being checked" without its steps."""
    order = await paid_order(app, user, redoya, http, "Coffee", "Cezve")
    paid = await merchant.wait_message(f"Order #{order.id} paid")
    card_update = message(OutboxKind.MERCHANT_CARD, MERCHANT_CHAT)  # as the core's review does
    await app.storage.transition(
        order.id, S.PAID, S.NEEDS_REVIEW, actor="test", outbox=[card_update]
    )
    await app.notifier.flush()
    checking = await card_of(merchant, paid["message_id"], "Now:")
    assert labels(checking) == []  # no steps while it is checked
    await app.checkout.accept_review(order.id, actor=f"admin:{ADMIN}")
    steps = ["📦 Shipped", "✅ Delivered", "✖ Cancel the order"]
    # the running notifier, woken by the accept, may be the one sending the card: wait for it
    await merchant.wait_message(
        predicate=lambda m: m["message_id"] == paid["message_id"] and labels(m) == steps,
        after_id=0,
    )
