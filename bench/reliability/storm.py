"""The storm: N orders across all six providers, 70% paid, then 10 x N inbound requests from 50
concurrent senders (50% genuine deliveries, 30% duplicates sent beside their original, 10%
forged, 10% garbage) at `python -m bot run`; with --kill the bot is SIGKILLed half-way and
restarted on the same database; with --replicas 3 three webhook-mode processes on one
PostgreSQL and Redis share the requests and the chat, and one is killed half-way.

    python -m bench.reliability.storm [--orders 2000] [--database sqlite|postgres] [--kill]
                                      [--replicas 3]

Holds when every paid order is paid with one transition and one customer and one merchant
message, no unpaid order is paid, no request got a 5xx, every stored event is processed and
nothing is left in created, refund_pending or the outbox. See storm.md for the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp

from bench.reliability.harness import (
    REDIS_URL,
    Bot,
    Count,
    Placed,
    Shop,
    count,
    emulators,
    flush_redis,
    pay,
    place,
    postgres_schema,
)
from sandbox.telegram import TelegramServer

SENDERS = 50
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
WEBHOOK_SECRET = "storm-webhook-secret"
PATHLESS = ("payture", "ktwidget", "pocket", "redoya")  # returns to /return/{provider}/{token}


@dataclass
class Shot:
    """One inbound request: HTTP to the bot (`path` on whichever replica), or a chat action
    through the Telegram emulator (`chat`: its control API path and body)."""

    kind: str  # genuine, duplicate, forged, garbage
    method: str = "GET"
    path: str = ""
    body: bytes = b""
    ctype: str = "application/octet-stream"
    chat: tuple[str, dict] | None = None
    stars: Placed | None = None  # a Stars payment: pay the invoice (genuine) or deliver again


def _path(url: str) -> str:
    """The path and query of an absolute URL: sent to whichever replica takes it."""
    return "/" + url.split("://", 1)[-1].partition("/")[2]


def genuine(shop: Shop, order: Placed) -> list[Shot]:
    """What reaches us about an order when nobody lies: the provider's notification and the
    customer's return for a paid one, the return of a customer who did not pay."""
    s, p, shots = shop.servers, order.provider, []
    if p in ("halkbank", "tfeb"):
        press = {"message_id": order.message_id, "data": order.check_data}
        return [Shot("genuine", chat=(f"/sandbox/users/{order.user_id}/press", press))]
    if p == "stars":
        return [Shot("genuine", stars=order)] if order.paid else []
    if order.paid:
        if p == "payture":
            paying = s["payture"].orders[order.payment_id]
            body = (
                f"Notification=EnginePaySuccess&OrderId={paying.order_id}&Success=True"
                f"&Amount={paying.amount}&ErrCode=NONE&MerchantContract={s['payture'].key}"
            ).encode()
            shots.append(
                Shot(
                    "genuine",
                    "POST",
                    "/callbacks/payture",
                    body,
                    "application/x-www-form-urlencoded",
                )
            )
        elif p == "ktwidget":
            body = json.dumps(
                s["ktwidget"].callback_body(s["ktwidget"].transactions[order.payment_id])
            )
            path = f"/callbacks/ktwidget?o={order.id}&k={order.callback_key}"
            shots.append(Shot("genuine", "POST", path, body.encode(), "application/json"))
        elif p == "pocket":
            body = json.dumps(s["pocket"].webhook_body(s["pocket"].invoices[int(order.payment_id)]))
            path = f"/callbacks/pocket?k={shop.pocket_key}"
            shots.append(Shot("genuine", "POST", path, body.encode(), "application/json"))
    if order.redirect.startswith("http") and "/return/" in order.redirect:
        shots.append(Shot("genuine", path=_path(order.redirect)))
    else:
        shots.append(Shot("genuine", path=f"/return/{p}/{order.token}"))
    return shots


def forged(shop: Shop, order: Placed, rnd: random.Random) -> Shot:
    """A success claim about an unpaid order: made up, for another amount, or with a wrong key."""
    p, wrong = order.provider, "0" * 32
    if p == "payture":
        body = (
            f"Notification=EnginePaySuccess&OrderId={order.payment_id}&Success=True"
            "&Amount=1&ErrCode=NONE"
        )
        return Shot(
            "forged",
            "POST",
            "/callbacks/payture",
            body.encode(),
            "application/x-www-form-urlencoded",
        )
    if p == "ktwidget":
        transaction = shop.servers["ktwidget"].transactions[order.payment_id]
        body = shop.servers["ktwidget"].callback_body(transaction)
        body["status"]["status"] = "completed"
        key = order.callback_key if rnd.random() < 0.5 else wrong
        if key == order.callback_key:
            body["amount"] = float(body["amount"]) - 1
        path = f"/callbacks/ktwidget?o={order.id}&k={key}"
        return Shot("forged", "POST", path, json.dumps(body).encode(), "application/json")
    if p == "pocket":
        body = {
            "id": 1,
            "amount": 1,
            "info": "x",
            "invoiceState": "paid",
            "invoiceId": order.payment_id,
        }
        key = shop.pocket_key if rnd.random() < 0.5 else wrong
        return Shot(
            "forged",
            "POST",
            f"/callbacks/pocket?k={key}",
            json.dumps(body).encode(),
            "application/json",
        )
    if p == "redoya":
        return Shot(
            "forged", path=f"/return/redoya/{order.token}?result=success&order_id=AAAAAAAAAAAAAAAA"
        )
    if p == "stars":
        return Shot("forged", stars=order)  # a successful_payment for another amount
    press = {"message_id": order.message_id, "data": order.check_data}
    return Shot("forged", chat=(f"/sandbox/users/{order.user_id}/press", press))


def garbage(rnd: random.Random) -> Shot:
    junk = rnd.randbytes(rnd.choice((0, 7, 300, 5000)))
    provider = rnd.choice(("payture", "ktwidget", "pocket", "redoya", "halkbank", "stars", "nope"))
    choice = rnd.randrange(5)
    if choice == 0:
        return Shot(
            "garbage", "POST", f"/callbacks/{provider}?o={rnd.randrange(10**9)}&k=%ff", junk
        )
    if choice == 1:
        return Shot(
            "garbage", "POST", f"/callbacks/{provider}", b'{"invoiceId": [', "application/json"
        )
    if choice == 2:
        return Shot(
            "garbage",
            path=f"/return/{provider}/{secrets.token_urlsafe(rnd.randrange(1, 40))}?x=%00",
        )
    if choice == 3:
        return Shot(
            "garbage", "POST", f"/pay/pocket/{secrets.token_hex(8)}", junk, "application/json"
        )
    return Shot("garbage", "PUT", f"/callbacks/{provider}", junk, "text/plain")


def shots_for(shop: Shop, total: int, seed: int = 25) -> list[Shot]:
    """`total` requests: 50% genuine (every first delivery, then providers' retries), 30%
    duplicates (each right beside its original, so that the two race), 10% forged, 10%
    garbage."""
    rnd = random.Random(seed)
    first = [shot for order in shop.orders for shot in genuine(shop, order)]
    unpaid = [o for o in shop.orders if not o.paid]
    rnd.shuffle(first)
    retries = [rnd.choice(first) for _ in range(max(total // 2 - len(first), 0))]
    stream: list[Shot] = []
    for original in first + retries:
        stream.append(original)
        if rnd.random() < 0.6:  # 0.3 of the total for 0.5 genuine
            stream.append(replace(original, kind="duplicate"))
    for _ in range(total // 10):
        stream.insert(rnd.randrange(len(stream) + 1), garbage(rnd))
        if unpaid:
            stream.insert(rnd.randrange(len(stream) + 1), forged(shop, rnd.choice(unpaid), rnd))
    return stream


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    five_xx: list[str] = field(default_factory=list)
    unreachable: int = 0  # attempts that found no bot listening (the kill), tried again


async def send_all(
    shop: Shop,
    stream: list[Shot],
    bots: list[Bot],
    http: aiohttp.ClientSession,
    halfway: asyncio.Event,
) -> Tally:
    tally, queue, turn = Tally(), asyncio.Queue(), iter(range(10**9))
    for shot in stream:
        queue.put_nowait(shot)
    telegram, done = shop.telegram, 0

    async def fire(shot: Shot) -> None:
        nonlocal done
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if shot.stars is not None:
                    if await stars(shop, shot, http):
                        break
                elif shot.chat is not None:
                    async with http.post(telegram.url + shot.chat[0], json=shot.chat[1]) as answer:
                        await answer.read()
                        break
                else:
                    bot = bots[next(turn) % len(bots)]
                    headers = {"Content-Type": shot.ctype}
                    async with http.request(
                        shot.method,
                        bot.url + shot.path,
                        data=shot.body,
                        headers=headers,
                        allow_redirects=False,
                    ) as answer:
                        await answer.read()
                        tally.statuses[answer.status] += 1
                        if answer.status >= 500:
                            tally.five_xx.append(f"{answer.status} {shot.method} {shot.path}")
                        break
            except (aiohttp.ClientConnectionError, TimeoutError):
                tally.unreachable += 1
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"no bot took {shot.kind} {shot.path or shot.chat} for 120 s")
        tally.kinds[shot.kind] += 1
        done += 1
        if done == len(stream) // 2:
            halfway.set()

    async def sender() -> None:
        while not queue.empty():
            await fire(queue.get_nowait())

    await asyncio.gather(*(sender() for _ in range(SENDERS)))
    return tally


async def stars(shop: Shop, shot: Shot, http: aiohttp.ClientSession) -> bool:
    """The Stars payment of a paid order (the first time), its delivery again (a duplicate),
    or a successful_payment for another amount (forged): True when Telegram took it."""
    telegram, order = shop.telegram, shot.stars
    assert order is not None
    async with PAYING.setdefault(order.id, asyncio.Lock()):  # one customer pays one invoice once
        return await _stars(telegram, order, shot, http)


PAYING: dict[int, asyncio.Lock] = {}


async def _stars(
    telegram: TelegramServer, order: Placed, shot: Shot, http: aiohttp.ClientSession
) -> bool:
    charge = next((c for c in telegram.charges.values() if c["user_id"] == order.user_id), None)
    if shot.kind == "forged":
        invoice = next(i for (chat, _), i in telegram.invoices.items() if chat == order.user_id)
        paid = {
            "currency": "XTR",
            "total_amount": int(invoice["total_amount"]) - 1,
            "invoice_payload": invoice["payload"],
            "telegram_payment_charge_id": "stxforged" + secrets.token_hex(8),
            "provider_payment_charge_id": "",
        }
        telegram.push(
            "message", telegram._user_message(order.user_id, order.user_id, successful_payment=paid)
        )
        return True
    if charge is not None:
        telegram.push("message", charge["message"])  # Telegram delivering it once more
        return True
    if shot.kind == "duplicate":
        return False  # its payment is not through yet: comes round again
    url = f"{telegram.url}/sandbox/users/{order.user_id}/pay_invoice"
    async with http.post(url, json={"timeout": 5}) as answer:
        return bool((await answer.json()).get("ok"))


@dataclass
class Result:
    orders: int
    database: str
    kill: bool
    replicas: int
    requests: int = 0
    seconds: float = 0.0
    tally: Tally = field(default_factory=Tally)
    count: Count = field(default_factory=Count)
    stored_before_kill: int = 0
    tracebacks: int = 0
    refused_answers: int = 0  # pre-checkout answers Telegram refused (past its deadline)
    lost: int = 0
    doubled: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # seconds each step took
    webhook_taken: list[int] = field(default_factory=list)  # updates each replica took

    def holds(self) -> bool:
        c = self.count
        return (
            c.paid_once == c.paid_orders
            and c.forged_paid == 0
            and not self.tally.five_xx
            and self.lost == 0
            and self.doubled <= (2 if self.kill or self.replicas > 1 else 0)
            and c.unprocessed_events == 0
            and c.stuck == 0
            and c.unsent_outbox == 0
        )


async def settled(shop: Shop, within: float) -> Count:
    """Until every paid order is paid and told, and nothing waits in the inbox or the outbox."""
    deadline = time.monotonic() + within
    while True:
        c = await count(shop)
        done = c.paid_once == c.paid_orders and c.lost(shop) == 0
        if (done and c.unprocessed_events == 0 and c.unsent_outbox == 0 and c.stuck == 0) or (
            time.monotonic() > deadline
        ):
            return c
        await asyncio.sleep(0.25)


async def run(
    orders: int,
    database: str = "sqlite",
    kill: bool = False,
    replicas: int = 1,
    workdir: Path | None = None,
) -> Result:
    if replicas > 1:
        database = "postgres"  # replicas share one PostgreSQL
    result = Result(orders, database, kill, replicas)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        async with contextlib.AsyncExitStack() as astack:
            if database == "postgres" or replicas > 1:
                url = await astack.enter_async_context(postgres_schema(POSTGRES))
            else:
                url = f"sqlite:///{workdir}/bot.db"
            servers = await astack.enter_async_context(emulators())
            http = await astack.enter_async_context(aiohttp.ClientSession())
            shop = Shop(servers, url, workdir)
            clock = time.monotonic()
            await place(shop, orders, http)
            await pay(shop, http)
            result.phases["place+pay"] = time.monotonic() - clock
            clock = time.monotonic()
            bots = every = await start_bots(shop, http, kill, replicas)
            result.phases["start"] = time.monotonic() - clock
            astack.push_async_callback(lambda: asyncio.gather(*(b.stop() for b in every)))
            stream = shots_for(shop, 10 * orders)
            result.requests = len(stream)
            halfway = asyncio.Event()
            began = time.monotonic()
            storm = asyncio.create_task(send_all(shop, stream, bots, http, halfway))
            if kill or replicas > 1:
                await asyncio.wait(
                    [storm, asyncio.create_task(halfway.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                await bots[0].kill()
                result.stored_before_kill = (await count(shop)).events
                if replicas == 1:
                    await bots[0].start(http)
                else:
                    shop.telegram.webhook_spread = [b.url for b in bots]  # the dead one too
                    bots = bots[1:]
            result.tally = await storm
            result.phases["storm"] = time.monotonic() - began
            result.count = await settled(shop, within=90 + orders / 10)  # a loaded machine
            result.seconds = time.monotonic() - began
            result.lost, result.doubled = result.count.lost(shop), result.count.doubled(shop)
            result.tracebacks = sum(b.tracebacks() for b in every)
            result.refused_answers = sum(b.refused_answers() for b in every)
            result.webhook_taken = sorted(shop.telegram.webhook_taken.values())
    return result


async def start_bots(
    shop: Shop, http: aiohttp.ClientSession, kill: bool, replicas: int
) -> list[Bot]:
    sweep = {
        "SWEEP_EVERY": "1",
        "FIRST_CHECK_AFTER": "1",
        "OUTBOX_CLAIM_SECONDS": "2",
        "NOTIFY_GROUP_GAP": "0.02",
        "NOTIFY_CHAT_GAP": "0.05",
    }  # the sandbox takes what Telegram would not
    if replicas == 1:
        bots = [Bot(shop, **sweep)]
    else:
        await flush_redis()
        extra = sweep | {"REDIS_URL": REDIS_URL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
        bots = [Bot(shop, **extra) for _ in range(replicas)]
        for bot in bots:
            bot.env["WEBHOOK_URL"] = bot.url
        shop.telegram.webhook_spread = [b.url for b in bots]
    await asyncio.gather(*(bot.start(http) for bot in bots))
    return bots


HEADER = (
    "| run | orders | requests | 5xx | paid once | forged paid | lost | doubled | "
    "events unprocessed | stuck | outbox unsent | tracebacks | s |"
)


def row(r: Result) -> str:
    what = (
        f"{r.database}"
        + (" kill" if r.kill else "")
        + (f" x{r.replicas}" if r.replicas > 1 else "")
    )
    c = r.count
    return (
        f"| {what} | {r.orders} | {r.requests} | {len(r.tally.five_xx)} | "
        f"{c.paid_once}/{c.paid_orders} | {c.forged_paid} | {r.lost} | {r.doubled} | "
        f"{c.unprocessed_events}/{c.events} | {c.stuck} | {c.unsent_outbox} | {r.tracebacks} | "
        f"{r.seconds:.0f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--kill", action="store_true")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="keep the bot logs and database here")
    args = parser.parse_args()
    result = asyncio.run(run(args.orders, args.database, args.kill, args.replicas, args.workdir))
    print(HEADER)
    print("|---" * 13 + "|")
    print(row(result))
    print(
        f"requests by kind {dict(result.tally.kinds)}; statuses {dict(result.tally.statuses)}; "
        f"unreachable attempts {result.tally.unreachable}; states {dict(result.count.states)}; "
        f"events stored before the kill {result.stored_before_kill}; "
        f"seconds { ({k: round(v, 1) for k, v in result.phases.items()}) }; "
        f"webhook updates taken per replica {result.webhook_taken}"
    )
    for line in result.tally.five_xx[:10]:
        print("5xx:", line)
    print("HOLDS" if result.holds() else "FAILS")
    return 0 if result.holds() else 1


if __name__ == "__main__":
    sys.exit(main())
