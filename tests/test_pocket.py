"""Issue 22: Pocket / Invescore end to end over real HTTP against the sandbox: the merchant token
(cached, refreshed, one flight for 50 callers, renewed once on a 401), the bridge page's post
with the customer's token (checked before any invoice), the webhook as a hint confirmed by the
check, the QR mode, and the fallback URL set at start-up only when it differs.

The page itself in a real browser: tests/test_pocket_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import httpx
import jwt
import pytest

from bot.app import BotApp, Parts, StartupError
from bot.config import Settings
from bot.core import CartLine, CheckoutError
from money import Money
from providers.base import PaymentRef, PaymentState, ProviderMisconfigured
from providers.pocket import PocketProvider
from sandbox.botuser import BotUser, button_url
from sandbox.pocket import PocketServer
from sandbox.telegram import TelegramServer
from storage.base import OrderState
from tests.conftest import ADMIN, CUSTOMER, both_databases
from tests.flows import browse, eventually, order_product

S = OrderState
PRICE = Money(1250000, "MNT")


def adapter(pocket: PocketServer, client: httpx.AsyncClient, **env: str) -> PocketProvider:
    given = pocket.env() | env
    return PocketProvider(
        client,
        sso_url=given["POCKET_SSO_URL"],
        api_url=given["POCKET_API_URL"],
        script_url=given["POCKET_JS_URL"],
        client_id=given["POCKET_CLIENT_ID"],
        client_secret=given["POCKET_CLIENT_SECRET"],
        terminal_id=given["POCKET_TERMINAL_ID"],
        public_key=given["POCKET_PUBLIC_KEY"],
        issuer=given["POCKET_ISSUER"],
    )


async def buy(user: BotUser) -> str:
    """The Pay button's URL of a new order for the milk tea."""
    message = await order_product(user, "Tea", "Mongolian milk tea")
    return button_url(message, "Pay")


async def post_tokens(http: aiohttp.ClientSession, url: str, access: str) -> tuple[int, dict]:
    body = {"accessToken": access, "refreshToken": "r"}
    async with http.post(url, json=body) as answer:
        return answer.status, await answer.json()


async def webhook(http: aiohttp.ClientSession, app: Parts, body: dict, key: str = "") -> int:
    url = f"{app.web_url}/callbacks/pocket?k={key or app.checkout.provider_key('pocket')}"
    async with http.post(url, json=body) as answer:
        await answer.read()
        return answer.status


async def settle(app: Parts, pocket: PocketServer, seconds: float = 0.3) -> None:
    await pocket.settle()
    await asyncio.sleep(seconds)
    await app.notifier.flush()


async def opened(app: Parts, http: aiohttp.ClientSession, user: BotUser, pocket: PocketServer):
    """An order whose invoice the bridge page opened in the app; returns (order, invoice id)."""
    url = await buy(user)
    status, said = await post_tokens(http, url, pocket.customer_token("ada"))
    assert (status, said["ok"]) == (200, True), said
    order = await app.checkout.order(1)
    assert order is not None
    assert order.provider_payment_id is not None
    return order, int(order.provider_payment_id)


# --- the merchant token -----------------------------------------------------------------------


async def test_fifty_calls_share_one_token_and_one_refresh(pocket: PocketServer) -> None:
    pocket.token_delay = 0.2
    pocket.expires_in = 11  # renewed 10 s early: expiring a second after it is issued
    invoice = pocket._new_invoice(amount=12500, info="tea", kind="consumer")
    async with httpx.AsyncClient() as client:
        provider = adapter(pocket, client)
        ref = PaymentRef(str(invoice.id))
        answers = await asyncio.gather(*(provider.fetch_status(ref) for _ in range(50)))
        assert {a.state for a in answers} == {PaymentState.PENDING}
        assert (pocket.token_requests, pocket.refresh_requests) == (1, 0)
        await asyncio.sleep(1.1)
        await asyncio.gather(*(provider.fetch_status(ref) for _ in range(50)))
        assert (pocket.token_requests, pocket.refresh_requests) == (2, 1)
        assert pocket.api_calls == 100


async def test_a_401_is_answered_by_one_refresh_and_one_retry(pocket: PocketServer) -> None:
    invoice = pocket._new_invoice(amount=12500, info="tea", kind="consumer")
    async with httpx.AsyncClient() as client:
        provider = adapter(pocket, client)
        ref = PaymentRef(str(invoice.id))
        await provider.fetch_status(ref)
        pocket.revoke_next = 1
        assert (await provider.fetch_status(ref)).state is PaymentState.PENDING
        assert (pocket.token_requests, pocket.refresh_requests, pocket.api_calls) == (2, 1, 3)


async def test_a_refresh_token_refused_falls_back_to_a_fresh_grant(pocket: PocketServer) -> None:
    invoice = pocket._new_invoice(amount=12500, info="tea", kind="consumer")
    async with httpx.AsyncClient() as client:
        provider = adapter(pocket, client)
        await provider.fetch_status(PaymentRef(str(invoice.id)))
        pocket.refresh_tokens.clear()  # Keycloak restarted: every refresh token is gone
        pocket.revoke_next = 1
        await provider.fetch_status(PaymentRef(str(invoice.id)))
        assert (pocket.token_requests, pocket.refresh_requests) == (3, 1)


async def test_wrong_credentials_are_misconfigured_and_name_no_secret(
    pocket: PocketServer,
) -> None:
    async with httpx.AsyncClient() as client:
        provider = adapter(pocket, client, POCKET_CLIENT_SECRET="not-the-secret")
        with pytest.raises(ProviderMisconfigured) as raised:
            await provider.fetch_status(PaymentRef("100001"))
    assert "not-the-secret" not in str(raised.value)
    assert raised.value.code == "unauthorized_client"


# --- the bridge page's post ---------------------------------------------------------------------


async def test_the_page_loads_pocket_js_in_the_order_language(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer
) -> None:
    url = await buy(user)
    assert url.startswith(f"{app.web_url}/pay/pocket/")
    async with http.get(url) as page:
        html = await page.text()
    assert page.status == 200
    assert f'<script src="{pocket.url}/pocket.js"></script>' in html
    assert "Order #1: " in html
    assert "Opening the payment in Pocket" in html
    assert f'var QR = "{url}?qr=1";' in html  # POCKET_MODE=both: outside Pocket, the QR code
    assert pocket.invoices == {}  # a page opened is not an invoice


@pytest.mark.parametrize("token", ["expired", "other_key", "garbage"])
async def test_a_customer_token_that_does_not_hold_opens_no_invoice(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer, token: str
) -> None:
    url = await buy(user)
    access = {
        "expired": pocket.customer_token("ada", expired=True),
        "other_key": pocket.customer_token("ada", other_key=True),
        "garbage": "not.a.token",
    }[token]
    status, said = await post_tokens(http, url, access)
    assert (status, said["ok"]) == (403, False)
    assert "could not confirm who you are" in said["text"]
    assert pocket.invoices == {}
    order = await app.checkout.order(1)
    assert order is not None
    assert order.provider_payment_id is None


async def test_a_keycloak_token_with_an_audience_is_taken_and_a_refresh_token_is_not(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer
) -> None:
    url = await buy(user)
    claims = jwt.decode(pocket.customer_token("ada"), options={"verify_signature": False})
    refresh = jwt.encode(claims | {"typ": "Refresh"}, pocket.private_key, algorithm="RS256")
    status, said = await post_tokens(http, url, refresh)
    assert (status, said["ok"]) == (403, False)
    with_audience = jwt.encode(claims | {"aud": "account"}, pocket.private_key, algorithm="RS256")
    status, said = await post_tokens(http, url, with_audience)
    assert (status, said["ok"]) == (200, True)
    [stored] = await app.storage.inbound_for_order(1)
    assert with_audience not in stored.body.decode()  # the customer's token is never kept


async def test_a_public_key_that_is_no_key_stops_the_start(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(StartupError, match="POCKET_PUBLIC_KEY"):
        async with BotApp(make_settings(env={"POCKET_PUBLIC_KEY": "bm90IGEga2V5"})):
            pass


async def test_an_order_past_its_deadline_opens_no_invoice(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer
) -> None:
    url = await buy(user)
    order = await app.checkout.order(1)
    assert order is not None
    app.checkout.clock = lambda: datetime.now(UTC) + timedelta(days=400)
    status, html = await browse(http, url)
    assert (status, "Checking your payment" in html) == (200, True)
    assert pocket.invoices == {}


async def test_a_post_that_is_not_the_pages_is_refused(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer
) -> None:
    url = await buy(user)
    for body in (b"", b"[]", b'{"accessToken": 5}', b"\xff" * 10, b"x" * 20000):
        async with http.post(url, data=body) as answer:
            assert answer.status == 400, body[:10]
    assert pocket.invoices == {}


async def test_an_amount_under_500_tugrik_is_refused_before_an_order_exists(app: Parts) -> None:
    line = CartLine("milk-tea", "Milk tea", 1, Money(49999, "MNT"))
    with pytest.raises(CheckoutError) as refused:
        await app.checkout.place_order(
            user_id=CUSTOMER, chat_id=CUSTOMER, lines=[line], provider_name="pocket"
        )
    assert refused.value.reason == "amount_not_accepted"
    assert await app.checkout.orders_of(CUSTOMER, limit=5) == []
    choices = await app.checkout.payment_choices(CUSTOMER, Money(49999, "MNT"))
    assert [c.provider for c in choices] == []


# --- paying, the webhook and the check ----------------------------------------------------------


@both_databases
async def test_paid_in_the_app_the_webhook_is_confirmed_by_the_check(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    http: aiohttp.ClientSession,
    pocket: PocketServer,
) -> None:
    order, invoice = await opened(app, http, user, pocket)
    sent = pocket.invoices[invoice]
    assert (sent.amount, sent.consumer) == (12500, "ada")
    assert sent.info == f"#1 {order.description}"
    again = await post_tokens(http, button_url_of(order, app), pocket.customer_token("ada"))
    assert again[0] == 200
    assert len(pocket.invoices) == 1

    await pay(http, pocket, invoice, "paid")
    await settle(app, pocket)
    [hook] = pocket.webhooks
    assert hook.http_status == 200
    await user.wait_message("Payment received for order #1")
    await merchant.wait_message("Order #1 paid")
    paid = await app.checkout.order(1)
    assert paid is not None
    assert (paid.state, paid.paid) == (S.PAID, PRICE)
    status, html = await browse(http, button_url_of(order, app))  # nothing left to pay:
    assert (status, "Your order #1 is paid" in html) == (200, True)  # where it stands
    assert len(pocket.invoices) == 1


def button_url_of(order, app: Parts) -> str:
    return f"{app.web_url}/pay/pocket/{order.token}"


async def pay(http: aiohttp.ClientSession, pocket: PocketServer, invoice: int, outcome: str):
    async with http.post(
        f"{pocket.url}/sandbox/pay", json={"invoice_id": invoice, "outcome": outcome}
    ) as answer:
        assert answer.status == 200, await answer.text()


async def test_a_forged_paid_webhook_pays_nothing(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer
) -> None:
    _order, invoice = await opened(app, http, user, pocket)
    body = {"id": 1, "amount": 12500, "info": "x", "invoiceId": invoice, "invoiceState": "paid"}
    assert await webhook(http, app, body) == 200  # stored as a hint
    await settle(app, pocket)
    order = await app.checkout.order(1)
    assert order is not None
    assert order.state is S.AWAITING_PAYMENT
    assert pocket.invoices[invoice].state == "pending"


async def test_webhooks_without_our_key_or_with_another_are_refused(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer
) -> None:
    _order, invoice = await opened(app, http, user, pocket)
    body = {"invoiceId": invoice, "invoiceState": "paid"}
    async with http.post(f"{app.web_url}/callbacks/pocket", json=body) as answer:
        assert answer.status == 401
    assert await webhook(http, app, body, key="0" * 32) == 403
    assert await webhook(http, app, {"invoice": invoice}) == 400
    assert await webhook(http, app, {"invoiceId": "../x", "invoiceState": "paid"}) == 400
    order = await app.checkout.order(1)
    assert order is not None
    assert order.state is S.AWAITING_PAYMENT


async def test_a_paid_invoice_whose_answer_we_lost_is_told_to_the_admins(
    app: Parts, telegram: TelegramServer, http: aiohttp.ClientSession, pocket: PocketServer
) -> None:
    await eventually(lambda: pocket.fallback_url is not None)
    lost = pocket._new_invoice(amount=12500, info="#7 Milk tea x1", kind="consumer")
    await pay(http, pocket, lost.id, "paid")
    await settle(app, pocket)
    assert [h.http_status for h in pocket.webhooks] == [200]  # taken, not refused
    admin = BotUser(telegram.url, ADMIN, session=http)
    said = await admin.wait_message(f"payment {lost.id} of")
    assert "belongs to no order of ours" in said["text"]
    assert "12,500" in said["text"]
    body = {"invoiceId": lost.id, "invoiceState": "paid"}
    assert await webhook(http, app, body) == 200  # the same again: told once
    forged = {"invoiceId": 424242, "invoiceState": "paid"}  # Pocket knows no such invoice
    assert await webhook(http, app, forged) == 200
    await settle(app, pocket)
    told = [m for m in await admin.bot_messages() if "to no order of ours" in m.get("text", "")]
    assert len(told) == 1


async def test_a_webhook_posted_twice_notifies_once(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    http: aiohttp.ClientSession,
    pocket: PocketServer,
) -> None:
    pocket.post_twice = True
    pocket.webhook_newer_shape = True  # a float amount and a string invoiceId
    pocket.uppercase_states = True  # "PAID"
    _order, invoice = await opened(app, http, user, pocket)
    await pay(http, pocket, invoice, "paid")
    await settle(app, pocket, 0.5)
    assert [h.http_status for h in pocket.webhooks] == [200, 200]
    await user.wait_message("Payment received for order #1")
    await asyncio.sleep(0.3)
    customer = [m for m in await user.bot_messages() if "Payment received" in m.get("text", "")]
    shop = [m for m in await merchant.bot_messages() if "Order #1 paid" in m.get("text", "")]
    assert (len(customer), len(shop)) == (1, 1)


@pytest.mark.parametrize("outcome", ["unsuccess", "cancelled", "rejected", "failed"])
async def test_a_failed_invoice_fails_the_order(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer, outcome: str
) -> None:
    pocket.webhook_on_failure = True
    _order, invoice = await opened(app, http, user, pocket)
    await pay(http, pocket, invoice, outcome)
    await settle(app, pocket)
    await user.wait_message("did not go through")
    order = await app.checkout.order(1)
    assert order is not None
    assert order.state is S.FAILED


async def test_a_payment_whose_webhook_is_lost_is_found_by_the_sweep(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer
) -> None:
    _order, invoice = await opened(app, http, user, pocket)
    pocket.fallback_url = None  # the webhook goes nowhere
    await pay(http, pocket, invoice, "paid")
    await app.reconciler.run_once(datetime.now(UTC) + timedelta(minutes=5))
    await user.wait_message("Payment received for order #1")
    order = await app.checkout.order(1)
    assert order is not None
    assert order.state is S.PAID


# --- the QR mode ---------------------------------------------------------------------------------


async def test_the_qr_page_shows_one_invoice_however_often_it_is_opened(
    app: Parts, user: BotUser, http: aiohttp.ClientSession, pocket: PocketServer
) -> None:
    url = await buy(user)
    pages = []
    for _ in range(2):
        async with http.get(f"{url}?qr=1") as page:
            assert page.status == 200
            pages.append(await page.text())
    [invoice] = pocket.invoices.values()
    assert invoice.kind == "v2"
    assert invoice.order_number.startswith("tg-1-")
    assert pages[0] == pages[1]
    assert f'href="pocket://invoice?id={invoice.id}"' in pages[0]
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', pages[0])
    async with http.get(url) as page:  # the in-app page, opened after: the same invoice
        assert 'id="qr"' in await page.text()
    status, said = await post_tokens(http, url, pocket.customer_token("ada"))  # inside Pocket
    assert (status, said["follow"]) == (200, f"{url}?qr=1")  # on to the QR page's deeplink
    await pay(http, pocket, invoice.id, "paid")
    await settle(app, pocket)
    await user.wait_message("Payment received for order #1")
    assert len(pocket.invoices) == 1


# --- the fallback URL ---------------------------------------------------------------------------


async def test_the_fallback_url_is_set_once_and_kept_on_the_next_start(
    make_settings: Callable[..., Settings], pocket: PocketServer
) -> None:
    settings = make_settings(public_url="https://shop.example")
    async with BotApp(settings) as parts:
        await eventually(lambda: pocket.fallback_url is not None)
        key = parts.checkout.provider_key("pocket")
        assert pocket.fallback_url == f"https://shop.example/callbacks/pocket?k={key}"
    calls = pocket.api_calls
    async with BotApp(settings):
        await eventually(lambda: pocket.api_calls > calls)
        await asyncio.sleep(0.2)
        assert pocket.api_calls == calls + 1  # a GET only: the URL was ours already


async def test_wrong_credentials_tell_the_admins_once_at_start_up(
    make_settings: Callable[..., Settings],
    pocket: PocketServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    admin = BotUser(telegram.url, ADMIN, session=http)
    async with BotApp(make_settings(env={"POCKET_CLIENT_SECRET": "rotated"})) as parts:
        said = await admin.wait_message("Pocket refused our credentials or settings")
        await parts.notifier.flush()
    assert "rotated" not in json.dumps(said)
    assert pocket.fallback_url is None


async def test_hostile_requests_to_the_page_and_the_webhook_are_4xx_without_a_traceback(
    app: Parts,
    user: BotUser,
    http: aiohttp.ClientSession,
    pocket: PocketServer,
    no_tracebacks: None,
) -> None:
    page = await buy(user)
    hook = f"{app.web_url}/callbacks/pocket?k={app.checkout.provider_key('pocket')}"
    attempts = [
        (page, b"\x00"),
        (page, b'{"accessToken": "\\u0000"}'),
        (page, b'{"accessToken": "a.b.c", "refreshToken": ["x"]}'),
        (page, b'{"accessToken": "' + b"e" * 15000 + b'"}'),
        (page, b"[" * 5000 + b"]" * 5000),
        (hook, b"\xff\xfe"),
        (hook, b"[]"),
        (hook, b'{"invoiceId": {"a": 1}, "invoiceState": "paid"}'),
        (hook, b'{"invoiceId": true}'),
        (hook, b'{"invoiceId": "1' + b"x" * 100 + b'"}'),
        (hook, b'{"invoiceId": "1/../../x"}'),
        (f"{app.web_url}/callbacks/pocket?k=%00", b'{"invoiceId": 1}'),
    ]
    for url, body in attempts:
        async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as a:
            assert 400 <= a.status < 500, (url[-20:], body[:30], a.status)
    assert pocket.invoices == {}
