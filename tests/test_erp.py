"""Issue 23: Halkbank and TFEB through the Turkmen ERP, over real HTTP against the sandbox: the
four calls, both banks end to end, and each of the ERP's quirks through the adapter and, where a
customer meets it, through the chat."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import httpx
import pytest
from pydantic import SecretStr

from bot.app import BotApp, Parts
from bot.config import Settings
from bot.core.confirm import stored_ref
from money import AmountNotRepresentable, Money
from providers.base import LineRefusal, PaymentState, ProviderUnavailable
from providers.erp import Bank, ErpProvider, wire
from sandbox.botuser import BotUser, button_url
from sandbox.erp import ErpServer
from sandbox.telegram import TelegramServer
from storage.base import OrderState
from tests.conftest import ADMIN, CUSTOMER, both_databases

S = OrderState
BANKS = {"Halkbank": "halkbank", "TFEB": "foreign_affairs_bank"}


async def buy(user: BotUser, product: str, bank: str, quantity: int = 1) -> dict:
    """/start p_<product> -> Buy now -> the bank: the order's card."""
    await user.send(f"/start p_{product}")
    await user.wait_message(predicate=lambda m: "Buy now" in str(m.get("reply_markup")))
    await user.press(text="Buy now")
    await user.wait_message("How would you like to pay?")
    await user.press(text=bank)
    return await user.wait_message("Order #")


async def pay(http: aiohttp.ClientSession, erp: ErpServer, card: dict, outcome: str, **more):
    async with http.post(
        f"{erp.url}/sandbox/pay", json={"url": button_url(card, "Pay"), "outcome": outcome, **more}
    ) as answer:
        assert answer.status == 200, await answer.text()
        return await answer.json()


async def check(user: BotUser) -> dict | None:
    """The customer presses "Check payment" on the newest card."""
    return await user.press(text="Check payment")


async def order_of(app: Parts, order_id: int = 1):
    order = await app.checkout.order(order_id)
    assert order is not None
    return order


def adapter(erp: ErpServer, client: httpx.AsyncClient, bank: Bank, **env: str) -> ErpProvider:
    given = erp.env() | env
    return ErpProvider(
        client,
        bank=bank,
        api_url=given["ERP_API_URL"],
        token=given["ERP_TOKEN"],
        pm_id=int(given["ERP_PM_ID"]),
        rp_acc_guid=given["ERP_RP_ACC_GUID"],
        login=given["ERP_LOGIN"],
        password=given["ERP_PASSWORD"],
    )


# --- both banks end to end ---------------------------------------------------------------------


@both_databases
@pytest.mark.parametrize("bank", ["Halkbank", "TFEB"])
async def test_a_bank_payment_checked_in_the_chat_ends_paid(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    erp: ErpServer,
    http: aiohttp.ClientSession,
    bank: str,
) -> None:
    card = await buy(user, "melon-jam", bank)
    assert "The bank does not send you back here" in card["text"]
    assert "press Check payment" in card["text"]
    [sent] = [body["orderInv"] for body in erp.checkouts]
    assert sent["InvStatId"] == 13
    assert "PaymStatusId" not in sent  # the ERP would believe a client's "paid"
    assert sent["OrderInvLines"] == [{"ResId": 105, "OInvLineAmount": 1, "OInvLinePrice": 120}]
    [registered] = erp.registrations
    assert registered.query["online_payment_type"] == BANKS[bank]
    assert registered.body["OrderDesc"].startswith("Order 1: Melon jam")

    answer = await check(user)  # before paying: not yet
    assert answer is not None
    assert "No payment yet" in answer["text"]
    await pay(http, erp, card, "paid")
    await check(user)
    await user.wait_message("Payment received for order #1: TMT120.00")
    await merchant.wait_message("Order #1 paid")
    order = await order_of(app)
    assert (order.state, order.paid) == (S.PAID, Money(12000, "TMT"))
    assert order.payment_data["bank"] == BANKS[bank]


@pytest.mark.parametrize(("product", "held"), [("green-tea-sachet", 28), ("chorek", 114)])
async def test_prices_halkbank_holds_a_tiyin_less_of_end_paid_and_stay_paid(
    app: Parts, user: BotUser, erp: ErpServer, http: aiohttp.ClientSession, product: str, held: int
) -> None:
    card = await buy(user, product, "Halkbank")
    await pay(http, erp, card, "paid")
    await check(user)
    await user.wait_message("Payment received for order #1")
    order = await order_of(app)
    assert (order.state, order.paid) == (S.PAID, Money(held, "TMT"))
    [paid] = [e for e in await app.checkout.audit(1) if e.to_state is S.PAID]
    assert "0.01 TMT less" in paid.detail
    for _ in range(3):  # the ERP books it as a part payment: every later check says status 1
        confirmation = await app.checkout.confirm(1, actor="sweep")
        assert confirmation.order.state is S.PAID
    assert len([e for e in await app.checkout.audit(1) if e.to_state is S.PAID]) == 1


async def test_a_part_payment_ends_in_review(
    app: Parts,
    user: BotUser,
    telegram: TelegramServer,
    erp: ErpServer,
    http: aiohttp.ClientSession,
) -> None:
    card = await buy(user, "melon-jam", "TFEB")
    await pay(http, erp, card, "part", amount="60.00")
    await check(user)
    await user.wait_message("checking the payment for order #1 by hand")
    order = await order_of(app)
    assert order.state is S.NEEDS_REVIEW
    await BotUser(telegram.url, ADMIN, session=http).wait_message("needs review")


async def test_a_second_validation_of_a_paid_invoice_is_paid_not_failed(
    erp: ErpServer, app: Parts, user: BotUser, http: aiohttp.ClientSession
) -> None:
    card = await buy(user, "melon-jam", "TFEB")
    await pay(http, erp, card, "paid")
    order = await order_of(app)
    provider = app.providers.get("tfeb")
    ref = stored_ref(order)
    assert ref is not None
    first = await provider.fetch_status(ref)  # its answer lost on the way, say
    again = await provider.fetch_status(ref)
    assert (first.state, again.state) == (PaymentState.PAID, PaymentState.PAID)
    assert again.provider_status == "done"
    assert again.paid == Money(12000, "TMT")
    await check(user)
    await user.wait_message("Payment received for order #1")


# --- the ERP's quirks, through the chat ----------------------------------------------------------


async def test_a_renamed_invoice_is_still_found_by_the_sweep(
    app: Parts, user: BotUser, erp: ErpServer, http: aiohttp.ClientSession
) -> None:
    erp.rename_next = 1  # Halkbank: "already used"; the ERP renames and registers again
    card = await buy(user, "melon-jam", "Halkbank")
    order = await order_of(app)
    [registered] = erp.registrations
    assert order.payment_data["reg_no"] != registered.body["OInvRegNo"]  # the new name kept
    await pay(http, erp, card, "paid")
    await app.reconciler.run_once(datetime.now(UTC) + timedelta(minutes=5))
    await user.wait_message("Payment received for order #1")


async def test_an_unreachable_bank_leaves_the_order_awaiting(
    app: Parts, user: BotUser, erp: ErpServer, http: aiohttp.ClientSession
) -> None:
    card = await buy(user, "melon-jam", "Halkbank")
    await pay(http, erp, card, "paid")
    erp.bank_down = True
    answer = await check(user)
    assert answer is not None
    assert "not answering right now" in answer["text"]
    assert (await order_of(app)).state is S.AWAITING_PAYMENT
    erp.bank_down = False
    await check(user)
    await user.wait_message("Payment received for order #1")


@pytest.mark.parametrize(
    ("outcome", "state"), [("declined", S.FAILED), ("reversed", S.FAILED), ("pending_3ds", None)]
)
async def test_declined_and_reversed_fail_and_3d_secure_waits(
    app: Parts,
    user: BotUser,
    erp: ErpServer,
    http: aiohttp.ClientSession,
    outcome: str,
    state: OrderState | None,
) -> None:
    card = await buy(user, "melon-jam", "Halkbank")
    if outcome == "reversed":
        await pay(http, erp, card, "paid")
        order = await order_of(app)
        erp.orders[order.provider_payment_id or ""].state = "reversed"  # before we asked
    else:
        await pay(http, erp, card, outcome)
    await check(user)
    order = await order_of(app)
    assert order.state is (state or S.AWAITING_PAYMENT)
    if state is S.FAILED:
        await user.wait_message("did not go through")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"state": "deleted"}, "no longer sold"),
        ({"state": "inactive"}, "not sold now"),
        ({"state": "ended"}, "sold out"),
        ({"price": "121.00"}, "its price changed"),
    ],
)
async def test_lines_the_erp_refuses_are_named_and_the_order_fails(
    app: Parts, user: BotUser, erp: ErpServer, change: dict, said: str
) -> None:
    erp.resource(105, **change)
    await user.send("/start p_melon-jam")
    await user.wait_message(predicate=lambda m: "Buy now" in str(m.get("reply_markup")))
    await user.press(text="Buy now")
    await user.wait_message("How would you like to pay?")
    answer = await user.press(text="Halkbank")
    assert answer is not None
    assert f"Melon jam, 1 kg: {said}" in answer["text"]
    [order] = await app.checkout.orders_of(CUSTOMER, limit=5)
    assert order.state is S.FAILED
    assert erp.registrations == []  # nothing registered at the bank


async def test_some_lines_refused_name_only_those(
    app: Parts, user: BotUser, erp: ErpServer
) -> None:
    erp.resource(101, state="ended")
    for product in ("chorek", "green-tea-sachet"):
        await user.send(f"/start p_{product}")
        await user.wait_message(predicate=lambda m: "Add to cart" in str(m.get("reply_markup")))
        await user.press(text="Add to cart")
    await user.send("/cart")
    await user.wait_message("Your cart")
    await user.press(text="Checkout")
    await user.wait_message("How would you like to pay?")
    answer = await user.press(text="TFEB")
    assert answer is not None
    assert "Green tea, one sachet: sold out" in answer["text"]
    assert "Chorek" not in answer["text"]
    assert erp.deleted  # the ERP deleted that order itself (status 2)


# --- tokens and sessions ---------------------------------------------------------------------


async def test_an_expired_token_tells_the_admins_once_and_the_order_is_recovered(
    make_settings: Callable[..., Settings],
    user: BotUser,
    erp: ErpServer,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
) -> None:
    settings = make_settings()
    admin = BotUser(telegram.url, ADMIN, session=http)
    async with BotApp(settings) as app:
        card = await buy(user, "melon-jam", "Halkbank")
        await pay(http, erp, card, "paid")
        erp.expire_token()
        for _ in range(2):
            await check(user)
        await app.reconciler.run_once(datetime.now(UTC) + timedelta(minutes=5))
        told = await admin.wait_message("refused our credentials or settings")
        assert "ERP_TOKEN" in told["text"]
        await app.notifier.flush()
        assert (await order_of(app)).state is S.AWAITING_PAYMENT
    texts = [m.get("text", "") for m in await admin.bot_messages()]
    assert sum("ERP_TOKEN" in t for t in texts) == 1
    assert erp.device_token not in " ".join(texts)

    erp.renew_tokens()  # the merchant puts a working token in the settings and restarts
    fixed = settings.model_copy(
        update={
            "providers": {
                name: p.model_copy(update={"token": SecretStr(erp.env()["ERP_TOKEN"])})
                if name in ("halkbank", "tfeb")
                else p
                for name, p in settings.providers.items()
            }
        }
    )
    async with BotApp(fixed) as app:
        await app.reconciler.run_once(datetime.now(UTC) + timedelta(hours=1))
        await user.wait_message("Payment received for order #1")


async def test_tfeb_logs_in_again_when_its_session_ends(
    app: Parts, user: BotUser, erp: ErpServer, http: aiohttp.ClientSession
) -> None:
    await buy(user, "melon-jam", "TFEB")
    erp.expire_session = True
    card = await buy(user, "chorek", "TFEB")
    assert (await order_of(app, 2)).state is S.AWAITING_PAYMENT
    await pay(http, erp, card, "paid")
    logins = [c for c in erp.calls if c.path == "/api/login/"]
    assert len(logins) == 2


async def test_halkbank_takes_manat_only_and_asks_nothing_otherwise(erp: ErpServer) -> None:
    async with httpx.AsyncClient() as client:
        provider = adapter(erp, client, Bank.HALKBANK)
        assert provider.amount_format.currencies == frozenset({"TMT"})
        with pytest.raises(AmountNotRepresentable):
            provider.amount_format.check(Money(1000, "RUB"))
    assert erp.calls == []


async def test_wrong_erp_login_is_misconfigured_and_names_no_secret(erp: ErpServer) -> None:
    async with httpx.AsyncClient() as client:
        provider = adapter(erp, client, Bank.TFEB, ERP_PASSWORD="not-it")
        with pytest.raises(Exception, match="ERP_LOGIN / ERP_PASSWORD") as raised:
            await provider._session_headers(fresh=True)
    assert "not-it" not in str(raised.value)


async def test_the_banks_urls_never_reach_the_log(
    app: Parts,
    user: BotUser,
    erp: ErpServer,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    card = await buy(user, "melon-jam", "Halkbank")
    await pay(http, erp, card, "paid")
    await check(user)
    await user.wait_message("Payment received")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert erp.halkbank_password not in logged
    assert erp.device_token not in logged


# --- answers the emulator does not give, read by the adapter's wire ------------------------------


def validated(status: int, body: dict) -> httpx.Response:
    return httpx.Response(status, json=body)


def read(response: httpx.Response, *, halkbank: bool = True):
    return wire.validation(
        response,
        provider="halkbank",
        halkbank=halkbank,
        order_id="o-1",
        reg_no="R1",
        total=Money(12000, "TMT"),
    )


@pytest.mark.parametrize(
    "message",
    ["Payment Validation: failed, Order not found", "Payment Validation: failed, no such rp acc"],
)
def test_a_reference_the_erp_does_not_find_is_reviewed_never_expired(message: str) -> None:
    status = read(validated(200, {"status": 0, "data": {}, "message": message}))
    assert status.state is PaymentState.NEEDS_REVIEW


def test_paid_for_another_order_or_with_less_deposited_is_reviewed() -> None:
    other = {"OrderNumber": "R2", "Amount": 12000, "depositAmount": 12000}
    assert read(validated(201, {"status": 1, "data": other})).state is PaymentState.NEEDS_REVIEW
    unnamed = {"Amount": 12000}
    assert read(validated(201, {"status": 1, "data": unnamed})).state is PaymentState.NEEDS_REVIEW
    short = {"OrderNumber": "R1", "Amount": 12000, "depositAmount": 6000}
    held = read(validated(201, {"status": 1, "data": short}))
    assert (held.state, held.paid) == (PaymentState.NEEDS_REVIEW, Money(6000, "TMT"))
    tfeb = {"transaction": {"orderId": "o-2", "totalAmount": 120}}
    answer = read(validated(201, {"status": 1, "data": tfeb}), halkbank=False)
    assert answer.state is PaymentState.NEEDS_REVIEW


def test_answers_that_are_neither_paid_nor_not_paid_are_asked_again() -> None:
    for response in (
        validated(200, {"status": 1, "data": {}}),
        validated(201, {"status": 0, "data": {}, "message": "x"}),
        validated(400, {"status": 0}),
        httpx.Response(200, content=b"[" * 5000),
    ):
        with pytest.raises(ProviderUnavailable):
            read(response)


def test_tfebs_not_paid_text_waits() -> None:
    data = {"response": {"operationResult": "GEN-00002", "operationResultDescription": "x"}}
    body = {"status": 0, "data": data, "message": "Payment Validation: failed (Declined)"}
    assert read(validated(200, body), halkbank=False).state is PaymentState.PENDING


def test_a_quantity_the_erp_cut_is_refused_before_the_bank() -> None:
    sent = [{"ResId": 105, "OInvLineAmount": 3, "OInvLinePrice": 120}]
    cut = {"data": {"OrderInvLines": [{"ResId": 105, "OInvLineAmount": 2}], "OInvFTotal": 240}}
    assert wire.changed_lines(cut, sent, Money(36000, "TMT")) == (("105", LineRefusal.SOLD_OUT),)
    same = {"data": {"OrderInvLines": [{"ResId": 105, "OInvLineAmount": 3}], "OInvFTotal": 360}}
    assert wire.changed_lines(same, sent, Money(36000, "TMT")) == ()


def test_order_desc_cannot_cut_halkbanks_url() -> None:
    assert wire.order_desc(7, "Tea & jam #2 = 5% +1?") == "Order 7: Tea   jam  2   5   1 "
