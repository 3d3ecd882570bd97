"""The provider kinds without an adapter yet, carried by the core through test-only fakes
(tests/fakes.py): the callback is the truth (KTWidget), a bridge page we host (Pocket), a
payment made in the chat (Stars). Real loopback HTTP to our own server, real databases, the
Telegram emulator for what the customer and the admins are told."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bot.app import BotApp, Parts
from bot.config import LOCALES
from bot.core import CartLine, CheckoutService, OutboxKind, RefundError
from bot.core.outbox import Audience, message
from bot.notify import OutboxRenderer
from money import Money
from providers.base import (
    ChatPayment,
    InboundRequest,
    PaymentState,
    ProviderMisconfigured,
    ProviderUnavailable,
)
from sandbox.botuser import BotUser
from sandbox.telegram import TelegramServer
from storage.base import NewOutbox, Order, OrderState
from tests.conftest import ADMIN, CUSTOMER, MERCHANT_CHAT, both_databases
from tests.fakes import BridgeProvider, CallbackTruthProvider, InChatProvider, bridge_words
from tests.flows import eventually

S = OrderState
Start = Callable[..., Awaitable[Parts]]


@pytest.fixture
async def start(make_settings: Callable[..., Any]) -> AsyncIterator[Start]:
    """Start a BotApp with fake providers beside the configured ones; stopped after the test."""
    async with AsyncExitStack() as stack:

        async def starter(*providers: object, background: bool = True) -> Parts:
            app = BotApp(make_settings(), providers=providers, background=background)  # type: ignore[arg-type]
            return await stack.enter_async_context(app)

        yield starter


PRODUCTS = itertools.count(1)


async def place(app: Parts, provider: str, price: Money, *, user_id: int = CUSTOMER, locale="en"):
    """A new order each time (another product: the same cart again would reuse the order)."""
    return await app.checkout.place_order(
        user_id=user_id,
        chat_id=user_id,
        lines=[CartLine(f"thing-{next(PRODUCTS)}", "A thing", 1, price)],
        provider_name=provider,
        locale=locale,
    )


async def order_now(app: Parts, order_id: int) -> Order:
    order = await app.storage.get_order(order_id)
    assert order is not None
    return order


async def wait_state(app: Parts, order_id: int, state: OrderState) -> Order:
    async def reached() -> bool:
        return (await order_now(app, order_id)).state is state

    await eventually(reached)
    return await order_now(app, order_id)


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes | dict, **kw: Any
) -> tuple[int, str, str]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    async with http.post(url, data=data, **kw) as answer:
        return answer.status, answer.content_type, await answer.text()


async def texts_with(user: BotUser, needle: str) -> list[str]:
    return [m.get("text", "") for m in await user.bot_messages() if needle in m.get("text", "")]


def kzt(major: int) -> Money:
    return Money(major * 100, "KZT")


# --- the callback is the truth (KTWidget) -----------------------------------------------------


def ct_body(order: Order, status: str = "completed", amount: str = "150.00") -> dict:
    return {"order_id": order.id, "status": status, "amount": amount}


@both_databases
async def test_an_authenticated_callback_pays_once_and_forged_ones_change_nothing(
    start: Start, user: BotUser, http: aiohttp.ClientSession
) -> None:
    fake = CallbackTruthProvider()
    app = await start(fake)
    order = await place(app, fake.name, kzt(150))
    url = fake.callback_urls[order.id]
    assert url.startswith(f"{app.web_url}/callbacks/{fake.name}?o={order.id}&k=")
    base = f"{app.web_url}/callbacks/{fake.name}"

    wrong_key = f"{base}?o={order.id}&k={'0' * 32}"
    assert (await post(http, wrong_key, ct_body(order)))[0] == 403
    assert (await post(http, f"{base}?o={order.id}", ct_body(order)))[0] == 401
    assert (await post(http, f"{base}?o={order.id}&t={order.token}", ct_body(order)))[0] == 401
    assert (await post(http, f"{base}?o={order.id}&k={order.token}", ct_body(order)))[0] == 403
    assert (await order_now(app, order.id)).state is S.AWAITING_PAYMENT
    assert await app.storage.inbound_for_order(order.id) == []

    status, content_type, text = await post(http, url, ct_body(order))
    assert (status, content_type, json.loads(text)) == (200, "application/json", {"status": "ok"})
    paid = await wait_state(app, order.id, S.PAID)
    assert paid.paid == kzt(150)
    await user.wait_message("Payment received")

    assert (await post(http, url, ct_body(order)))[:2] == (200, "application/json")
    await asyncio.sleep(0.3)
    assert len(await texts_with(user, "Payment received")) == 1
    trail = await app.storage.audit_trail(order.id)
    assert [e.to_state for e in trail].count(S.PAID) == 1
    assert fake.status_queries == 0  # no status API: the callback was the truth


async def test_a_callback_with_another_amount_is_refused_and_changes_nothing(
    start: Start, user: BotUser, http: aiohttp.ClientSession
) -> None:
    """The callback is the truth only about the order it was made for: its amount too."""
    fake = CallbackTruthProvider()
    app = await start(fake)
    order = await place(app, fake.name, kzt(150))
    status, _, _ = await post(http, fake.callback_urls[order.id], ct_body(order, amount="140.00"))
    assert status == 409
    after = await order_now(app, order.id)
    assert after.state is S.AWAITING_PAYMENT
    assert await app.storage.inbound_for_order(order.id) == []
    assert await texts_with(user, "Payment received") == []


async def test_an_error_callback_fails_the_order(
    start: Start, user: BotUser, http: aiohttp.ClientSession
) -> None:
    fake = CallbackTruthProvider()
    app = await start(fake)
    order = await place(app, fake.name, kzt(150))
    await post(http, fake.callback_urls[order.id], ct_body(order, status="error"))
    await wait_state(app, order.id, S.FAILED)
    await user.wait_message("did not go through")


def stored_callback(fake: CallbackTruthProvider, order: Order) -> InboundRequest:
    """The callback as bot/web hands it to the core (a crash comes right after it is stored)."""
    url = fake.callback_urls[order.id]
    query = dict(part.split("=", 1) for part in url.partition("?")[2].split("&"))
    body = json.dumps(ct_body(order)).encode()
    path = f"/callbacks/{fake.name}"
    return InboundRequest("POST", path, query, {"content-type": "application/json"}, body)


@both_databases
async def test_a_stored_callback_pays_the_order_after_a_restart(
    start: Start, make_settings: Callable[..., Any], user: BotUser
) -> None:
    fake = CallbackTruthProvider()
    async with BotApp(make_settings(), providers=[fake]) as first:
        order = await place(first, fake.name, kzt(150))
        ack, follow_up = await first.checkout.accept_callback(
            fake.name, stored_callback(fake, order)
        )
        assert ack.status == 200
        assert follow_up is not None
    assert await texts_with(user, "Payment received") == []

    again = CallbackTruthProvider()  # a new process: nothing remembered but the database
    app = await start(again)
    await wait_state(app, order.id, S.PAID)
    await user.wait_message("Payment received")
    await asyncio.sleep(0.3)
    assert len(await texts_with(user, "Payment received")) == 1
    assert again.status_queries == 0


@pytest.mark.parametrize("path", ["confirm", "button", "sweep"])
async def test_button_confirm_and_sweep_read_the_stored_callback(
    start: Start, user: BotUser, path: str
) -> None:
    fake = CallbackTruthProvider()
    app = await start(fake)
    order = await place(app, fake.name, kzt(150))
    await app.checkout.accept_callback(fake.name, stored_callback(fake, order))  # not confirmed
    assert (await order_now(app, order.id)).state is S.AWAITING_PAYMENT
    if path == "confirm":
        confirmation = await app.checkout.confirm(order.id, actor="button")
        assert confirmation.answered
        assert confirmation.order.state is S.PAID
    elif path == "button":
        await user.send("/orders")
        await user.wait_message("Your orders")
        await user.press(text=f"#{order.id}")
        card = await user.wait_message(f"Order #{order.id}")
        answer = await user.press(text="Check payment", message_id=card["message_id"])
        assert answer is not None
        assert "Paid" in answer.get("text", "")
    else:
        await app.reconciler.run_once(now=datetime.now(UTC) + timedelta(minutes=1))
    await wait_state(app, order.id, S.PAID)
    await user.wait_message("Payment received")
    assert fake.status_queries == 0


# --- a bridge page we host (Pocket) -----------------------------------------------------------


def mnt(major: int) -> Money:
    return Money(major * 100, "MNT")


@both_databases
async def test_the_bridge_page_opens_the_payment_and_confirm_pays_it(
    start: Start, user: BotUser, http: aiohttp.ClientSession
) -> None:
    fake = BridgeProvider()
    app = await start(fake)
    order = await place(app, fake.name, mnt(900))
    page = f"{app.web_url}/pay/{fake.name}/{order.token}"
    assert order.pay_url == page

    async with http.get(page) as answer:
        assert (answer.status, answer.content_type) == (200, "text/html")
        assert await answer.read() == fake.PAGE
    for unknown in (
        f"{app.web_url}/pay/{fake.name}/not-a-token",
        f"{app.web_url}/pay/fake_ct/{order.token}",  # a token of another provider's order
        f"{app.web_url}/pay/nobody/{order.token}",
    ):
        async with http.get(unknown) as answer:
            assert answer.status == 404
        async with http.post(unknown, data={"token": "good"}) as answer:
            assert answer.status == 404

    async with http.post(page, data={"token": "bad"}) as answer:
        assert answer.status == 400
    refused = await order_now(app, order.id)
    assert (refused.provider_payment_id, refused.state) == (None, S.AWAITING_PAYMENT)
    assert await app.storage.inbound_for_order(order.id) == []
    assert fake.invoices == 0

    async with http.post(page, data={"token": "good"}) as answer:
        assert answer.status == 200
        assert "Invoice opened" in await answer.text()

    async def attached() -> bool:
        return (await order_now(app, order.id)).provider_payment_id == "inv-1"

    await eventually(attached)
    opened = await order_now(app, order.id)
    assert dict(opened.payment_data) == {"terminal": "t1"}
    assert opened.state is S.AWAITING_PAYMENT

    fake.states["inv-1"] = (PaymentState.PAID, mnt(900))
    confirmation = await app.checkout.confirm(order.id, actor="button")
    assert confirmation.answered
    assert confirmation.order.state is S.PAID
    assert all(dict(ref.data) == {"terminal": "t1"} for ref in fake.status_queries)
    await user.wait_message("Payment received")


async def test_a_bridge_post_during_a_status_outage_is_confirmed_later(
    start: Start, user: BotUser, http: aiohttp.ClientSession
) -> None:
    """The invoice the POST opened must not be lost when the status query right after it
    fails: the sweep (or a replay after a crash) confirms it once the provider answers."""
    fake = BridgeProvider()
    app = await start(fake)
    order = await place(app, fake.name, mnt(900))
    fake.status_error = ProviderUnavailable("down", provider=fake.name)
    async with http.post(f"{app.web_url}/pay/{fake.name}/{order.token}", data={"token": "good"}):
        pass

    async def asked() -> bool:
        return bool(fake.status_queries)

    await eventually(asked)
    await asyncio.sleep(0.1)
    opened = await order_now(app, order.id)
    assert (opened.provider_payment_id, dict(opened.payment_data)) == ("inv-1", {"terminal": "t1"})

    fake.status_error = None
    fake.states["inv-1"] = (PaymentState.PAID, mnt(900))
    await app.reconciler.run_once(now=datetime.now(UTC) + timedelta(hours=1))
    await wait_state(app, order.id, S.PAID)
    await user.wait_message("Payment received")


# --- paid in the chat (Stars) -----------------------------------------------------------------


def stars(order: Order, charge: str, *, user_id: int = CUSTOMER, amount: int = 50) -> ChatPayment:
    return ChatPayment(user_id, "XTR", amount, InChatProvider.payload(order.id), charge)


@both_databases
async def test_a_chat_payment_pays_its_order_once(start: Start, user: BotUser) -> None:
    fake = InChatProvider()
    app = await start(fake)
    order = await place(app, fake.name, Money(50, "XTR"))
    assert (order.pay_url, order.provider_payment_id) == ("https://t.me/invoice/fake", None)

    paid = await app.checkout.receive_chat_payment(fake.name, stars(order, "ch-1"))
    assert paid is not None
    assert paid.state is S.PAID
    assert paid.paid == Money(50, "XTR")
    assert paid.provider_payment_id == "ch-1"  # the charge id is the payment's
    assert dict(paid.payment_data) == {"user_id": str(CUSTOMER)}

    again = await app.checkout.receive_chat_payment(fake.name, stars(order, "ch-1"))
    assert again is not None
    assert again.state is S.PAID
    await user.wait_message("Payment received")
    await asyncio.sleep(0.3)
    assert len(await texts_with(user, "Payment received")) == 1
    assert [e.to_state for e in await app.storage.audit_trail(order.id)].count(S.PAID) == 1
    assert len(await app.storage.inbound_for_order(order.id)) == 1


async def test_a_chat_payment_by_another_user_is_kept_for_review(start: Start) -> None:
    """Someone paid the customer's forwarded invoice: not the order's payment, never dropped;
    one naming no order of ours changes nothing."""
    fake = InChatProvider()
    app = await start(fake)
    order = await place(app, fake.name, Money(50, "XTR"))
    unknown = ChatPayment(CUSTOMER, "XTR", 50, "order-999", "y")
    assert await app.checkout.receive_chat_payment(fake.name, unknown) is None
    foreign = await app.checkout.receive_chat_payment(fake.name, stars(order, "x", user_id=2002))
    assert foreign is not None
    assert foreign.state is S.AWAITING_PAYMENT  # its customer may still pay it
    assert foreign.provider_payment_id is None  # not the order's payment
    kept = await app.storage.find_unexpected(fake.name, "x")
    assert kept is not None
    assert kept.payment_data["user_id"] == "2002"  # the refund goes to who paid
    assert len(await app.storage.inbound_for_order(order.id)) == 1
    again = await app.checkout.receive_chat_payment(fake.name, stars(order, "x", user_id=2002))
    assert again is not None
    assert again.state is S.AWAITING_PAYMENT
    trail = await app.storage.audit_trail(order.id)
    assert sum("another Telegram user" in e.detail for e in trail) == 1


async def test_a_chat_payment_of_another_amount_goes_to_review(start: Start, user: BotUser) -> None:
    fake = InChatProvider()
    app = await start(fake)
    order = await place(app, fake.name, Money(50, "XTR"))
    found = await app.checkout.receive_chat_payment(fake.name, stars(order, "c", amount=49))
    assert found is not None
    assert found.state is S.NEEDS_REVIEW
    # the notifier is done before the app stops: see the report on Notifier.run and stop()
    await user.wait_message("by hand")


# --- the outbox ---------------------------------------------------------------------------------

PAYLOADS: dict[OutboxKind, dict[str, Any]] = {
    OutboxKind.REFUNDED: {"amount": 5000},
    OutboxKind.MERCHANT_REVIEW: {"reason": "amount mismatch <b>"},
    OutboxKind.ADMIN_REVIEW: {"reason": "amount mismatch"},
    OutboxKind.ADMIN_MISCONFIGURED: {"error": "[fake] bad key (HTTP 401)"},
    OutboxKind.CARD_SAVED: {"card": "411111xxxxxx1111"},
    OutboxKind.ADMIN_LEDGER_RECOVERED: {"payment_id": "stx-1"},
    OutboxKind.ADMIN_CALLBACK_REFUSED: {"reason": "the callback says 140.00 KZT"},
    OutboxKind.ADMIN_LEDGER_UNLISTED: {"payment_id": "stx-2"},
    OutboxKind.ADMIN_UNKNOWN_PAYMENT: {
        "payment_id": "100042",
        "amount": 1250000,
        "currency": "MNT",
        "provider": "Pocket",
    },
    OutboxKind.MERCHANT_DAILY_REPORT: {"day": "2026-12-01", "zone": "Asia/Almaty"},
    OutboxKind.ADMIN_STRANGER_PAYMENT: {
        "payment_id": "stx-3",
        "user_id": 7,
        "amount": 70,
        "currency": "XTR",
        "provider": "Telegram Stars",
    },
}
NOT_ABOUT_AN_ORDER = {
    OutboxKind.CARD_SAVED,
    OutboxKind.CARD_FAILED,
    OutboxKind.ADMIN_STRANGER_PAYMENT,
    OutboxKind.ADMIN_UNKNOWN_PAYMENT,
    OutboxKind.MERCHANT_DAILY_REPORT,
}
CHAT = {Audience.CUSTOMER: CUSTOMER, Audience.MERCHANT: MERCHANT_CHAT, Audience.ADMIN: ADMIN}


async def test_the_renderer_covers_every_kind_in_every_locale(start: Start) -> None:
    fake = CallbackTruthProvider()
    app = await start(fake, background=False)
    english: dict[OutboxKind, str] = {}
    for locale in LOCALES:
        await app.storage.set_user_locale(CUSTOMER, locale)
        await app.storage.set_user_locale(ADMIN, locale)
        order = await place(app, fake.name, kzt(150), locale=locale)
        await app.storage.set_merchant_message(order.id, 1)  # a card for MERCHANT_CARD to edit
        queued = 0
        for kind in OutboxKind:
            # a recurring kind also without its payload: an old row must render too
            payloads = [PAYLOADS.get(kind, {})] + ([{}] if kind.recurs else [])
            for payload in payloads:
                row = message(kind, CHAT[kind.audience], payload)
                order_id = None if kind in NOT_ABOUT_AN_ORDER else order.id
                assert await app.storage.enqueue(order_id, row), kind
                queued += 1
        rows = await app.storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1), limit=500)
        assert len(rows) == queued
        renderer = OutboxRenderer(app.storage, app.i18n, app.checkout, locale, locale)
        for row in rows:
            kind = OutboxKind.of(row.kind)
            assert kind is not None
            rendered = await renderer(row)
            assert rendered is not None, (locale, row.kind)
            assert rendered.text.strip(), (locale, row.kind)
            if locale == "en":
                english.setdefault(kind, rendered.text)
                assert rendered.text == (await app.notifier.render(row)).text  # type: ignore[union-attr]
            elif kind in english and row.payload:
                assert rendered.text != english[kind], (locale, kind)  # translated
            await app.storage.mark_sent(row.id)

    await app.storage.enqueue(None, NewOutbox("from_a_newer_version:1", CUSTOMER, {}))
    (unknown,) = await app.storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1))
    assert await app.notifier.render(unknown) is None


def due_kinds(rows) -> list[str]:
    return sorted(row.kind.split(":")[0] for row in rows)


async def test_two_reviews_of_one_order_both_reach_the_outbox(start: Start) -> None:
    fake = BridgeProvider()
    app = await start(fake, background=False)
    order = await place(app, fake.name, mnt(900))
    await app.checkout.open_bridge(
        fake.name,
        order.token,
        InboundRequest("POST", f"/pay/{fake.name}/{order.token}", body=b"token=good"),
        bridge_words,
    )
    fake.states["inv-1"] = (PaymentState.PAID, mnt(800))  # the customer paid less
    first = await app.checkout.confirm(order.id, actor="sweep")
    assert first.order.state is S.NEEDS_REVIEW
    resolved = await app.storage.transition(
        order.id, S.NEEDS_REVIEW, S.PAID, actor=f"admin:{ADMIN}"
    )
    assert resolved is not None
    fake.refund_error = ProviderUnavailable("cut off", provider=fake.name)
    fake.states["inv-1"] = (PaymentState.PAID, mnt(900))  # says what was paid, not what is left
    with pytest.raises(RefundError):
        await app.checkout.refund(order.id, None, actor=f"admin:{ADMIN}", request="r1")
    assert (await order_now(app, order.id)).state is S.REFUND_PENDING
    await app.checkout.finish_refunds(datetime.now(UTC) + timedelta(minutes=3))
    assert (await order_now(app, order.id)).state is S.NEEDS_REVIEW

    rows = await app.storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1))
    told = ["review", "admin_review", "merchant_review", "merchant_card"]  # the card: steps off
    assert due_kinds(rows) == sorted(told * 2)
    reasons = [r.payload["reason"] for r in rows if r.kind.startswith("admin_review")]
    assert "amount mismatch" in reasons[0]
    assert "unknown outcome" in reasons[1]


async def test_two_refunds_of_one_order_both_reach_the_outbox(start: Start) -> None:
    fake = BridgeProvider()
    app = await start(fake, background=False)
    order = await place(app, fake.name, mnt(900))
    await app.checkout.open_bridge(
        fake.name,
        order.token,
        InboundRequest("POST", f"/pay/{fake.name}/{order.token}", body=b"token=good"),
        bridge_words,
    )
    fake.states["inv-1"] = (PaymentState.PAID, mnt(900))
    assert (await app.checkout.confirm(order.id, actor="sweep")).order.state is S.PAID
    part = await app.checkout.refund(order.id, mnt(300), actor=f"admin:{ADMIN}", request="r1")
    assert part.state is S.PARTIALLY_REFUNDED
    rest = await app.checkout.refund(order.id, None, actor=f"admin:{ADMIN}", request="r2")
    assert rest.state is S.REFUNDED
    assert rest.refunded == mnt(900)
    assert [amount for _, amount, _ in fake.refunds] == [mnt(300), mnt(600)]
    rows = await app.storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1))
    refunded = [r for r in rows if r.kind.startswith("refunded")]
    assert sorted(r.payload["amount"] for r in refunded) == [30000, 60000]


# --- callback keys ----------------------------------------------------------------------------


async def test_callback_keys_are_per_order_and_provider_and_never_the_return_token(
    start: Start, http: aiohttp.ClientSession
) -> None:
    ct, bridge = CallbackTruthProvider(), BridgeProvider()
    app = await start(ct, bridge)
    one, two = await place(app, ct.name, kzt(150)), await place(app, ct.name, kzt(150))
    key = app.checkout.callback_key
    assert key(ct.name, one.id) != key(ct.name, two.id)
    assert key(ct.name, one.id) != key(bridge.name, one.id)
    for order in (one, two):
        assert key(ct.name, order.id) not in order.token
        assert order.token not in ct.callback_urls[order.id]
    # the key comes from the server secret, provider and order id alone: another service
    # with the same secret (a replica) that never saw the order's token derives the same key
    secret = app.checkout._callback_secret.decode()
    replica = CheckoutService(app.storage, app.providers, public_url="x", callback_secret=secret)
    assert replica.callback_key(ct.name, one.id) == key(ct.name, one.id)
    other = CheckoutService(app.storage, app.providers, public_url="x", callback_secret="else")
    assert other.callback_key(ct.name, one.id) != key(ct.name, one.id)

    # the return token in ?t= authenticates nothing, for either kind of provider
    base = f"{app.web_url}/callbacks"
    assert (await post(http, f"{base}/{ct.name}?o={one.id}&t={one.token}", ct_body(one)))[0] == 401
    bridged = await place(app, bridge.name, mnt(900))
    token = f"?o={bridged.id}&t={bridged.token}"
    status, _, _ = await post(http, f"{base}/{bridge.name}{token}", {"invoice_id": "inv-7"})
    assert status == 404  # an unauthenticated hint that names no payment of ours
    assert (await order_now(app, bridged.id)).provider_payment_id is None
    assert bridge.status_queries == []


# --- a misconfigured provider ------------------------------------------------------------------


async def test_a_misconfigured_provider_tells_the_admins_once_and_the_customer_nothing(
    start: Start, user: BotUser, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    fake = BridgeProvider()
    app = await start(fake)
    order = await place(app, fake.name, mnt(900))
    fake.status_error = ProviderMisconfigured("bad key", provider=fake.name, http_status=401)
    await app.checkout.open_bridge(
        fake.name,
        order.token,
        InboundRequest("POST", f"/pay/{fake.name}/{order.token}", body=b"token=good"),
        bridge_words,
    )
    for _ in range(3):
        confirmation = await app.checkout.confirm(order.id, actor="button")
        assert not confirmation.answered
        assert confirmation.order.state is S.AWAITING_PAYMENT
    second = await place(app, fake.name, mnt(900))
    await app.checkout.open_bridge(
        fake.name,
        second.token,
        InboundRequest("POST", f"/pay/{fake.name}/{second.token}", body=b"token=good"),
        bridge_words,
    )
    assert not (await app.checkout.confirm(second.id, actor="sweep")).answered

    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.wait_message("refused our credentials")
    await asyncio.sleep(0.5)
    assert len(await texts_with(admin, "refused our credentials")) == 1
    assert await user.bot_messages() == []


async def test_a_row_that_cannot_be_rendered_fails_and_does_not_hold_up_the_others(
    start: Start, user: BotUser
) -> None:
    """A card message bound to an order (a row from another version, or a bug) has no text:
    it ends as failed (DESIGN: counts as an attempt) and the rows after it are still sent."""
    fake = CallbackTruthProvider()
    app = await start(fake, background=False)
    order = await place(app, fake.name, kzt(150))
    await app.storage.enqueue(order.id, message(OutboxKind.CARD_SAVED, CUSTOMER, {"card": "x"}))
    await app.storage.enqueue(order.id, message(OutboxKind.PAID, CUSTOMER))
    await app.notifier.flush()
    await asyncio.sleep(1.1)  # the chat's flood gap, counted from the failed row
    await app.notifier.flush()
    await user.wait_message("Payment received")
    assert await app.storage.due_outbox(datetime.now(UTC) + timedelta(hours=1)) == []
    assert (await app.checkout.figures(1)).undelivered_messages == 1
