"""Steps a customer takes, shared by the flow tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bot.app import Parts
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


async def eventually(check: Callable[[], object | Awaitable[object]], timeout: float = 5.0) -> None:
    """Wait until `check()` (a value, or an awaitable of one) is true; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the condition did not come true within {timeout}s")
        await asyncio.sleep(0.02)


def fast(app: Parts) -> Parts:
    """No flood gaps in the app's notifier: its messages go out at once."""
    app.notifier.per_chat_gap = app.notifier.per_group_gap = 0.0
    return app
