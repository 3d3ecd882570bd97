"""kill -9 between "Telegram accepted the message" and "the row is marked sent", under a storm
of callbacks: the message is never lost, and it is sent once more after the restart - at least
once, as README and bot/notify.py say (Telegram has no idempotency key). How narrow that window
stays under load is measured by bench/outbox_window.py (bench/BENCHMARKS.md)."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp

from sandbox.botuser import BotUser
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from tests.conftest import CUSTOMER
from tests.flows import browse, order_product, pay
from tests.test_commands import ROOT, clean_env, process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serving(http: aiohttp.ClientSession, web_url: str, within: float = 60) -> None:
    """Until the bot process answers /healthz (a cold start compiles every module first)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            async with http.get(f"{web_url}/healthz") as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert loop.time() < deadline, "the bot did not start"
        await asyncio.sleep(0.1)


async def storm(http: aiohttp.ClientSession, web_url: str, count: int) -> None:
    """Provider callbacks the bot must look up and refuse, 20 at a time."""
    gate = asyncio.Semaphore(20)

    async def one(n: int) -> None:
        body = f"Notification=EnginePaySuccess&OrderId=tg-{n}-storm&Amount=100"
        async with gate, http.post(f"{web_url}/callbacks/payture", data=body) as answer:
            await answer.read()

    await asyncio.gather(*(one(n) for n in range(count)), return_exceptions=True)


async def test_killed_after_telegram_accepted_the_paid_message_sends_it_once_more(
    tmp_path: Path,
    telegram: TelegramServer,
    redoya: RedoyaServer,
    payture,
    ktwidget,
    pocket,
    erp,
    http: aiohttp.ClientSession,
) -> None:
    port = free_port()
    web_url = f"http://127.0.0.1:{port}"
    env = clean_env(  # every emulator: the demo catalog sells in each one's currency
        **telegram.env(),
        **redoya.env(),
        **payture.env(),
        **ktwidget.env(),
        **pocket.env(),
        **erp.env(),
        WEB_PORT=str(port),
        DATABASE_URL=f"sqlite:///{tmp_path}/bot.db",
        CATALOG_PATH=str(ROOT / "bot" / "demo_catalog.toml"),
        OUTBOX_CLAIM_SECONDS="1",
        FIRST_CHECK_AFTER="3600",
    )
    user = BotUser(telegram.url, CUSTOMER, first_name="Ada", session=http)
    async with process("-m", "bot", "run", cwd=tmp_path, env=env) as bot:
        await serving(http, web_url)
        message = await order_product(user, "Coffee", "Cezve")
        redirect = await pay(http, redoya.url, message, "paid")
        telegram.hang_after_accepting("Payment received")
        flood = asyncio.create_task(storm(http, web_url, 400))
        await browse(http, redirect)
        await asyncio.wait_for(telegram.hung.wait(), 30)  # accepted; "sent" not written yet
        bot.send_signal(signal.SIGKILL)
        await bot.wait()
        await flood
    telegram.release()
    told = [m for m in await user.bot_messages() if "Payment received" in (m.get("text") or "")]
    assert len(told) == 1

    async with process("-m", "bot", "run", cwd=tmp_path, env=env) as bot:
        await user.send("/help")
        await user.wait_message("browse products", timeout=30)
        for _ in range(200):
            messages = await user.bot_messages()
            told = [m for m in messages if "Payment received" in (m.get("text") or "")]
            if len(told) > 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # a third copy would have come by now
        messages = await user.bot_messages()
        told = [m for m in messages if "Payment received" in (m.get("text") or "")]
        assert len(told) == 2  # the one Telegram took before the kill, and the one after
        bot.send_signal(signal.SIGTERM)
        await asyncio.wait_for(bot.wait(), 30)
