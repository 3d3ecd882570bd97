"""Callback to the customer's message: the time from a provider's callback leaving the provider
to Telegram receiving the bot's "payment received" message to that customer, at a steady rate
of callbacks for distinct orders awaiting payment.

Payture orders are placed through the checkout core (bench/reliability/harness.py) and paid on
the Payture emulator while no bot runs (the emulator sends no notification of its own here);
then the real `python -m bot run` takes the callbacks, sent open-loop at the given rate (each
on its schedule, whether the ones before were answered or not). The emulators run in this
process, so the callback's send time and the Telegram emulator's record of the bot's
sendMessage (time.monotonic) are read on one clock.

Telegram takes 30 messages a second from a bot in all, and every paid order here queues two:
the customer's and the merchant group's (which Telegram takes 20 a minute, so those wait).
At 50 callbacks a second the customers alone are over 30 a second, so that case runs with
NOTIFY_PER_SECOND=60 (a bot with paid broadcasts may send up to 1000 a second); 25 a second
runs with the default 30; and 50 a second with the default shows what the limit does.

Beside each: the callback's own answer time (intake), and a baseline measured in the same run
on the same bot: a customer's /start typed in the chat (from the emulator queueing the update
to the bot's reply), the bot's shortest path to a message, at the same rate.

Run: `python -m bench.latency [--seconds 10] [--rounds 3] [--cases 123]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.reliability.harness import Bot, Placed, Shop, emulators, place
from bench.reliability.storm import genuine
from sandbox.telegram import TelegramServer

FIRST_CHAT = 600_000  # the /start baseline's customers, apart from the orders' ones


Summary = dict[str, float]


@dataclass
class Result:
    round: int
    case: str
    message: Summary  # callback sent -> the customer's message at Telegram
    missing: int  # customers whose message never came
    answer: Summary  # callback sent -> its answer
    baseline: Summary  # /start queued -> the reply at Telegram

    def row(self) -> str:
        m, b = self.message, self.baseline
        return (
            f"| {self.round} | {self.case} | {m['n']:.0f} ({self.missing} missing) | {cell(m)} "
            f"| {cell(self.answer)} | {cell(b)} | {m['p99'] / b['p99']:.2f}x |"
        )


def cell(s: Summary) -> str:
    return f"{s['median']:.0f} / {s['p95']:.0f} / {s['p99']:.0f} / {s['max']:.0f}"


@dataclass(frozen=True)
class Case:
    name: str
    rate: int  # callbacks a second
    env: dict[str, str]


CASES = (
    Case("50/s, NOTIFY_PER_SECOND=60", 50, {"NOTIFY_PER_SECOND": "60"}),
    Case("25/s, default (30/s)", 25, {}),
    Case("50/s, default (30/s)", 50, {}),
)


def summary(times: list[float]) -> Summary:
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "p99": ordered[int(0.99 * (len(ordered) - 1))],
        "max": ordered[-1],
    }


def first_message_at(telegram: TelegramServer, since: int) -> dict[int, float]:
    """Each chat's first accepted sendMessage in the timeline from entry `since` on."""
    seen: dict[int, float] = {}
    for t, method, chat, code, _ in telegram.timeline[since:]:
        if method == "sendmessage" and not code and chat is not None:
            seen.setdefault(int(chat), t)
    return seen


async def paced(rate: int, jobs: list[Callable[[], Awaitable[None]]]) -> None:
    """Each job started on its own schedule, `rate` a second, open-loop."""
    start = time.monotonic()

    async def at(n: int, job: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        await job()

    await asyncio.gather(*(at(n, job) for n, job in enumerate(jobs)))


async def wait_for(telegram: TelegramServer, since: int, chats: set[int], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if chats <= first_message_at(telegram, since).keys():
            return
        await asyncio.sleep(0.2)


async def callbacks(
    shop: Shop, bot: Bot, http: aiohttp.ClientSession, orders: list[Placed], rate: int
) -> tuple[Summary, int, Summary]:
    telegram = shop.telegram
    since = len(telegram.timeline)
    sent: dict[int, float] = {}
    answered: list[float] = []

    def job(order: Placed) -> Callable[[], Awaitable[None]]:
        shot = genuine(shop, order)[0]  # the Payture notification

        async def post() -> None:
            headers = {"Content-Type": shot.ctype}
            sent[order.user_id] = time.monotonic()
            async with http.post(bot.url + shot.path, data=shot.body, headers=headers) as answer:
                await answer.read()
                assert answer.status == 200, answer.status
            answered.append(time.monotonic() - sent[order.user_id])

        return post

    await paced(rate, [job(o) for o in orders])
    await wait_for(telegram, since, set(sent), within=120)
    got = first_message_at(telegram, since)
    latency = [got[chat] - t for chat, t in sent.items() if chat in got]
    message = summary([1000 * x for x in latency])
    return message, len(sent) - len(latency), summary([1000 * x for x in answered])


async def chat_baseline(
    shop: Shop, http: aiohttp.ClientSession, first: int, count: int, rate: int
) -> Summary:
    """/start from `count` new customers at `rate`: update queued to the bot's reply."""
    telegram = shop.telegram
    since = len(telegram.timeline)
    sent: dict[int, float] = {}

    def job(chat: int) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            sent[chat] = time.monotonic()
            url = f"{telegram.url}/sandbox/users/{chat}/send"
            async with http.post(url, json={"text": "/start"}) as answer:
                assert answer.status == 200, answer.status

        return send

    await paced(rate, [job(first + n) for n in range(count)])
    await wait_for(telegram, since, set(sent), within=60)
    got = first_message_at(telegram, since)
    return summary([1000 * (got[c] - t) for c, t in sent.items() if c in got])


async def measure(seconds: float, rounds: int, cases: tuple[Case, ...] = CASES) -> list[Result]:
    per_round = [int(case.rate * seconds) for case in cases]
    out: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with emulators() as servers, aiohttp.ClientSession() as http:
            shop = Shop(servers, f"sqlite:///{tmp}/bench.db", Path(tmp))
            await place(shop, sum(per_round) * rounds, http, slots=("payture",))
            for order in shop.orders:  # paid on the provider's page, no bot listening
                body = {"url": order.pay_url, "outcome": "paid"}
                async with http.post(f"{servers['payture'].url}/sandbox/pay", json=body) as a:
                    assert a.status == 200, await a.text()
                order.paid = True
            orders = iter(shop.orders)
            chats = iter(range(FIRST_CHAT, FIRST_CHAT + 10**6, 1000))
            for n in range(rounds):
                for case, count in zip(cases, per_round, strict=True):
                    batch = [next(orders) for _ in range(count)]
                    bot = Bot(shop, **case.env)
                    await bot.start(http)
                    try:
                        await asyncio.sleep(1)  # start-up's own messages out of the way
                        message, missing, answer = await callbacks(
                            shop, bot, http, batch, case.rate
                        )
                        baseline = await chat_baseline(shop, http, next(chats), count, case.rate)
                    finally:
                        await bot.stop()
                    out.append(Result(n + 1, case.name, message, missing, answer, baseline))
                    print(out[-1].row(), flush=True)
    return out


HEADER = (
    "| round | rate, overall limit | messages | callback -> customer's message, ms: median / "
    "p95 / p99 / max | callback answer, ms | baseline /start -> reply, ms | p99 / baseline p99 |"
    "\n|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="of callbacks per case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="123", help="which of the three cases, e.g. 12")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(HEADER, flush=True)
    cases = tuple(CASES[int(n) - 1] for n in args.cases)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(measure(args.seconds, args.rounds, cases))


if __name__ == "__main__":
    main()
