"""Faults measured: provider outages, Telegram outages and 429 storms, database faults (those
in faults_db.py).

Each scenario runs the real bot (BotApp) against the sandbox emulators and returns a Row; the
suite (tests/test_reliability_faults.py) runs the small sizes on a compressed clock (the
sweep is driven with a simulated `now`), `--full` the real sizes in real time.

Run: `python -m bench.reliability.faults [--full]` (prints the table).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from bot.app import BotApp, Parts
from bot.core import CartLine, CheckSchedule, Order, OrderState
from bot.demo import sandbox_settings
from money import Money
from sandbox import registry
from sandbox.base import FakeServer
from sandbox.ktwidget import KtwidgetServer
from sandbox.pocket import PocketServer
from sandbox.telegram import TelegramServer

# provider -> a product it sells (demo catalog prices) for orders placed in the core
PRODUCTS = {
    "redoya": CartLine("turkish-coffee", "Turkish coffee", 1, Money(15000, "TRY")),
    "payture": CartLine("ivan-chai", "Ivan-chai", 1, Money(45000, "RUB")),
    "halkbank": CartLine("chorek", "Chorek", 1, Money(115, "TMT"), sku="102"),
    "pocket": CartLine("milk-tea", "Mongolian milk tea", 1, Money(1250000, "MNT")),
}
EMULATOR_OF = {"redoya": "redoya", "payture": "payture", "halkbank": "erp", "pocket": "pocket"}
# besides the sweep's checks, what asks the provider once per order during an outage: the
# customer's return, and Payture's callback or Pocket's webhook (each checks the status)
ASKED_PER_ORDER = {"redoya": 1, "payture": 2, "halkbank": 1, "pocket": 2}


@dataclass
class Row:
    """One measurement: what was held, which fault, and what was lost or doubled."""

    scenario: str
    held: str
    fault: str
    lost: int
    doubled: int
    note: str = ""

    def line(self) -> str:
        cells = (self.scenario, self.held, self.fault, self.lost, self.doubled, self.note)
        return "| " + " | ".join(str(c) for c in cells) + " |"


def checks_within(schedule: CheckSchedule, window: timedelta) -> int:
    """How many times the sweep may ask about one order in `window` after its first check is
    due: the first check, then one after each of the schedule's growing gaps."""
    checks, elapsed, attempts = 1, schedule.first, 0
    while elapsed + schedule.after(attempts) <= window + schedule.first:
        elapsed += schedule.after(attempts)
        attempts += 1
        checks += 1
    return checks


async def place(app: Parts, provider: str, user: int) -> Order:
    return await app.checkout.place_order(
        user_id=user, chat_id=user, lines=[PRODUCTS[provider]], provider_name=provider
    )


async def pay(http: aiohttp.ClientSession, emulator: FakeServer, order: Order) -> None:
    """The customer pays on the provider's page (the emulator's /sandbox/pay stays up) and
    comes back to our return page."""
    async with http.post(
        f"{emulator.url}/sandbox/pay", json={"url": order.pay_url, "outcome": "paid"}
    ) as answer:
        assert answer.status == 200, await answer.text()
        redirect = (await answer.json()).get("redirect")
    if redirect:
        async with http.get(redirect) as page:
            await page.read()


async def open_in_pocket(http: aiohttp.ClientSession, pocket: PocketServer, order: Order) -> None:
    """Inside the Pocket app the bridge page posts the customer's token (as pocket.js gives
    it) and we open the invoice: the order gets its invoice id."""
    token = pocket.customer_token(f"customer-{order.user_id}")
    async with http.post(order.pay_url or "", json={"accessToken": token}) as answer:
        assert answer.status == 200, await answer.text()


async def pay_in_pocket(http: aiohttp.ClientSession, pocket: PocketServer, order: Order) -> None:
    """The customer pays the invoice in the app (the emulator posts its webhook to us), then
    presses the page's "I have paid" (our return page)."""
    invoice = {"invoice_id": order.provider_payment_id, "outcome": "paid"}
    async with http.post(f"{pocket.url}/sandbox/pay", json=invoice) as answer:
        assert answer.status == 200, await answer.text()
    await pocket.settle()  # the webhook has reached us (and our check failed)
    async with http.get((order.pay_url or "").replace("/pay/pocket/", "/return/pocket/")) as page:
        await page.read()


def settings(servers: Mapping[str, FakeServer], database_url: str, **more: Any) -> Any:
    values: dict[str, Any] = {"database_url": database_url, "merchant_chat_id": -1000001}
    values.update(more)
    return sandbox_settings(*servers.values(), **values)


async def provider_outage(
    servers: Mapping[str, FakeServer],
    database_url: str,
    *,
    per_provider: int = 2,
    outage: timedelta = timedelta(minutes=10),
    real_time: bool = False,
    timeout: bool = False,
) -> list[Row]:
    """Every status-API emulator answers 503 (or hangs past our HTTP timeout) for `outage`
    while its customers pay; then it is back. Each order must end paid within one check
    interval (schedule.longest) after, and the calls made meanwhile stay within the schedule.

    Pocket's invoices are opened through the bridge page before the outage. Its token
    endpoint is on the emulator, so its requests count as calls: on the compressed clock the
    tokens last no longer than the cache's renewal margin, so every check asks for a token
    first (the worst case); with `real_time` the seed's 10-minute token runs out mid-outage."""
    step = 5.0  # SWEEP_EVERY
    extra = {"sweep_every": 3600, "http_timeout": 0.2} if timeout else {"sweep_every": 3600}
    pocket = servers["pocket"]
    assert isinstance(pocket, PocketServer)
    pocket.expires_in = 600 if real_time else 10  # TokenCache renews 10 s before expiry
    try:
        async with BotApp(settings(servers, database_url, **extra), background=False) as app:
            return await _outage(app, servers, per_provider, outage, real_time, timeout, step)
    finally:
        pocket.expires_in = 600


async def _outage(
    app: Parts,
    servers: Mapping[str, FakeServer],
    per_provider: int,
    outage: timedelta,
    real_time: bool,
    timeout: bool,
    step: float,
) -> list[Row]:
    """The outage itself, on a started bot: orders (Pocket's opened), then down, pay, sweep,
    back, sweep until paid; one Row per provider."""
    schedule = app.checkout.schedule
    emulators = {p: servers[EMULATOR_OF[p]] for p in PRODUCTS}
    pocket = emulators["pocket"]
    assert isinstance(pocket, PocketServer)
    orders: dict[str, list[Order]] = {p: [] for p in PRODUCTS}
    user = 70_000
    async with aiohttp.ClientSession() as http:
        await until(lambda: pocket.fallback_url is not None)  # our webhook URL, set at start
        for provider in PRODUCTS:
            for _ in range(per_provider):
                user += 1
                orders[provider].append(await place(app, provider, user))
        for order in orders["pocket"]:
            await open_in_pocket(http, pocket, order)
        opened = [await app.checkout.order(o.id) for o in orders["pocket"]]
        orders["pocket"] = [o for o in opened if o is not None]  # with their invoice ids
        deadline = time.monotonic() + 30
        while await app.storage.unprocessed_inbound():  # the opened invoices' first checks
            assert time.monotonic() < deadline, "the bridge's checks did not answer"
            await asyncio.sleep(0.02)
        webhooks = len(pocket.webhooks)
        for emulator in emulators.values():
            emulator.down_calls = 0
            emulator.down_paths.clear()
            if timeout:
                emulator.down_delay = 0.4  # past our HTTP timeout
            else:
                emulator.down_status = 503
        start = datetime.now(UTC)
        now = start

        async def all_paid() -> bool:
            found = [await app.checkout.order(o.id) for p in orders.values() for o in p]
            return all(o is not None and o.state is OrderState.PAID for o in found)

        async def sweep_until(end: datetime, *, until_paid: bool = False) -> None:
            nonlocal now
            while now < end and not (until_paid and await all_paid()):
                if real_time:
                    await asyncio.sleep(step)
                    now = datetime.now(UTC)
                else:
                    now += timedelta(seconds=step)
                await app.reconciler.run_once(now=now)

        try:
            for provider, placed in orders.items():
                for order in placed:
                    if provider == "pocket":
                        await pay_in_pocket(http, pocket, order)
                    else:
                        await pay(http, emulators[provider], order)
            await sweep_until(start + outage)
            # nothing may say paid while the provider is down (Pocket's webhook is only a hint)
            early = {
                p: [(await app.checkout.order(o.id)) for o in placed]
                for p, placed in orders.items()
            }
        finally:
            calls = {p: e.down_calls for p, e in emulators.items()}
            tokens = sum(n for path, n in pocket.down_paths.items() if path.endswith("/token"))
            for emulator in emulators.values():
                emulator.down_status, emulator.down_delay = None, 0.0
        back = now
        await sweep_until(back + schedule.longest, until_paid=True)
        recovered = now - back
    hooks = [w.http_status for w in pocket.webhooks[webhooks:]]
    rows = []
    # during an outage a check makes one request at most: a token request that fails ends it
    # before the API call, and a 5xx or a timeout is no 401 (which alone renews and retries)
    bound = checks_within(schedule, outage) * per_provider
    for provider, placed in orders.items():
        states = [(await app.checkout.order(o.id)) for o in placed]
        lost = sum(o is None or o.state is not OrderState.PAID for o in states)
        allowed = bound + per_provider * ASKED_PER_ORDER[provider]
        held = calls[provider] <= allowed
        trusted = sum(o is not None and o.state is OrderState.PAID for o in early[provider])
        more = f", {trusted} paid while it was down" if trusted else ""
        if provider == "pocket":
            more += f", {tokens} of them for a token; webhooks answered {sorted(set(hooks))}"
        rows.append(
            Row(
                f"{provider} outage ({'timeout' if timeout else '503'})",
                f"{per_provider} orders paid during the outage",
                f"{outage} down, {'real' if real_time else 'compressed'} clock",
                lost,
                0,
                f"{calls[provider]} calls (bound {allowed}{'' if held else ' EXCEEDED'}{more});"
                f" all paid {recovered} after it was back",
            )
        )
    return rows


async def ktwidget_outage(
    servers: Mapping[str, FakeServer], database_url: str, *, orders: int = 2, down: float = 1.0
) -> Row:
    """KTWidget has no status API: its outage is our callback endpoint refused (the bot
    stopped) while customers pay; KTWidget's retries (scaled down) deliver once it is back."""
    ktwidget = servers["ktwidget"]
    port = free_port()
    s = settings(servers, database_url, web_port=port, sweep_every=3600)
    async with BotApp(s, background=False) as app:
        placed = [
            await app.checkout.place_order(
                user_id=71_000 + n, chat_id=71_000 + n, lines=[KZT_TEA], provider_name="ktwidget"
            )
            for n in range(orders)
        ]
    async with aiohttp.ClientSession() as http:
        for order in placed:  # our endpoint is refused: KTWidget retries
            async with http.post(
                f"{ktwidget.url}/sandbox/pay", json={"url": order.pay_url, "outcome": "completed"}
            ) as answer:
                assert answer.status == 200, await answer.text()
    await asyncio.sleep(down)
    async with BotApp(s, background=False) as app:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [(await app.checkout.order(o.id)) for o in placed]
            if all(o and o.state is OrderState.PAID for o in states):
                break
            await asyncio.sleep(0.05)
        lost = sum(o is None or o.state is not OrderState.PAID for o in states)
    return Row(
        "ktwidget outage",
        f"{orders} orders paid while our callback URL was refused",
        f"bot down {down:g}s, KTWidget retries x{ktwidget.retry_scale:g}",  # type: ignore[attr-defined]
        lost,
        0,
    )


KZT_TEA = CartLine("kazakh-tea", "Kazakh black tea", 1, Money(250000, "KZT"))


async def until(check: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the condition did not come true"
        await asyncio.sleep(0.02)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def telegram_storm(
    servers: Mapping[str, FakeServer],
    database_url: str,
    *,
    orders: int = 3,
    storm: float = 2.0,
    outage: float = 1.0,
) -> Row:
    """Orders paid while sendMessage answers 429 (retry_after 1) for `storm` seconds, then 500
    for `outage` seconds: every message is delivered once, and no sendMessage comes before
    the retry_after of the 429 that preceded it has run out."""
    telegram = servers["telegram"]
    assert isinstance(telegram, TelegramServer)
    async with BotApp(settings(servers, database_url), background=True) as app:
        placed = [await place(app, "redoya", 72_000 + n) for n in range(orders)]
        telegram.timeline.clear()
        telegram.refuse("sendMessage", 429, retry_after=1)
        async with aiohttp.ClientSession() as http:
            for order in placed:
                await pay(http, servers["redoya"], order)
                await app.checkout.confirm(order.id, actor="return")
        await asyncio.sleep(storm)
        telegram.refuse("sendMessage", 500)
        await asyncio.sleep(outage)
        telegram.refuse("sendMessage", 0)
        expected = 2 * orders  # the customer's paid message and the merchant's
        deadline = time.monotonic() + 30 + 4 * orders  # the merchant chat: 1 per 3 s
        while time.monotonic() < deadline:
            sent = [t for t in telegram.timeline if t[1] == "sendmessage" and not t[3]]
            if len(sent) >= expected:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # anything sent twice would come now
    sent = [t for t in telegram.timeline if t[1] == "sendmessage" and not t[3]]
    per_chat: dict[int, int] = {}
    for t in sent:
        per_chat[int(str(t[2]))] = per_chat.get(int(str(t[2])), 0) + 1
    customers = [per_chat.get(72_000 + n, 0) for n in range(orders)]
    merchant = per_chat.get(-1000001, 0)
    lost = sum(c == 0 for c in customers) + max(0, orders - merchant)
    doubled = sum(max(0, c - 1) for c in customers) + max(0, merchant - orders)
    early = early_calls(telegram.timeline)
    refused = [t for t in telegram.timeline if t[3]]
    return Row(
        "telegram 429 storm + 5xx",
        f"{orders} orders paid, {expected} messages",
        f"{sum(t[3] == 429 for t in refused)} x 429, {sum(t[3] >= 500 for t in refused)} x 5xx",
        lost,
        doubled,
        f"{early} calls before their retry_after ran out",
    )


def early_calls(timeline: list[tuple[float, str, object, int, int | None]]) -> int:
    """Bot API sends that came before the retry_after of an earlier 429 had run out."""
    early, until = 0, 0.0
    for at, method, _, code, retry_after in timeline:
        if method not in ("sendmessage", "senddocument"):
            continue
        if at < until - 0.05:  # the clock's tick
            early += 1
        if code == 429 and retry_after:
            until = max(until, at + retry_after)
    return early


HEADER = "| measurement | held | fault | lost | doubled | note |\n|---|---|---|---|---|---|"


async def fresh_schema(url: str) -> str:
    schema = f"bench_{secrets.token_hex(4)}"
    server = await asyncpg.connect(url)
    await server.execute(f"CREATE SCHEMA {schema}")
    await server.close()
    return schema


async def run(full: bool, postgres: str | None) -> list[Row]:
    """Every scenario once: the suite's sizes on a compressed clock, or (`full`) the real
    sizes with the provider outage held 10 minutes of real time."""
    from bench.reliability.faults_db import postgres_restart, small_disk, sqlite_fault

    servers = await registry.start_all()
    telegram, ktwidget = servers["telegram"], servers["ktwidget"]
    assert isinstance(telegram, TelegramServer)
    assert isinstance(ktwidget, KtwidgetServer)
    ktwidget.retry_scale = 0.01  # KTWidget's 15 s .. 60 min retries, a hundred times faster
    n = 20 if full else 2
    rows = Rows()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows += await provider_outage(
                servers, f"sqlite:///{tmp}/a.db", per_provider=n, real_time=full
            )
            rows += await provider_outage(
                servers, f"sqlite:///{tmp}/b.db", per_provider=n, timeout=True
            )
            rows.append(
                await ktwidget_outage(
                    servers, f"sqlite:///{tmp}/c.db", orders=n, down=5.0 if full else 0.5
                )
            )
            rows.append(
                await telegram_storm(
                    servers,
                    f"sqlite:///{tmp}/d.db",
                    orders=50 if full else 2,
                    storm=10.0 if full else 2.0,
                    outage=5.0 if full else 1.0,
                )
            )
            os.mkdir(f"{tmp}/locked")
            rows.append(
                # one order: each callback waits out the 5 s busy timeout in turn, and KTWidget's
                # retries, compressed x0.01, pile up behind them faster than they are refused
                await sqlite_fault(servers, f"{tmp}/locked", fault="locked", orders=1)
            )
            with small_disk(f"{tmp}/disk") as disk:
                rows.append(await sqlite_fault(servers, disk, fault="full", orders=n))
        if postgres:  # None: the cluster is shared and not to be restarted now
            schema = await fresh_schema(postgres)
            try:
                joiner = "&" if "?" in postgres else "?"
                url = f"{postgres}{joiner}search_path={schema}"
                rows.append(await postgres_restart(servers, url, orders=n))
            finally:
                server = await asyncpg.connect(postgres)
                await server.execute(f"DROP SCHEMA {schema} CASCADE")
                await server.close()
    finally:
        await registry.stop_all(servers)
    return rows


class Rows(list[Row]):
    """The rows so far, each printed as it comes (a long run that stops half-way keeps what it
    measured)."""

    def append(self, row: Row) -> None:
        super().append(row)
        print(f"measured: {row}", file=sys.stderr, flush=True)

    def __iadd__(self, rows: Iterable[Row]) -> Rows:  # type: ignore[override,misc]
        for row in rows:
            self.append(row)
        return self


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="real sizes, a real 10 min outage")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="the machine's PostgreSQL (its cluster is restarted once)",
    )
    parser.add_argument("--no-restart", action="store_true", help="leave PostgreSQL alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the faults log their errors by design
    started = datetime.now(UTC)
    rows = asyncio.run(run(args.full, None if args.no_restart else args.postgres))
    print(
        f"faults ({'full' if args.full else 'small'}), {started:%Y-%m-%d %H:%M} UTC, "
        f"{(datetime.now(UTC) - started).total_seconds():.0f} s"
    )
    print(HEADER)
    for row in rows:
        print(row.line())


if __name__ == "__main__":
    main()
