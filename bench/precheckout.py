"""Telegram Stars: the time the bot takes to answer `pre_checkout_query` under concurrent
queries. Telegram gives up after 10 seconds, and a payment whose query was not answered in
time never happens, so this path must stay one storage read however busy the bot is.

The bot runs for real, as `python -m bot run` in a process of its own, against the Telegram
emulator in this one (SQLite file, polling or webhook mode); the invoices are placed before it
starts, by the checkout core.
Many customers press Pay at once; the emulator measures each query from the moment it queued
the update to the bot's answer. Baseline in the same run: as many queries with a forged payload,
which the bot refuses before any order is read (the update's path and the locale read, nothing
of the order). Each round pays fresh invoices.

Run: `python -m bench.precheckout [--queries 100] [--rounds 3] [--webhook]`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench.reliability.harness import Bot, Shop
from bot.app import BotApp
from bot.core import CartLine
from bot.demo import sandbox_settings
from money import Money
from sandbox import registry
from sandbox.botuser import BotUser

FIRST_USER = 50_000


async def invoices(app: Any, users: range, *, forged: bool) -> None:
    """An unpaid Stars invoice in each user's chat: a real order's, or one whose payload is
    not signed by us."""
    line = CartLine("club", "Coffee club", 1, Money(500, "XTR"))
    for user_id in users:
        if forged:
            await app.bot.send_invoice(
                user_id,
                "Order",
                "Coffee club",
                f"s1.{user_id}.forged",
                "XTR",
                [{"label": "Coffee club", "amount": 500}],
            )
        else:
            await app.checkout.place_order(
                user_id=user_id, chat_id=user_id, lines=[line], provider_name="stars"
            )


async def storm(telegram_url: str, http: aiohttp.ClientSession, users: range) -> list[float]:
    """Every user presses Pay at once; the answer times in milliseconds."""
    payers = [BotUser(telegram_url, u, session=http) for u in users]
    results = await asyncio.gather(*(p.pay_invoice(drop_update=True) for p in payers))
    missing = [r for r in results if r.get("answered_in") is None]
    if missing:
        raise SystemExit(f"{len(missing)} queries were not answered within Telegram's window")
    return [1000 * r["answered_in"] for r in results]


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median": statistics.median(ordered),
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "p99": ordered[int(0.99 * (len(ordered) - 1))],
        "max": ordered[-1],
    }


async def measure(queries: int, rounds: int, webhook: bool) -> list[dict[str, dict[str, float]]]:
    servers = await registry.start_all(["telegram"])
    telegram = servers["telegram"]
    out = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            catalog = Path(tmp) / "catalog.toml"  # Stars only: the one provider running here
            catalog.write_text('[[products]]\nid = "club"\nname = "Coffee club"\nstars = 500\n')
            url = f"sqlite:///{tmp}/bench.db"
            settings = sandbox_settings(
                telegram, catalog_path=catalog, database_url=url, sweep_every=3600
            )
            users = []
            async with BotApp(settings, background=False) as app:  # places, then stops
                for n in range(rounds):
                    base = FIRST_USER + n * 2 * queries
                    real, forged = (
                        range(base, base + queries),
                        range(base + queries, base + 2 * queries),
                    )
                    await invoices(app, real, forged=False)
                    await invoices(app, forged, forged=True)
                    users.append((real, forged))
            bot = Bot(Shop(servers, url, Path(tmp)), CATALOG_PATH=str(catalog), SWEEP_EVERY="3600")
            if webhook:
                bot.env |= {"WEBHOOK_URL": bot.url, "WEBHOOK_SECRET": "bench-secret"}
            async with aiohttp.ClientSession() as http:
                await bot.start(http)
                try:
                    for real, forged in users:
                        baseline = summary(await storm(telegram.url, http, forged))
                        ours = summary(await storm(telegram.url, http, real))
                        out.append({"baseline": baseline, "ours": ours})
                finally:
                    await bot.stop()
    finally:
        await registry.stop_all(servers)
    return out


def report(runs: list[dict[str, dict[str, float]]], queries: int, mode: str) -> str:
    rows = [
        f"{queries} concurrent pre-checkout queries, {mode}, {len(runs)} rounds (ms):",
        "| round | forged (baseline) median / p95 / p99 / max "
        "| real orders median / p95 / p99 / max | ratio of medians | ratio of p99 |",
        "|---|---|---|---|---|",
    ]
    for n, run in enumerate(runs, 1):
        b, o = run["baseline"], run["ours"]
        rows.append(
            f"| {n} | {b['median']:.1f} / {b['p95']:.1f} / {b['p99']:.1f} / {b['max']:.1f} "
            f"| {o['median']:.1f} / {o['p95']:.1f} / {o['p99']:.1f} / {o['max']:.1f} "
            f"| {o['median'] / b['median']:.2f}x | {o['p99'] / b['p99']:.2f}x |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--webhook", action="store_true", help="webhook mode instead of polling")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    runs = asyncio.run(measure(args.queries, args.rounds, args.webhook))
    print(report(runs, args.queries, "webhook" if args.webhook else "polling"))


if __name__ == "__main__":
    main()
