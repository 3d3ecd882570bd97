"""Admins and the merchant chat: their commands, in their language, with texts Telegram's HTML
parse mode accepts (the emulator refuses unknown tags the way Telegram does)."""

from __future__ import annotations

import aiohttp
import pytest

from bot.app import BotApp
from sandbox.botuser import BotUser
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from tests.conftest import ADMIN
from tests.flows import browse, order_product, pay


async def test_the_emulator_refuses_html_telegram_would_refuse(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    url = f"{telegram.url}/bot{telegram.token}/sendMessage"
    for text, problem in (
        ("/order <id>", 'Unsupported start tag "id" at byte offset 7'),
        ("<b>bold", 'end tag corresponding to start tag "b"'),
        ("<b>a</i>", 'Unexpected end tag "i"'),
    ):
        body = {"chat_id": 1, "text": text, "parse_mode": "HTML"}
        async with http.post(url, json=body) as answer:
            assert answer.status == 400
            assert problem in (await answer.json())["description"]
    long = {"chat_id": 1, "text": "<b>x</b>" * 4097, "parse_mode": "HTML"}
    async with http.post(url, json=long) as answer:
        assert (await answer.json())["description"] == "Bad Request: message is too long"
    fits = {"chat_id": 1, "text": "<b>x</b>" * 4096, "parse_mode": "HTML"}  # tags do not count
    async with http.post(url, json=fits) as answer:
        assert answer.status == 200
    body = {"chat_id": 1, "text": "<b>ok</b> &lt;id&gt;", "parse_mode": "HTML"}
    async with http.post(url, json=body) as answer:
        assert (await answer.json())["result"]["text"] == "ok <id>"


async def test_admin_help_and_bad_input_in_the_admins_language(
    app, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    admin = BotUser(telegram.url, ADMIN, language_code="ru", session=http)
    await admin.send("/admin")
    await admin.wait_message("/refund <id> [сумма]")
    await admin.wait_message("/today — показатели за сегодня")
    await admin.wait_message("/stats [дни] [chart]")
    await admin.send("/order 999")
    await admin.wait_message("Такого заказа нет")
    await admin.send("/stats 7")
    await admin.wait_message("Заказы за последние 7 дней")
    await admin.send("/stats 1")
    await admin.wait_message("Заказы за последний 1 день")


MERCHANT_TEXTS = [
    # MERCHANT_LOCALE, /today before any sale, the paid message, /today after it
    (
        "en",
        "No orders were paid or refunded in this period.",
        "Order #1 paid: ₺85.00 via Redoya",
        "TRY: paid: ₺85.00 (orders: 1) · refunded: ₺0.00 · net: ₺85.00",
    ),
    (
        "ru",
        "За этот период ничего не оплачено и не возвращено.",
        "Заказ №1 оплачен",
        "TRY: оплачено: 85,00\xa0₺ (заказов: 1)",
    ),
    (
        "tr",
        "Bu dönemde ödenen ya da iade edilen sipariş yok.",
        "Sipariş #1 ödendi: ₺85,00, Redoya ile",
        "TRY: ödenen: ₺85,00 (1 sipariş) · iade: ₺0,00 · net: ₺85,00",
    ),
]


@pytest.mark.parametrize(("locale", "nothing_yet", "paid", "today"), MERCHANT_TEXTS)
async def test_the_merchant_chat_speaks_merchant_locale(
    make_settings,
    user: BotUser,
    merchant: BotUser,
    redoya: RedoyaServer,
    http: aiohttp.ClientSession,
    locale: str,
    nothing_yet: str,
    paid: str,
    today: str,
) -> None:
    async with BotApp(make_settings(merchant_locale=locale)):
        await merchant.send("/today")  # whoever asks, the chat's language answers
        await merchant.wait_message(nothing_yet)
        message = await order_product(user, "Coffee", "Cezve")
        await browse(http, await pay(http, redoya.url, message, "paid"))
        await user.wait_message("Payment received")  # the customer keeps their own language
        await merchant.wait_message(paid)
        await merchant.send("/today")
        await merchant.wait_message(today)
