"""The Telegram emulator's Stars payments, over HTTP as a bot sees them: invoices checked as
Telegram checks them, a pre-checkout query answered once within its window, charges delivered
as `successful_payment` (again on request, or never), refunds once, star transactions in
chronological order, and a reset that forgets it all. aiogram's own types parse every answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import LabeledPrice, Message, StarTransactions, Update
from aiohttp import web

from sandbox.botuser import BotUser
from sandbox.telegram import TelegramServer
from tests.conftest import CUSTOMER

Json = dict[str, Any]


def stars_invoice(**overrides: Any) -> Json:
    invoice: Json = {
        "chat_id": CUSTOMER,
        "title": "Cezve",
        "description": "A copper coffee pot",
        "payload": "order-1.c2lnbmVk",
        "currency": "XTR",
        "prices": [{"label": "Cezve", "amount": 50}],
    }
    invoice.update(overrides)
    return {k: v for k, v in invoice.items() if v is not None}


class Api:
    """The Bot API as the bot calls it, plus reading updates the way a polling bot does."""

    def __init__(self, telegram: TelegramServer, http: aiohttp.ClientSession) -> None:
        self.base = f"{telegram.url}/bot{telegram.token}"
        self.http = http
        self.offset = 0

    async def call(self, method: str, **params: Any) -> tuple[int, Json]:
        async with self.http.post(f"{self.base}/{method}", json=params) as answer:
            return answer.status, await answer.json()

    async def ok(self, method: str, **params: Any) -> Any:
        status, body = await self.call(method, **params)
        assert status == 200, body
        assert body["ok"] is True, body
        return body["result"]

    async def refused(self, method: str, **params: Any) -> str:
        status, body = await self.call(method, **params)
        assert status == 400, body
        assert body["ok"] is False, body
        assert body["error_code"] == 400, body
        return str(body["description"])

    async def updates(self, timeout: float = 0) -> list[Json]:
        """What getUpdates hands out now (waiting up to `timeout` for something), confirmed."""
        got = await self.ok("getUpdates", offset=self.offset, timeout=timeout)
        if got:
            self.offset = got[-1]["update_id"] + 1
        return list(got)

    async def next_update(self, kind: str) -> Json:
        """The next update of `kind`, parsed by aiogram as the bot would parse it."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for update in await self.updates(timeout=1):
                assert Update.model_validate(update)
                if kind in update:
                    return update
        raise AssertionError(f"no {kind} update")


@pytest.fixture
def api(telegram: TelegramServer, http: aiohttp.ClientSession) -> Api:
    return Api(telegram, http)


async def pay_answering(
    user: BotUser, api: Api, ok: bool = True, error_message: str | None = None, **body: Any
) -> tuple[Json, Json]:
    """Pay as the user while answering the pre-checkout query as the bot: (the query, the
    pay_invoice result)."""
    paying = asyncio.create_task(user.pay_invoice(**body))
    query = (await api.next_update("pre_checkout_query"))["pre_checkout_query"]
    answer = {"ok": ok} if error_message is None else {"ok": ok, "error_message": error_message}
    assert await api.ok("answerPreCheckoutQuery", pre_checkout_query_id=query["id"], **answer)
    return query, await paying


async def test_send_invoice_makes_an_invoice_message_with_a_pay_button(api: Api) -> None:
    sent = await api.ok("sendInvoice", **stars_invoice(start_parameter="cezve"))
    message = Message.model_validate(sent)
    assert message.invoice is not None
    assert message.invoice.model_dump() == {
        "title": "Cezve",
        "description": "A copper coffee pot",
        "start_parameter": "cezve",
        "currency": "XTR",
        "total_amount": 50,
    }
    assert "payload" not in sent["invoice"]  # the payload is the bot's, never shown
    assert sent["reply_markup"] == {"inline_keyboard": [[{"text": "Pay ⭐️50", "pay": True}]]}
    keyboard = {
        "inline_keyboard": [
            [{"text": "Pay 50 ⭐", "pay": True}],
            [{"text": "Cancel", "callback_data": "cancel:1"}],
        ]
    }
    own = await api.ok("sendInvoice", **stars_invoice(reply_markup=keyboard))
    assert own["reply_markup"] == keyboard
    assert own["invoice"]["start_parameter"] == ""
    not_pay_first = {"inline_keyboard": [[{"text": "Cancel", "callback_data": "cancel:1"}]]}
    assert (
        await api.refused("sendInvoice", **stars_invoice(reply_markup=not_pay_first))
        == "Bad Request: REPLY_MARKUP_BUY_EMPTY"
    )


INVALID_INVOICES = [
    ({"provider_token": "381764678:TEST:1"}, "Bad Request: STARS_INVOICE_INVALID"),
    (
        {"prices": [{"label": "a", "amount": 40}, {"label": "b", "amount": 10}]},
        "Bad Request: STARS_INVOICE_INVALID",
    ),
    ({"prices": []}, "Bad Request: STARS_INVOICE_INVALID"),
    ({"max_tip_amount": 10}, "Bad Request: STARS_INVOICE_INVALID"),
    ({"need_email": True}, "Bad Request: STARS_INVOICE_INVALID"),
    ({"payload": ""}, "Bad Request: INVOICE_PAYLOAD_INVALID"),
    ({"payload": "x" * 129}, "Bad Request: INVOICE_PAYLOAD_INVALID"),
    ({"payload": "ş" * 65}, "Bad Request: INVOICE_PAYLOAD_INVALID"),  # 130 bytes
    ({"prices": [{"label": "Cezve", "amount": 0}]}, "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID"),
    ({"prices": [{"label": "Cezve", "amount": -5}]}, "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID"),
    (
        {"prices": [{"label": "Cezve", "amount": 1.5}]},
        "Bad Request: can't parse prices JSON object",
    ),
    ({"prices": "[{label: 1}"}, "Bad Request: can't parse prices JSON object"),
    ({"prices": [{"amount": 50}]}, "Bad Request: can't parse prices JSON object"),
    ({"currency": "USD"}, "Bad Request: PAYMENT_PROVIDER_INVALID"),
    ({"currency": "stars"}, "Bad Request: CURRENCY_INVALID"),
    ({"currency": None}, 'Bad Request: parameter "currency" is required'),
    ({"title": ""}, "Bad Request: invoice title must be 1-32 characters"),
    ({"title": "t" * 33}, "Bad Request: invoice title must be 1-32 characters"),
    ({"description": "d" * 256}, "Bad Request: invoice description must be 1-255 characters"),
]


@pytest.mark.parametrize("method", ["sendInvoice", "createInvoiceLink"])
@pytest.mark.parametrize(("overrides", "description"), INVALID_INVOICES)
async def test_invoices_telegram_would_refuse_are_refused(
    api: Api, telegram: TelegramServer, method: str, overrides: Json, description: str
) -> None:
    assert await api.refused(method, **stars_invoice(**overrides)) == description
    assert not telegram.messages
    assert not telegram.invoices
    assert not telegram.invoice_links


@pytest.mark.parametrize("method", ["sendInvoice", "createInvoiceLink"])
async def test_invoices_at_the_limits_are_taken(api: Api, method: str) -> None:
    edge = stars_invoice(
        title="t" * 32,
        description="d" * 255,
        payload="ş" * 64,  # 128 bytes
        prices='[{"label": "Cezve", "amount": 1}]',  # as a form-encoding client sends it
        provider_token="",
        need_email=False,
    )
    assert await api.ok(method, **edge)


async def test_a_payment_answered_ok_delivers_successful_payment(
    api: Api, user: BotUser, telegram: TelegramServer
) -> None:
    invoice = await api.ok("sendInvoice", **stars_invoice())
    query, paid = await pay_answering(user, api)
    assert query["currency"] == "XTR"
    assert query["total_amount"] == 50
    assert query["invoice_payload"] == "order-1.c2lnbmVk"
    assert query["from"]["id"] == CUSTOMER
    assert paid["ok"] is True
    assert paid["timed_out"] is False
    assert paid["charge_id"].startswith("stx")
    assert paid["error_message"] is None
    assert 0 <= paid["answered_in"] < 5
    update = await api.next_update("message")
    assert update["update_id"] == paid["update_id"]
    payment = Update.model_validate(update).message.successful_payment
    assert payment is not None
    assert payment.telegram_payment_charge_id == paid["charge_id"]
    assert (payment.currency, payment.total_amount) == ("XTR", 50)
    assert payment.invoice_payload == "order-1.c2lnbmVk"
    assert payment.provider_payment_charge_id == ""
    assert update["message"]["chat"]["id"] == CUSTOMER
    assert update["message"]["message_id"] > invoice["message_id"]
    # the query is spent, and a paid invoice message cannot be paid again
    assert (
        await api.refused("answerPreCheckoutQuery", pre_checkout_query_id=query["id"], ok=True)
        == "Bad Request: QUERY_ID_INVALID"
    )
    with pytest.raises(AssertionError, match="already paid"):
        await user.pay_invoice(message_id=invoice["message_id"])
    assert telegram.charges[paid["charge_id"]]["refunded"] is False


async def test_a_payment_the_bot_refuses_charges_nothing(
    api: Api, user: BotUser, telegram: TelegramServer
) -> None:
    await api.ok("sendInvoice", **stars_invoice())
    paying = asyncio.create_task(user.pay_invoice())
    query = (await api.next_update("pre_checkout_query"))["pre_checkout_query"]
    no_reason = {"pre_checkout_query_id": query["id"], "ok": False}
    assert (
        await api.refused("answerPreCheckoutQuery", **no_reason) == "Bad Request: ERROR_TEXT_EMPTY"
    )
    assert await api.ok("answerPreCheckoutQuery", **no_reason, error_message="Sold out")
    paid = await paying
    assert paid["ok"] is False
    assert paid["charge_id"] is None
    assert paid["error_message"] == "Sold out"
    assert paid["timed_out"] is False
    assert await api.updates() == []
    assert not telegram.charges
    assert await api.ok("getStarTransactions") == {"transactions": []}


async def test_an_unanswered_query_times_out_and_a_late_answer_is_refused(
    api: Api, user: BotUser, telegram: TelegramServer
) -> None:
    telegram.pre_checkout_timeout = 0.5
    await api.ok("sendInvoice", **stars_invoice())
    started = time.monotonic()
    paid = await user.pay_invoice()
    assert 0.4 < time.monotonic() - started < 3
    assert paid["ok"] is False
    assert paid["timed_out"] is True
    assert paid["charge_id"] is None
    late = {"pre_checkout_query_id": paid["pre_checkout_query_id"], "ok": True}
    assert await api.refused("answerPreCheckoutQuery", **late) == "Bad Request: QUERY_ID_INVALID"
    assert not telegram.charges
    # the user can give up sooner than Telegram's window, and pay again after
    telegram.pre_checkout_timeout = 10
    started = time.monotonic()
    assert (await user.pay_invoice(timeout=0.2))["timed_out"] is True
    assert time.monotonic() - started < 2
    [query, _] = [u for u in await api.updates() if "pre_checkout_query" in u]
    assert query["pre_checkout_query"]["id"] == paid["pre_checkout_query_id"]
    _, paid = await pay_answering(user, api)
    assert paid["ok"] is True


async def test_unknown_queries_are_refused(api: Api) -> None:
    unknown = {"pre_checkout_query_id": "12345", "ok": True}
    assert await api.refused("answerPreCheckoutQuery", **unknown) == "Bad Request: QUERY_ID_INVALID"


async def test_refunds_once_and_tells_the_bot(
    api: Api, user: BotUser, telegram: TelegramServer
) -> None:
    await api.ok("sendInvoice", **stars_invoice())
    _, paid = await pay_answering(user, api)
    charge = paid["charge_id"]
    await api.next_update("message")
    refund = {"user_id": CUSTOMER, "telegram_payment_charge_id": charge}
    assert await api.ok("refundStarPayment", **refund) is True
    refunded = Update.model_validate(await api.next_update("message")).message.refunded_payment
    assert refunded is not None
    assert refunded.telegram_payment_charge_id == charge
    assert (refunded.currency, refunded.total_amount) == ("XTR", 50)
    assert refunded.invoice_payload == "order-1.c2lnbmVk"
    assert (
        await api.refused("refundStarPayment", **refund) == "Bad Request: CHARGE_ALREADY_REFUNDED"
    )
    for wrong in ({"telegram_payment_charge_id": "stxNOPE"}, {"user_id": CUSTOMER + 1}):
        assert (
            await api.refused("refundStarPayment", **{**refund, **wrong})
            == "Bad Request: CHARGE_NOT_FOUND"
        )
    listed = await api.ok("getStarTransactions")
    transactions = StarTransactions.model_validate(listed).transactions
    assert [t.id for t in transactions] == [charge, charge]
    assert [t.amount for t in transactions] == [50, 50]
    payment, back = transactions
    assert payment.source is not None
    assert payment.receiver is None
    assert back.receiver is not None
    assert back.source is None
    assert payment.source.user.id == back.receiver.user.id == CUSTOMER
    assert payment.source.invoice_payload == "order-1.c2lnbmVk"
    assert listed["transactions"][0]["source"]["type"] == "user"
    page = await api.ok("getStarTransactions", offset=1, limit=1)
    assert page["transactions"] == listed["transactions"][1:]


async def test_a_charge_can_be_delivered_again_or_not_at_all(
    api: Api, user: BotUser, telegram: TelegramServer
) -> None:
    await api.ok("sendInvoice", **stars_invoice())
    _, paid = await pay_answering(user, api)
    first = await api.next_update("message")
    again = await user.redeliver_payment(paid["charge_id"])
    second = await api.next_update("message")
    assert second["update_id"] == again["update_id"] != first["update_id"]
    assert second["message"] == first["message"]  # same message, same charge id
    with pytest.raises(AssertionError, match="no such charge"):
        await user.redeliver_payment("stxNOPE")
    # a lost update: the charge is made and listed, the bot hears nothing until it is redelivered
    await api.ok("sendInvoice", **stars_invoice(payload="order-2"))
    _, lost = await pay_answering(user, api, drop_update=True)
    assert lost["ok"] is True
    assert lost["update_id"] is None
    assert await api.updates() == []
    listed = (await api.ok("getStarTransactions"))["transactions"]
    assert [t["id"] for t in listed] == [paid["charge_id"], lost["charge_id"]]
    await user.redeliver_payment(lost["charge_id"])
    found = (await api.next_update("message"))["message"]["successful_payment"]
    assert found["telegram_payment_charge_id"] == lost["charge_id"]
    assert found["invoice_payload"] == "order-2"


async def test_an_invoice_link_can_be_paid_more_than_once(api: Api, user: BotUser) -> None:
    link = await api.ok("createInvoiceLink", **stars_invoice(chat_id=None))
    assert link.startswith("https://t.me/$")
    assert len(link) > len("https://t.me/$") + 10
    charges = set()
    for _ in range(2):
        _, paid = await pay_answering(user, api, link=link)
        assert paid["ok"] is True
        charges.add(paid["charge_id"])
        await api.next_update("message")
    assert len(charges) == 2
    with pytest.raises(AssertionError, match="no invoice link"):
        await user.pay_invoice(link="https://t.me/$nope")
    with pytest.raises(AssertionError, match="no invoice message in chat"):
        await user.pay_invoice()  # the chat has no invoice message


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[Json]]]:
    received: list[Json] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", received
    await runner.cleanup()


async def test_payments_reach_a_webhook_too(
    api: Api, user: BotUser, webhook: tuple[str, list[Json]]
) -> None:
    url, received = webhook
    assert await api.ok("setWebhook", url=url)
    await api.ok("sendInvoice", **stars_invoice())
    paying = asyncio.create_task(user.pay_invoice())

    async def delivered(kind: str) -> Json:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for update in received:
                if kind in update:
                    received.remove(update)
                    return update
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {kind} reached the webhook")

    query = (await delivered("pre_checkout_query"))["pre_checkout_query"]
    assert await api.ok("answerPreCheckoutQuery", pre_checkout_query_id=query["id"], ok=True)
    paid = await paying
    update = await delivered("message")
    assert (
        Update.model_validate(update).message.successful_payment.telegram_payment_charge_id
        == (paid["charge_id"])
    )


async def test_reset_forgets_payments_and_ends_a_waiting_one(
    api: Api, user: BotUser, telegram: TelegramServer
) -> None:
    await api.ok("sendInvoice", **stars_invoice())
    link = await api.ok("createInvoiceLink", **stars_invoice(chat_id=None))
    _, paid = await pay_answering(user, api, link=link)
    telegram.pre_checkout_timeout = 3
    waiting = asyncio.create_task(user.pay_invoice())
    await api.next_update("pre_checkout_query")
    started = time.monotonic()
    telegram.reset()
    assert (await waiting)["ok"] is False
    assert time.monotonic() - started < 1
    assert not (telegram.invoices)
    assert not (telegram.invoice_links)
    assert not (telegram.charges)
    assert not (telegram.pre_checkouts)
    assert not (telegram.star_transactions)
    assert telegram.pre_checkout_timeout == 10
    refund = {"user_id": CUSTOMER, "telegram_payment_charge_id": paid["charge_id"]}
    assert await api.refused("refundStarPayment", **refund) == "Bad Request: CHARGE_NOT_FOUND"
    with pytest.raises(AssertionError, match="no invoice link"):
        await user.pay_invoice(link=link)


async def test_aiogram_drives_a_whole_stars_payment(
    telegram: TelegramServer, user: BotUser
) -> None:
    """aiogram's own client (form-encoded calls, its parsing of every answer) against it."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(telegram.url))
    bot = Bot(telegram.token, session=session)
    try:
        sent = await bot.send_invoice(
            chat_id=CUSTOMER,
            title="Cezve",
            description="A copper coffee pot",
            payload="order-7",
            currency="XTR",
            prices=[LabeledPrice(label="Cezve", amount=75)],
        )
        assert sent.invoice is not None
        assert sent.invoice.total_amount == 75
        assert sent.reply_markup.inline_keyboard[0][0].pay is True
        link = await bot.create_invoice_link(
            title="Cezve",
            description="A copper coffee pot",
            payload="order-8",
            currency="XTR",
            prices=[LabeledPrice(label="Cezve", amount=75)],
        )
        assert link.startswith("https://t.me/$")
        with pytest.raises(TelegramBadRequest, match="STARS_INVOICE_INVALID"):
            await bot.send_invoice(
                chat_id=CUSTOMER,
                title="Cezve",
                description="A copper coffee pot",
                payload="order-9",
                currency="XTR",
                prices=[LabeledPrice(label="a", amount=1), LabeledPrice(label="b", amount=2)],
            )
        paying = asyncio.create_task(user.pay_invoice())
        [update] = await bot.get_updates(timeout=5)
        assert update.pre_checkout_query is not None
        assert update.pre_checkout_query.invoice_payload == "order-7"
        assert await bot.answer_pre_checkout_query(update.pre_checkout_query.id, ok=True)
        paid = await paying
        [update] = await bot.get_updates(offset=update.update_id + 1, timeout=5)
        payment = update.message.successful_payment
        assert payment.telegram_payment_charge_id == paid["charge_id"]
        assert await bot.refund_star_payment(CUSTOMER, payment.telegram_payment_charge_id)
        with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
            await bot.refund_star_payment(CUSTOMER, payment.telegram_payment_charge_id)
        [update] = await bot.get_updates(offset=update.update_id + 1, timeout=5)
        assert update.message.refunded_payment.total_amount == 75
        transactions = (await bot.get_star_transactions(limit=10)).transactions
        assert [t.id for t in transactions] == [paid["charge_id"]] * 2
        assert transactions[1].receiver.user.id == CUSTOMER
    finally:
        await bot.session.close()
