"""Issue 22 in a real headless browser (chromium, a phone's screen): the Pay button's page as
the customer meets it inside the Pocket app (pocket.js, getToken, the post, the invoice, paid),
outside it (how to open it in Pocket, the QR code offered), and the QR code's image read back
to the payload Pocket gave."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest

from bot.app import BotApp, Parts
from bot.config import Settings
from sandbox.botuser import BotUser, button_url
from sandbox.pocket import PocketServer
from sandbox.telegram import TelegramServer
from storage.base import OrderState
from tests.browser import Browser, qr_text
from tests.flows import order_product
from tests.test_pocket import pay, settle

S = OrderState


async def pay_button(user: BotUser) -> str:
    return button_url(await order_product(user, "Tea", "Mongolian milk tea"), "Pay")


async def test_inside_pocket_the_page_opens_the_invoice_and_the_order_ends_paid(
    app: Parts,
    user: BotUser,
    merchant: BotUser,
    http: aiohttp.ClientSession,
    pocket: PocketServer,
    browser: Browser,
) -> None:
    pocket.js_user = "bat"
    await browser.open(await pay_button(user))
    said = await browser.text_of("#status", "Confirm the payment in Pocket")
    assert "message in the chat" in said
    assert await browser.fits_the_screen()
    order = await app.checkout.order(1)
    assert order is not None
    assert order.provider_payment_id is not None
    invoice = pocket.invoices[int(order.provider_payment_id)]
    assert (invoice.kind, invoice.consumer, invoice.amount) == ("consumer", "bat", 12500)

    await pay(http, pocket, invoice.id, "paid")
    await settle(app, pocket)
    await user.wait_message("Payment received for order #1")
    await merchant.wait_message("Order #1 paid")
    order = await app.checkout.order(1)
    assert order is not None
    assert order.state is S.PAID


async def test_the_page_speaks_the_customers_language(
    app: Parts,
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
    pocket: PocketServer,
    browser: Browser,
) -> None:
    def mn(text: str) -> str:
        return app.i18n.gettext(text, locale="mn")

    customer = BotUser(telegram.url, 2002, first_name="Bat", language_code="mn", session=http)
    await customer.send("/start p_milk-tea")
    await customer.wait_message("süütei tsai")
    await customer.press(text=mn("Buy now"))
    order = await customer.wait_message(
        predicate=lambda m: "reply_markup" in m and "#" in m["text"]
    )
    await browser.open(button_url(order, mn("Pay")))
    await browser.text_of(
        "#status",
        mn(
            "Confirm the payment in {app}. We will send you a message in the chat as soon"
            " as it is paid."
        ).format(app="Pocket"),
    )
    assert await browser.script("return document.documentElement.lang;") == "mn"
    title = await browser.run(lambda: browser.driver.title)
    assert title.startswith(mn("Order #{id}: {amount}").split("#")[0])


async def test_outside_pocket_the_page_goes_on_to_the_qr_code(
    app: Parts,
    user: BotUser,
    http: aiohttp.ClientSession,
    pocket: PocketServer,
    browser: Browser,
) -> None:
    pocket.js_in_app = False  # an ordinary browser (Telegram's own): no PocketMobile channel
    await browser.open(await pay_button(user))
    png = await browser.image_bytes("img#qr")
    [invoice] = pocket.invoices.values()
    assert qr_text(png) == f"POCKET:INVOICE:{invoice.id}:{invoice.amount}"
    deeplink = await browser.run((await browser.visible("a#open")).get_attribute, "href")
    assert deeplink == f"pocket://invoice?id={invoice.id}"
    assert await browser.fits_the_screen()

    await pay(http, pocket, invoice.id, "paid")
    await pocket.settle()
    await browser.run((await browser.visible("a#check")).click)
    await browser.text_of("h1", "Payment received")
    await user.wait_message("Payment received for order #1")


async def test_in_app_mode_outside_pocket_says_how_to_open_it_there(
    make_settings: Callable[..., Settings],
    user: BotUser,
    pocket: PocketServer,
    browser: Browser,
) -> None:
    pocket.js_in_app = False
    async with BotApp(make_settings(env={"POCKET_MODE": "app"})):
        url = await pay_button(user)
        await browser.open(url)
        outside = await browser.text_of("#outside", "opens in the Pocket app")
        assert "Copy the link" in outside
        assert await browser.script("return document.getElementById('link').value;") == url
        assert await browser.fits_the_screen()
    assert pocket.invoices == {}  # nothing opened by looking


@pytest.mark.parametrize("knob", [{"js_error": "user declined"}])
async def test_a_token_pocket_does_not_give_is_said_and_opens_nothing(
    app: Parts, user: BotUser, pocket: PocketServer, browser: Browser, knob: dict
) -> None:
    for name, value in knob.items():
        setattr(pocket, name, value)
    await browser.open(await pay_button(user))
    await browser.text_of("#status", "could not confirm who you are")
    assert pocket.invoices == {}
