"""The outbox's crash window under load: the time from "Telegram accepted the message" to
"the row is marked sent". A process killed inside it sends that message again after the
restart (Telegram has no idempotency key), so the window must stay as narrow as one write,
never queued behind inbound traffic.

The bot runs for real against the sandbox (SQLite file, or PostgreSQL with --postgres) while a
storm of provider callbacks hits its web server; meanwhile the notifier sends one message to
each of many chats. The window of each row is measured by wrapping the bot's send and the
storage's mark_sent (this is a benchmark: it may look inside).

Run: `python -m bench.outbox_window [--messages 200] [--storm 3000] [--postgres URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from bot.app import BotApp
from bot.demo import sandbox_settings
from money import Money
from sandbox import registry
from storage.base import NewOrder, NewOutbox, OrderItem


async def fill(app: Any, orders: int) -> list[str]:
    """Orders awaiting payment at Payture, so each callback is stored and confirmed."""
    now = datetime.now(UTC)
    ids = []
    for n in range(orders):
        order = await app.storage.create_order(
            NewOrder(
                user_id=10_000 + n,
                chat_id=10_000 + n,
                provider="payture",
                total=Money(45000, "RUB"),
                token=f"bench-window-token-{n:08d}",
                items=[OrderItem("ivan-chai", "Ivan-chai", 1, 45000)],
            )
        )
        payment_id = f"tg-{order.id}-bench"
        await app.storage.set_checkout(
            order.id,
            pay_url="https://pay.example/x",
            provider_payment_id=payment_id,
            expires_at=now + timedelta(days=1),
            next_check_at=now + timedelta(hours=1),
        )
        ids.append(payment_id)
    return ids


async def storm(url: str, payment_ids: list[str], count: int, parallel: int) -> None:
    gate = asyncio.Semaphore(parallel)
    async with aiohttp.ClientSession() as http:

        async def one(n: int) -> None:
            body = (
                f"Notification=EnginePaySuccess&OrderId={payment_ids[n % len(payment_ids)]}"
                f"&Amount=45000&TransactionDate=01.12.2026+10:00:{n:05d}"
            )
            async with gate, http.post(url, data=body) as answer:
                await answer.read()

        await asyncio.gather(*(one(n) for n in range(count)))


async def measure(database_url: str, messages: int, count: int) -> list[float]:
    servers = await registry.start_all()
    try:
        settings = sandbox_settings(*servers.values(), database_url=database_url)
        async with BotApp(settings, background=False) as app:
            payment_ids = await fill(app, 300)
            accepted: dict[int, float] = {}
            windows: list[float] = []
            send, mark_sent = app.bot.send_message, app.storage.mark_sent

            async def timed_send(chat_id: int, *args: Any, **kwargs: Any) -> Any:
                sent = await send(chat_id, *args, **kwargs)
                accepted[chat_id] = time.perf_counter()
                return sent

            rows: dict[int, int] = {}

            async def timed_mark(message_id: int) -> None:
                await mark_sent(message_id)
                chat = rows.get(message_id)
                if chat in accepted:
                    windows.append(time.perf_counter() - accepted[chat])

            app.bot.send_message = timed_send  # type: ignore[method-assign]
            app.storage.mark_sent = timed_mark  # type: ignore[method-assign]
            for n in range(messages):
                chat = 50_000 + n
                await app.storage.enqueue(None, NewOutbox("card_failed", chat, {}))
            for row in await app.storage.due_outbox(datetime.now(UTC), limit=messages):
                rows[row.id] = row.chat_id
            app.notifier.per_second = 10_000  # the emulator has no flood limit; we measure writes
            flood = asyncio.create_task(
                storm(f"{app.web_url}/callbacks/payture", payment_ids, count, 50)
            )
            await asyncio.sleep(0.2)  # the storm is under way
            while len(windows) < messages and not flood.done():
                await app.notifier.flush()
            await flood
            while len(windows) < messages:
                await app.notifier.flush()
            return windows
    finally:
        await registry.stop_all(servers)


def report(windows: list[float]) -> str:
    ordered = sorted(windows)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return (
        f"{len(windows)} rows: median {statistics.median(ordered) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )


async def main(messages: int, count: int, postgres: str | None) -> None:
    logging.basicConfig(level=logging.ERROR)  # the storm's callbacks name unknown payments
    if postgres:
        schema = f"bench_{secrets.token_hex(4)}"
        server = await asyncpg.connect(postgres)
        await server.execute(f"CREATE SCHEMA {schema}")
        try:
            joiner = "&" if "?" in postgres else "?"
            url = f"{postgres}{joiner}search_path={schema}"
            print("postgres:", report(await measure(url, messages, count)))
        finally:
            await server.execute(f"DROP SCHEMA {schema} CASCADE")
            await server.close()
        return
    with tempfile.TemporaryDirectory() as tmp:
        print("sqlite:", report(await measure(f"sqlite:///{tmp}/window.db", messages, count)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--storm", type=int, default=3000)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL (a fresh schema)")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.storm, args.postgres))
