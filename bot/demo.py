"""`python -m bot demo`: the whole flow on loopback, with no Telegram or provider account.

Starts the sandbox (the Telegram Bot API and every provider's emulator), runs the real bot
against it, and plays a customer who pays five ways: Redoya (two products in the cart, one of
them shipped, so the delivery details are asked; the emulated page, back to the bot), Telegram
Stars (an invoice in the chat), KTWidget (its callback and the PDF receipt), Pocket (our bridge
page, the invoice, the webhook checked) and Halkbank through the Turkmen ERP ("Check payment"
in the chat). Prints the chat transcript and the orders' final states.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from bot.app import BotApp
from bot.config import Settings
from bot.core import OrderState
from bot.wiring import load_settings
from sandbox import registry
from sandbox.base import FakeServer
from sandbox.botuser import BotUser, button_url, transcript
from sandbox.telegram import MERCHANT_CHAT_ID

DEMO_CATALOG = Path(__file__).parent / "demo_catalog.toml"
CUSTOMER_ID = 1001


def sandbox_settings(
    *servers: FakeServer, env: Mapping[str, str] | None = None, **overrides: object
) -> Settings:
    """Settings that point the bot at running emulators, from the `.env` lines each prints
    (shared with the tests and the benchmarks): only those providers are enabled. `env`
    changes some of those lines (STARS_ENABLED=false: the sandbox without Stars)."""
    values: dict[str, object] = {
        "web_host": "127.0.0.1",
        "web_port": 0,
        "database_url": "sqlite:///:memory:",
        "catalog_path": DEMO_CATALOG,
        "merchant_chat_id": MERCHANT_CHAT_ID,
        "http_timeout": 5.0,
    }
    return load_settings(registry.env_of(servers) | dict(env or {}), **(values | overrides))


async def pay_on(http: aiohttp.ClientSession, emulator: FakeServer, **body: object) -> dict:
    """The customer on the provider's page (the emulator's /sandbox/pay): its answer."""
    async with http.post(f"{emulator.url}/sandbox/pay", json=body) as answer:
        if answer.status != 200:
            raise RuntimeError(f"{emulator.name}: {answer.status} {await answer.text()}")
        return await answer.json()


async def deliver(user: BotUser) -> None:
    """Answer the delivery questions as a customer: name, the contact button, address, no
    comment, then on to paying from the summary."""
    await user.wait_message("the recipient's name")
    await user.send("Ada Lovelace")
    await user.wait_message("phone number")
    await user.send_contact("905321234567")
    await user.wait_message("delivery address")
    await user.send("Moda Cd. 12, Kadıköy, Istanbul")
    await user.wait_message("comment")
    await user.press(text="Skip")
    await user.wait_message("Is everything right?")
    await user.press(text="Continue to payment")


async def run_demo() -> int:
    servers = await registry.start_all()
    telegram, redoya, ktwidget = servers["telegram"], servers["redoya"], servers["ktwidget"]
    pocket, erp = servers["pocket"], servers["erp"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = sandbox_settings(*servers.values(), database_url=f"sqlite:///{tmp}/demo.db")
            async with BotApp(settings) as parts, aiohttp.ClientSession() as http:
                user = BotUser(
                    telegram.url,
                    CUSTOMER_ID,
                    first_name="Ada",
                    last_name="Lovelace",
                    username="ada",
                    session=http,
                )
                await user.send("/start")
                await user.wait_message("Catalog")
                await user.press(text="Coffee")
                await user.wait_message(predicate=lambda m: "Coffee" in m.get("text", ""))
                await user.press(text="Turkish coffee")
                await user.wait_message("Turkish coffee")
                await user.press(text="Add to cart")
                await user.press(text="« Back")
                await user.wait_message(predicate=lambda m: "Coffee" in m.get("text", ""))
                await user.press(text="Brass grinder")
                await user.wait_message("Brass grinder")
                await user.press(text="Add to cart")
                await user.press(text="🛒 Cart")
                await user.wait_message("Your cart")
                await user.press(text="Checkout")
                await deliver(user)  # the grinder is shipped: where to
                order_message = await user.wait_message("Order #")
                pay_url = button_url(order_message, "Pay")

                redirect = (await pay_on(http, redoya, url=pay_url, outcome="paid"))["redirect"]
                async with http.get(redirect) as page:  # the customer's browser comes back
                    page_text = await page.text()
                await user.wait_message("Payment received")

                # then a digital gift paid in Telegram Stars, without leaving the chat
                await user.send("/catalog")
                await user.wait_message("Catalog")
                await user.press(text="Gifts")
                await user.wait_message(predicate=lambda m: "Gifts" in m.get("text", ""))
                await user.press(text="Coffee club")
                await user.wait_message("Coffee club")
                await user.press(text="Buy now")
                await user.wait_message(predicate=lambda m: "invoice" in m)
                stars = await user.pay_invoice()  # pre-checkout answered, then the payment
                await user.wait_message("Payment received for order #2")
                merchant_chat = BotUser(telegram.url, MERCHANT_CHAT_ID, session=http)
                await merchant_chat.wait_message("Order #2 paid", after_id=0)

                # and Kazakh tea through KTWidget: its callback is the truth, its receipt a PDF
                await user.send("/start p_kazakh-tea")
                await user.wait_message("Kazakh black tea")
                await user.press(text="Buy now")
                kt_message = await user.wait_message("Order #3")
                await pay_on(http, ktwidget, url=button_url(kt_message, "Pay"), outcome="completed")
                await user.wait_message("Payment received for order #3")
                await user.wait_message(predicate=lambda m: "document" in m)
                await merchant_chat.wait_message("Order #3 paid", after_id=0)

                # and Mongolian milk tea through Pocket: our page inside the Pocket app gets
                # the customer's token (pocket.js; here posted as the page's script posts it),
                # we open the invoice, the customer confirms it in Pocket, the webhook is checked
                await user.send("/start p_milk-tea")
                await user.wait_message("Mongolian milk tea")
                await user.press(text="Buy now")
                bridge = button_url(await user.wait_message("Order #4"), "Pay")
                customer_token = pocket.customer_token("ada")  # type: ignore[attr-defined]
                async with http.post(bridge, json={"accessToken": customer_token}) as answer:
                    assert answer.status == 200, await answer.text()
                milk = await parts.checkout.order(4)
                assert milk is not None
                await pay_on(http, pocket, invoice_id=milk.provider_payment_id, outcome="paid")
                await user.wait_message("Payment received for order #4")
                await merchant_chat.wait_message("Order #4 paid", after_id=0)

                # and chorek from the Ashgabat bazaar through the Turkmen ERP and Halkbank: the
                # bank never sends the customer back, so they press "Check payment"; Halkbank
                # holds 1.14 of the 1.15 TMT (the ERP's lost tiyin), noted in the audit
                await user.send("/start p_chorek")
                await user.wait_message("Chorek")
                await user.press(text="Buy now")
                await user.wait_message("How would you like to pay?")
                await user.press(text="Halkbank")
                bank_card = await user.wait_message("Order #5")
                await pay_on(http, erp, url=button_url(bank_card, "Pay"), outcome="paid")
                await user.press(text="Check payment")
                await user.wait_message("Payment received for order #5")
                await merchant_chat.wait_message("Order #5 paid", after_id=0)
                await parts.notifier.flush()

                bread, milk, tea, gift, order = await parts.checkout.orders_of(CUSTOMER_ID, limit=5)
                merchant = await merchant_chat.messages()
                print("=== chat with the customer ===")
                print(transcript(await user.messages()))
                print("=== merchant chat ===")
                print(transcript(merchant))
                print("=== return page ===")
                print(("Payment received" in page_text and "Payment received") or page_text[:200])
                print(
                    f"=== orders (the Stars pre-checkout answered in {stars['answered_in']} s) ==="
                )
                for each in (order, gift, tea, milk, bread):
                    print(
                        f"order #{each.id}: {each.state} · {each.total} "
                        f"· {each.provider} payment {each.provider_payment_id}"
                    )
                all_paid = all(o.state is OrderState.PAID for o in (order, gift, tea, milk, bread))
                return 0 if all_paid else 1
    finally:
        await registry.stop_all(servers)
    return 1


if __name__ == "__main__":
    import asyncio

    sys.exit(asyncio.run(run_demo()))
