"""The outbox sender's throughput against Telegram's flood limits: N queued "paid" messages to
N customers (and, with --groups, merchant messages to a few group chats besides), sent by the
real notifier (`bot.notify`, as `BotApp` builds it from the settings) to a Telegram emulator that
answers 429 beyond Telegram's limits (1 a second a chat, 20 a minute a group, 30 a second in
all), as Telegram does.

The figure is messages a second as the emulator took them: over the whole run (from the start
of the sender to the last message) and in steady state (the middle 80% of the messages), against
the 30 a second Telegram allows; and the number of 429 answers, which must be 0.

Run: `python -m bench.notifier [--messages 10000] [--groups 0] [--rounds 1] [--postgres URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bot.app import BotApp, Parts
from bot.config import Settings
from bot.demo import sandbox_settings
from bot.notify import Notifier
from money import Money
from sandbox import registry
from sandbox.telegram import TelegramServer
from storage.base import NewOrder, NewOutbox, OrderItem

FIRST_CHAT = 1_000_000
FIRST_GROUP = -1_000_100
GROUP_MESSAGES = 30  # to each group: 90 s of its 20 a minute


@dataclass
class Run:
    messages: int
    whole: float  # messages a second from the sender's start to the last message
    steady: float  # ... over the middle 80% of them
    refused: int  # 429 answers
    doubled: int  # chats that got a message twice
    queue_seconds: float
    group_messages: int
    group_busiest_minute: int  # the most messages to one group in any 60 s


async def queue(app: Parts, round_no: int, messages: int, groups: int) -> None:
    """An order and its customer's "paid" row per chat; the first orders' merchant rows go to
    the groups, GROUP_MESSAGES each."""
    gate = asyncio.Semaphore(8)
    base = FIRST_CHAT + round_no * messages

    async def one(n: int) -> None:
        chat = base + n
        async with gate:
            order = await app.storage.create_order(
                NewOrder(
                    user_id=chat,
                    chat_id=chat,
                    provider="stars",
                    total=Money(500, "XTR"),
                    token=f"bench-notifier-{chat}",
                    items=[OrderItem("club", "Coffee club", 1, 500)],
                )
            )
            await app.storage.enqueue(order.id, NewOutbox("paid", chat))
            if n < groups * GROUP_MESSAGES:
                await app.storage.enqueue(
                    order.id, NewOutbox("merchant_paid", FIRST_GROUP - n % groups)
                )

    await asyncio.gather(*(one(n) for n in range(messages)))


async def send_all(
    app: Parts, settings: Settings, telegram: TelegramServer, expected: int
) -> float:
    """Run a sender as BotApp builds it until the emulator took `expected` messages; its
    start time."""
    notifier = Notifier(
        app.bot,
        app.storage,
        app.notifier.render,
        per_chat_gap=settings.notify_chat_gap,
        per_group_gap=settings.notify_group_gap,
        per_second=settings.notify_per_second,
    )
    started = time.monotonic()
    sender = asyncio.create_task(notifier.run())
    try:
        async with asyncio.timeout(expected / 20 + 120):
            while accepted(telegram) < expected:  # noqa: ASYNC110 (the emulator has no event)
                await asyncio.sleep(0.2)
    finally:
        notifier.stop()
        await sender
    return started


def accepted(telegram: TelegramServer) -> int:
    return sum(
        1 for _, method, _, code, _ in telegram.timeline if method == "sendmessage" and not code
    )


def measure_run(telegram: TelegramServer, started: float, queued: float) -> Run:
    """The customers' rate (the groups' few messages take their 3 s gaps after them)."""
    sent = sorted(
        (t, int(chat))
        for t, method, chat, code, _ in telegram.timeline
        if method == "sendmessage" and not code
    )
    times = [t for t, chat in sent if chat > 0]
    lo, hi = len(times) // 10, len(times) * 9 // 10
    per_chat = Counter(chat for _, chat in sent if chat > 0)
    groups: dict[int, list[float]] = {}
    for t, chat in sent:
        if chat < 0:
            groups.setdefault(chat, []).append(t)
    return Run(
        messages=len(times),
        whole=len(times) / (times[-1] - started),
        steady=(hi - lo) / (times[hi] - times[lo]),
        refused=sum(1 for _, _, _, code, _ in telegram.timeline if code == 429),
        doubled=sum(1 for n in per_chat.values() if n > 1),
        queue_seconds=queued,
        group_messages=sum(len(ts) for ts in groups.values()),
        group_busiest_minute=max(
            (sum(1 for u in ts if t <= u < t + 60) for ts in groups.values() for t in ts),
            default=0,
        ),
    )


@contextlib.asynccontextmanager
async def database(postgres: str | None, tmp: str) -> AsyncIterator[str]:
    if not postgres:
        yield f"sqlite:///{tmp}/bench.db"
        return
    schema = f"bench_notifier_{int(time.time())}"
    server = await asyncpg.connect(postgres)
    await server.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{postgres}?search_path={schema}"
    finally:
        await server.execute(f"DROP SCHEMA {schema} CASCADE")
        await server.close()


async def measure(messages: int, groups: int, rounds: int, postgres: str | None) -> list[Run]:
    servers = await registry.start_all(["telegram"])
    telegram = servers["telegram"]
    assert isinstance(telegram, TelegramServer)
    runs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            catalog = Path(tmp) / "catalog.toml"  # Stars only: the one provider running here
            catalog.write_text('[[products]]\nid = "club"\nname = "Coffee club"\nstars = 500\n')
            async with database(postgres, tmp) as url:
                settings = sandbox_settings(
                    telegram, catalog_path=catalog, database_url=url, sweep_every=3600
                )
                async with BotApp(settings, background=False) as app:
                    for n in range(rounds):
                        queued = time.monotonic()
                        await queue(app, n, messages, groups)
                        queued = time.monotonic() - queued
                        telegram.timeline.clear()
                        telegram.enforce_flood_limits()
                        expected = messages + groups * GROUP_MESSAGES
                        started = await send_all(app, settings, telegram, expected)
                        runs.append(measure_run(telegram, started, queued))
    finally:
        await registry.stop_all(servers)
    return runs


def report(runs: list[Run], messages: int, groups: int, database: str) -> str:
    mixed = f" + {groups} groups x {GROUP_MESSAGES}" if groups else ""
    rows = [
        f"{messages} queued messages to {messages} chats{mixed}, {database}, flood limits on:",
        "| round | customer messages | whole run msg/s | steady msg/s | steady / 30 | 429s "
        "| chats sent twice | group messages (most to one group in 60 s) | queueing (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(runs, 1):
        rows.append(
            f"| {n} | {r.messages} | {r.whole:.2f} | {r.steady:.2f} | {r.steady / 30:.3f} "
            f"| {r.refused} | {r.doubled} | {r.group_messages} ({r.group_busiest_minute}) "
            f"| {r.queue_seconds:.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=0, help="group chats mixed in")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--postgres", help="a PostgreSQL server URL instead of SQLite")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    runs = asyncio.run(measure(args.messages, args.groups, args.rounds, args.postgres))
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(report(runs, args.messages, args.groups, database))


if __name__ == "__main__":
    main()
