"""Issue 21: KTWidget end to end through the sandbox: a sealed transaction, the card page, the
final-status callback that is the truth (retried until we answer ok, refused when it is not
about the order), the receipt PDF as a document, the admins told once of an expired key, and
the confirm window that covers KTWidget's retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta

import aiohttp
import pytest

from bot.app import BotApp, Parts, StartupError
from bot.config import Settings
from bot.core import CartLine, InboundRequest
from bot.wiring import ConfigError, load_settings
from money import Money
from sandbox.botuser import BotUser
from sandbox.ktwidget import KtwidgetServer
from sandbox.telegram import TelegramServer
from storage.base import OrderState
from storage.errors import StorageUnavailable
from tests.conftest import ADMIN, CUSTOMER, both_databases
from tests.flows import browse, order_product, pay
from tests.test_modes import free_port

S = OrderState
PRICE = Money(320050, "KZT")


@pytest.fixture(autouse=True)
def quick_retries(ktwidget: KtwidgetServer) -> None:
    ktwidget.retry_scale = 0.001  # 15 s ... 60 min of retries in about 6 s


async def buy(user: BotUser) -> dict:
    return await order_product(user, "Tea", "Kazakh black tea")


async def order_of(app: Parts, order_id: int = 1):
    order = await app.checkout.order(order_id)
    assert order is not None
    return order


async def callback(
    http: aiohttp.ClientSession, app: Parts, order_id: int, body: dict, key: str | None = ""
) -> int:
    url = f"{app.web_url}/callbacks/ktwidget"
    if key is not None:
        url += f"?o={order_id}&k={key or app.checkout.callback_key('ktwidget', order_id)}"
    async with http.post(url, json=body) as answer:
        await answer.read()
        return answer.status


async def settle(app: Parts, seconds: float = 0.3) -> None:
    await asyncio.sleep(seconds)
    await app.notifier.flush()


def count(messages: list[dict], text: str) -> int:
    return sum(text in (m.get("text") or m.get("caption") or "") for m in messages)


@both_databases
async def test_a_kazakh_purchase_ends_paid_with_the_receipt_as_a_document(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    ktwidget: KtwidgetServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    message = await buy(user)
    order = await order_of(app)
    transaction = ktwidget.transactions[order.provider_payment_id or ""]
    sent = transaction.order
    assert (sent["amount"], sent["type"], sent["show_close_button"]) == (3200.5, "ecom", True)
    assert sent["order_id"].startswith("1-")
    assert f"o=1&k={app.checkout.callback_key('ktwidget', 1)}" in sent["callback_post_url"]
    assert sent["callback_force_success_url"].startswith(f"{app.web_url}/return/ktwidget/")

    status, _page = await browse(http, await pay(http, ktwidget.url, message, "completed"))
    await ktwidget.settle()
    [delivery] = ktwidget.deliveries[transaction.transaction_hash]
    assert (delivery.http_status, json.loads(delivery.answer)) == (200, {"status": "ok"})
    assert status == 200
    await user.wait_message("Payment received for order #1")
    receipt = await user.wait_message(predicate=lambda m: "document" in m)
    assert receipt["document"]["file_name"] == "receipt-1.pdf"
    assert telegram.files[receipt["document"]["file_id"]].startswith(b"%PDF-")
    assert "receipt for order #1" in receipt["caption"]
    paid = await order_of(app)
    assert (paid.state, paid.paid) == (S.PAID, PRICE)
    await merchant.wait_message("Order #1 paid")


@pytest.mark.parametrize(
    ("outcome", "kind"), [("error", "ERROR_PAYMENT"), ("denied", "ERROR_SYSTEM")]
)
async def test_error_and_denied_fail_the_order_with_the_reason_in_the_audit(
    app: Parts,
    user: BotUser,
    ktwidget: KtwidgetServer,
    http: aiohttp.ClientSession,
    outcome: str,
    kind: str,
) -> None:
    message = await buy(user)
    _, _page = await browse(http, await pay(http, ktwidget.url, message, outcome))
    await ktwidget.settle()
    await user.wait_message("did not go through")
    order = await order_of(app)
    assert order.state is S.FAILED
    assert kind in (await app.checkout.audit(1))[-1].detail


async def test_the_callback_is_retried_until_our_server_answers_ok(
    make_settings: Callable[..., Settings],
    user: BotUser,
    ktwidget: KtwidgetServer,
    http: aiohttp.ClientSession,
    tmp_path,
) -> None:
    port = free_port()
    settings = make_settings(web_port=port, database_url=f"sqlite:///{tmp_path}/kt.db")
    ktwidget.retry_scale = 0.02  # 0.3 s, 1.2 s, 3.6 s, ...
    async with BotApp(settings) as app:
        message = await buy(user)
        transaction = (await order_of(app)).provider_payment_id or ""
    # our server is down when the customer pays: the first tries find nobody
    await pay(http, ktwidget.url, message, "completed")
    await asyncio.sleep(0.5)
    assert ktwidget.deliveries[transaction][0].accepted is False
    async with BotApp(settings) as app:
        await ktwidget.settle()
        attempts = ktwidget.deliveries[transaction]
        assert [a.accepted for a in attempts][-1] is True
        assert len(attempts) >= 2
        await user.wait_message("Payment received for order #1")
        assert (await order_of(app)).state is S.PAID


async def test_forged_callbacks_are_refused_and_change_nothing(
    app: Parts,
    user: BotUser,
    ktwidget: KtwidgetServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    message = await buy(user)
    await app.checkout.place_order(  # order 2: its transaction must not pay order 1
        user_id=CUSTOMER,
        chat_id=CUSTOMER,
        lines=[CartLine("kazakh-tea", "Kazakh black tea", 2, PRICE)],
        provider_name="ktwidget",
    )
    first, second = await order_of(app, 1), await order_of(app, 2)
    body = ktwidget.callback_body(ktwidget.transactions[first.provider_payment_id or ""])
    body["status"]["status"] = "completed"
    other = ktwidget.callback_body(ktwidget.transactions[second.provider_payment_id or ""])
    other["status"]["status"] = "completed"
    assert await callback(http, app, 1, body, key=None) == 401  # no key
    assert await callback(http, app, 1, body, key="0" * 32) == 403  # a wrong key
    assert await callback(http, app, 1, {**body, "amount": 3200.49}) == 409  # another amount
    assert await callback(http, app, 1, {**body, "merchant_id": 1}) == 403  # another merchant
    assert await callback(http, app, 1, other) == 409  # a status for another order
    assert await callback(http, app, 1, {**body, "order_id": "1-other"}) == 409
    async with http.post(f"{app.web_url}/callbacks/ktwidget?o=1&k=x", data=b"not json") as bad:
        assert bad.status in (400, 403)
    await settle(app)
    for order in (first, second):
        assert (await order_of(app, order.id)).state is S.AWAITING_PAYMENT
        assert await app.storage.inbound_for_order(order.id) == []
    assert count(await user.bot_messages(), "Payment received") == 0
    # another amount with the order's key and transaction is KTWidget's own word: told, once
    assert await callback(http, app, 1, {**body, "amount": 3100.5}) == 409
    admin = BotUser(telegram.url, ADMIN, session=http)
    told = await admin.wait_message("it was refused")
    assert "3200.49" in told["text"]
    await settle(app)
    assert count(await admin.bot_messages(), "it was refused") == 1
    assert message


async def test_duplicate_and_concurrent_callbacks_pay_once(
    app: Parts, user: BotUser, merchant: BotUser, ktwidget: KtwidgetServer, http
) -> None:
    message = await buy(user)
    await pay(http, ktwidget.url, message, "completed")
    await ktwidget.settle()
    order = await order_of(app)
    body = ktwidget.callback_body(ktwidget.transactions[order.provider_payment_id or ""])
    answers = await asyncio.gather(*(callback(http, app, 1, body) for _ in range(10)))
    assert set(answers) == {200}
    await user.wait_message("Payment received")
    await user.wait_message(predicate=lambda m: "document" in m)
    await settle(app, 0.5)
    assert count(await user.bot_messages(), "Payment received") == 1
    assert count(await merchant.bot_messages(), "Order #1 paid") == 1
    assert count(await user.bot_messages(), "receipt for order") == 1
    assert [e.to_state for e in await app.checkout.audit(1)].count(S.PAID) == 1


async def test_non_final_statuses_are_stored_and_not_acted_on(
    app: Parts, user: BotUser, ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    ktwidget.post_intermediate = True
    message = await buy(user)
    redirect = await pay(http, ktwidget.url, message, "authorized")
    await ktwidget.settle()
    events = await app.storage.inbound_for_order(1)
    assert len(events) == 1
    _, page = await browse(http, redirect)
    assert "Checking your payment" in page
    await user.press(text="Check payment")
    assert (await order_of(app)).state is S.AWAITING_PAYMENT
    await pay(http, ktwidget.url, message, "completed")
    await ktwidget.settle()
    await user.wait_message("Payment received")


async def test_an_expired_app_key_tells_the_admins_once(
    app: Parts, user: BotUser, ktwidget: KtwidgetServer, telegram: TelegramServer, http
) -> None:
    ktwidget.key_expired = True
    for _ in range(2):
        await user.send("/start p_kazakh-tea")
        await user.wait_message("Kazakh black tea")
        answer = await user.press(text="Buy now")
        assert answer is not None
        assert "refused this order" in answer["text"]
    admin = BotUser(telegram.url, ADMIN, session=http)
    told = await admin.wait_message("refused our credentials")
    assert "4220104" in told["text"]
    await settle(app)
    assert count(await admin.bot_messages(), "refused our credentials") == 1
    assert [o.state for o in await app.storage.orders_for_user(CUSTOMER)] == [S.FAILED] * 2


async def test_a_receipt_that_fails_is_retried_and_never_holds_up_the_paid_message(
    app: Parts, user: BotUser, ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    ktwidget.pdf_fails = 1
    message = await buy(user)
    await pay(http, ktwidget.url, message, "completed")
    await ktwidget.settle()
    await user.wait_message("Payment received for order #1")
    assert not any("document" in m for m in await user.bot_messages())
    await user.wait_message(predicate=lambda m: "document" in m, timeout=8)


async def test_the_card_page_paid_after_the_local_deadline_ends_paid_or_in_review(
    app: Parts, user: BotUser, ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    provider = app.providers.get("ktwidget")
    inside = await buy(user)
    order = await order_of(app)
    assert order.expires_at is not None
    await app.reconciler.run_once(now=order.expires_at + timedelta(minutes=30))
    assert (await order_of(app)).state is S.AWAITING_PAYMENT  # KTWidget may still report it
    await pay(http, ktwidget.url, inside, "completed")
    await ktwidget.settle()
    await user.wait_message("Payment received for order #1")

    after = await buy(user)
    late = await order_of(app, 2)
    assert late.expires_at is not None
    await app.reconciler.run_once(now=late.expires_at + provider.confirm_window)
    assert (await order_of(app, 2)).state is S.EXPIRED
    await pay(http, ktwidget.url, after, "completed")
    await ktwidget.settle()
    await user.wait_message("checking the payment for order #2 by hand")
    assert (await order_of(app, 2)).state is S.NEEDS_REVIEW


async def test_a_stored_callback_is_confirmed_after_a_restart(
    make_settings: Callable[..., Settings],
    user: BotUser,
    ktwidget: KtwidgetServer,
    http: aiohttp.ClientSession,
    tmp_path,
) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path}/kt.db")
    async with BotApp(settings) as app:
        await buy(user)
        order = await order_of(app)
        body = ktwidget.callback_body(ktwidget.transactions[order.provider_payment_id or ""])
        body["status"]["status"] = "completed"
        # stored and answered, then the process stopped before the confirm ran
        key = app.checkout.callback_key("ktwidget", order.id)
        request = InboundRequest(
            "POST", "/callbacks/ktwidget", {"o": "1", "k": key}, {}, json.dumps(body).encode()
        )
        ack, _ = await app.checkout.accept_callback("ktwidget", request)
        assert (ack.status, ack.body) == (200, b'{"status":"ok"}')
    async with BotApp(settings) as app:  # start-up replays the stored callback
        await user.wait_message("Payment received for order #1")
        assert any(e.actor == "replay:callback" for e in await app.checkout.audit(1))


async def test_a_callback_that_cannot_be_stored_is_answered_so_ktwidget_retries(
    app: Parts,
    user: BotUser,
    ktwidget: KtwidgetServer,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ktwidget.retry_scale = 0.05  # the first retry 0.75 s later
    message = await buy(user)
    real = app.storage.record_inbound

    async def down(*args: object, **kwargs: object) -> int | None:  # a storage outage
        raise StorageUnavailable("the database is down")

    monkeypatch.setattr(app.storage, "record_inbound", down)
    await pay(http, ktwidget.url, message, "completed")
    await asyncio.sleep(0.3)
    order = await order_of(app)
    [first] = ktwidget.deliveries[order.provider_payment_id or ""]
    assert (first.http_status, first.accepted) == (503, False)
    monkeypatch.setattr(app.storage, "record_inbound", real)  # back up before the retry
    await ktwidget.settle()
    await user.wait_message("Payment received for order #1")


def test_a_half_made_setup_names_what_is_missing(ktwidget: KtwidgetServer) -> None:
    env = {"BOT_TOKEN": "1:x", **ktwidget.env()}
    del env["KTWIDGET_MERCHANT_ID"]
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    assert refused.value.problems == ["KTWIDGET_MERCHANT_ID: required with the others"]


async def test_an_app_key_that_is_no_key_stops_the_start_with_a_clear_message(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(env={"KTWIDGET_APP_KEY": "notbase64!!"})
    with pytest.raises(StartupError, match="KTWIDGET_APP_KEY is not a base64 Sodium public key"):
        async with BotApp(settings):
            pass


async def test_check_payment_before_the_callback_says_the_answer_is_awaited(
    app: Parts, user: BotUser
) -> None:
    await buy(user)
    answer = await user.press(text="Check payment")
    assert answer is not None
    assert "as soon as the payment is confirmed" in answer["text"]
