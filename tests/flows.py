"""Steps a customer takes, shared by the flow tests."""

from __future__ import annotations

import aiohttp

from sandbox.botuser import BotUser, button_url


async def order_product(user: BotUser, category: str, product: str, *, provider: str = "") -> dict:
    """/start -> category -> product -> Buy now [-> provider]; returns the order message."""
    await user.send("/start")
    await user.wait_message("Catalog")
    await user.press(text=category)
    await user.wait_message(predicate=lambda m: category in (m.get("text") or ""))
    await user.press(text=product)
    await user.wait_message(product)
    await user.press(text="Buy now")
    if provider:
        await user.wait_message("How would you like to pay?")
        await user.press(text=provider)
    return await user.wait_message("Order #")


async def pay(http: aiohttp.ClientSession, provider_url: str, message: dict, outcome: str) -> str:
    """Act on the provider's page; returns the URL the browser is sent back to."""
    async with http.post(
        f"{provider_url}/sandbox/pay", json={"url": button_url(message, "Pay"), "outcome": outcome}
    ) as answer:
        assert answer.status == 200, await answer.text()
        return (await answer.json())["redirect"]


async def browse(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as page:
        return page.status, await page.text()
