"""What the storm, the kill and the replicas share: the emulators, the bot as real `python -m bot
run` processes, N orders placed across all six providers and 70% of them paid on the emulators,
and the final count read from the database and the Telegram emulator's chats.

Orders are placed by an in-process BotApp (the checkout core, as the chat would call it; the ERP's
orders through the chat itself, since their "Check payment" button lives on the chat's order
card), which then stops: everything after that - every callback, return, button press and Stars
payment - reaches the bot processes from outside only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from bot.app import BotApp, Parts
from bot.core import Order
from bot.core.checkout import CartLine
from bot.demo import sandbox_settings
from sandbox import registry
from sandbox.base import FakeServer
from sandbox.botuser import BotUser
from sandbox.telegram import TelegramServer

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "bot" / "demo_catalog.toml"
MERCHANT_CHAT = -1000001
ADMIN = 42
FIRST_USER = 200_000
# provider -> the demo catalog's product it sells; the ERP's two banks each get a slot
SLOTS = {
    "redoya": "turkish-coffee",
    "payture": "ivan-chai",
    "ktwidget": "kazakh-tea",
    "pocket": "milk-tea",
    "halkbank": "chorek",
    "tfeb": "chorek",
    "stars": "coffee-club",
}
BANK_BUTTON = {"halkbank": "Halkbank", "tfeb": "TFEB"}
REDIS_URL = "redis://127.0.0.1:6379/7"  # the storm's own Redis database, flushed before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Placed:
    """One order as the storm knows it: enough to build every request a provider would send."""

    id: int
    provider: str
    user_id: int
    token: str
    pay_url: str
    payment_id: str
    callback_key: str
    paid: bool = False
    message_id: int = 0  # the ERP's order card in the chat (its "Check payment" button)
    check_data: str = ""
    redirect: str = ""  # where the provider sent the customer back (Redoya)
    body: bytes = b""  # the provider's own notification (Payture, Pocket, KTWidget)


@dataclass
class Shop:
    """The emulators, the orders and the bot's settings as environment lines."""

    servers: dict[str, FakeServer]
    database_url: str
    workdir: Path
    orders: list[Placed] = field(default_factory=list)
    pocket_key: str = ""

    @property
    def telegram(self) -> TelegramServer:
        server = self.servers["telegram"]
        assert isinstance(server, TelegramServer)
        return server

    def env(self, port: int, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        return (
            keep
            | registry.env_of(self.servers)
            | {
                "WEB_HOST": "127.0.0.1",
                "WEB_PORT": str(port),
                "DATABASE_URL": self.database_url,
                "CATALOG_PATH": str(CATALOG),
                "MERCHANT_CHAT_ID": str(MERCHANT_CHAT),
                "ADMIN_IDS": str(ADMIN),
                "PYTHONPATH": str(ROOT),
            }
            | extra
        )


@contextlib.asynccontextmanager
async def emulators() -> AsyncIterator[dict[str, FakeServer]]:
    servers = await registry.start_all()
    servers["ktwidget"].retry_scale = 0.0005  # its retries (15 s to 60 min) within ~2 s
    try:
        yield servers
    finally:
        await registry.stop_all(servers)


@contextlib.asynccontextmanager
async def postgres_schema(server_url: str) -> AsyncIterator[str]:
    """A fresh schema of the test database (as tests/conftest.py), dropped afterwards."""
    schema = f"storm_{os.getpid()}_{free_port()}"
    server = await asyncpg.connect(server_url)
    await server.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{server_url}?search_path={schema}"
    finally:
        await server.execute(f"DROP SCHEMA {schema} CASCADE")
        await server.close()


async def flush_redis(url: str = REDIS_URL) -> None:
    """FLUSHDB on the storm's own Redis database (RESP by hand: no client needed)."""
    host, _, rest = url.removeprefix("redis://").partition(":")
    port, _, db = rest.partition("/")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"SELECT {db or 0}\r\nFLUSHDB\r\n".encode())
    await writer.drain()
    assert (await reader.readline()).startswith(b"+OK")
    assert (await reader.readline()).startswith(b"+OK")
    writer.close()


# --- placing and paying ---------------------------------------------------------------------


async def place(
    shop: Shop, n: int, http: aiohttp.ClientSession, slots: Sequence[str] = tuple(SLOTS)
) -> None:
    """N orders round the seven slots (or those named), each by its own customer."""
    settings = sandbox_settings(
        *shop.servers.values(),
        database_url=shop.database_url,
        merchant_chat_id=MERCHANT_CHAT,
        admin_ids=frozenset({ADMIN}),
        sweep_every=3600,
        first_check_after=3600,
    )
    names = list(slots)
    gate = asyncio.Semaphore(16)
    async with BotApp(settings) as parts:
        checkout = parts.checkout
        shop.pocket_key = checkout.provider_key("pocket")

        async def one(i: int) -> Placed:
            provider, user_id = names[i % len(names)], FIRST_USER + i
            async with gate:
                if provider in BANK_BUTTON:
                    message_id, data = await _order_in_chat(shop, http, user_id, provider)
                    order = (await checkout.orders_of(user_id, limit=1))[0]
                else:
                    message_id, data = 0, ""
                    order = await _order_in_core(parts, http, shop, user_id, provider)
            return Placed(
                order.id,
                provider,
                user_id,
                order.token,
                order.pay_url or "",
                order.provider_payment_id or "",
                checkout.callback_key(provider, order.id),
                message_id=message_id,
                check_data=data,
            )

        shop.orders = list(await asyncio.gather(*(one(i) for i in range(n))))
        await parts.notifier.flush()


async def _order_in_core(
    parts: Parts, http: aiohttp.ClientSession, shop: Shop, user_id: int, provider: str
) -> Order:
    product = parts.catalog.product(SLOTS[provider])
    assert product is not None
    price = next(p for p in product.prices if (p.currency == "XTR") == (provider == "stars"))
    line = CartLine(product.id, product.name, 1, price, sku=product.sku)
    order = await parts.checkout.place_order(
        user_id=user_id, chat_id=user_id, lines=[line], provider_name=provider
    )
    if provider == "pocket":  # the bridge page inside the Pocket app opens the invoice
        token = shop.servers["pocket"].customer_token("ada")
        async with http.post(order.pay_url, json={"accessToken": token}) as answer:
            assert answer.status == 200, await answer.text()
        order = await parts.checkout.order(order.id)
    return order


async def _order_in_chat(
    shop: Shop, http: aiohttp.ClientSession, user_id: int, bank: str
) -> tuple[int, str]:
    """The ERP's orders through the chat: the order card and its "Check payment" data."""
    user = BotUser(shop.telegram.url, user_id, first_name="Storm", session=http)
    await user.send("/start p_chorek")
    await user.wait_message("Chorek", timeout=30)
    await user.press(text="Buy now")
    await user.wait_message("How would you like to pay?", timeout=30)
    await user.press(text=BANK_BUTTON[bank])
    card = await user.wait_message("Order #", timeout=30)
    check = next(
        b
        for row in card["reply_markup"]["inline_keyboard"]
        for b in row
        if b["text"].startswith("Check payment")
    )
    return card["message_id"], check["callback_data"]


async def pay(shop: Shop, http: aiohttp.ClientSession, share: float = 0.7) -> None:
    """Pay `share` of the orders on the emulators' pages while no bot runs: what the providers
    post meanwhile is lost, as when our server is down; the storm delivers it. Stars are paid
    in the storm (Telegram asks the bot's pre-checkout first)."""
    s = shop.servers
    for n, order in enumerate(shop.orders):
        order.paid = n % 10 < share * 10
        if not order.paid or order.provider == "stars":
            continue
        p = order.provider
        if p == "pocket":
            body = {"invoice_id": order.payment_id, "outcome": "paid"}
        elif p == "ktwidget":
            body = {"url": order.pay_url, "outcome": "completed"}
        else:
            body = {"url": order.pay_url, "outcome": "paid"}
        server = s["erp"] if p in BANK_BUTTON else s[p]
        async with http.post(f"{server.url}/sandbox/pay", json=body) as answer:
            assert answer.status == 200, (p, await answer.text())
            order.redirect = str((await answer.json()).get("redirect") or "")
    for server in (s["payture"], s["pocket"]):
        await server.settle()  # their notifications to the stopped bot have failed


# --- the bot processes ----------------------------------------------------------------------


class Bot:
    """One `python -m bot run` process on a port of its own."""

    def __init__(self, shop: Shop, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = shop.env(self.port, **env)
        self.workdir = shop.workdir
        self.proc: asyncio.subprocess.Process | None = None
        self.log = shop.workdir / f"bot-{self.port}.log"

    async def start(self, http: aiohttp.ClientSession, within: float = 60) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.url}/readyz") as answer:
                    if answer.status == 200:
                        return
            if self.proc.returncode is not None or loop.time() > deadline:
                raise RuntimeError(f"the bot did not start: {self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.1)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                await self.kill()

    def tracebacks(self) -> int:
        return self._count("Traceback")

    def refused_answers(self) -> int:
        """Pre-checkout answers Telegram refused (past its deadline): payers who could not pay."""
        return self._count("Telegram refused the answer")

    def _count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text) if self.log.exists() else 0


# --- the count ------------------------------------------------------------------------------


@dataclass
class Count:
    paid_orders: int = 0  # orders paid on the provider's side
    paid_once: int = 0  # of those, paid in our database with exactly one transition to paid
    forged_paid: int = 0  # unpaid orders we marked paid (must be 0)
    customer: Counter[int] = field(default_factory=Counter)  # paid messages per order
    merchant: Counter[int] = field(default_factory=Counter)
    unprocessed_events: int = 0
    events: int = 0
    unsent_outbox: int = 0
    stuck: int = 0  # orders left in created or refund_pending
    states: Counter[str] = field(default_factory=Counter)
    wrong: dict[int, list[tuple]] = field(default_factory=dict)  # audit trails of the misses
    waiting: list[tuple] = field(default_factory=list)  # the unprocessed events, to explain

    def lost(self, shop: Shop) -> int:
        return sum(
            1
            for o in shop.orders
            if o.paid and (not self.customer[o.id] or not self.merchant[o.id])
        )

    def doubled(self, shop: Shop) -> int:
        return sum(
            max(self.customer[o.id] - 1, 0) + max(self.merchant[o.id] - 1, 0) for o in shop.orders
        )


WAITING = (
    "SELECT e.id, e.provider, e.event_key, e.received_at, o.id, o.state, o.check_attempts, "
    "o.next_check_at FROM inbound_events e LEFT JOIN orders o ON o.id = e.order_id "
    "WHERE e.processed_at IS NULL ORDER BY e.id"
)


async def rows(database_url: str, sql: str) -> list[tuple]:
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as db, db:  # a write is committed
            return db.execute(sql).fetchall()
    base, _, schema = database_url.partition("?search_path=")
    for attempt in range(60):  # the machine's PostgreSQL may be restarting (another bench's)
        with contextlib.suppress(OSError, asyncpg.CannotConnectNowError, asyncpg.InterfaceError):
            conn = await asyncpg.connect(base, server_settings={"search_path": schema})
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()
        await asyncio.sleep(0.5 if attempt < 59 else 0)
    raise RuntimeError(f"PostgreSQL did not answer for 30 s ({base.rpartition('@')[2]})")


async def count(shop: Shop) -> Count:
    url = shop.database_url
    c = Count()
    states = dict(await rows(url, "SELECT id, state FROM orders"))
    trails: dict[int, list[tuple]] = {}
    audit = "SELECT order_id, from_state, to_state, actor, detail FROM audit ORDER BY id"
    for order_id, *step in await rows(url, audit):
        trails.setdefault(order_id, []).append(tuple(step))
    for order in shop.orders:
        c.states[states[order.id]] += 1
        to_paid = sum(1 for was, now, *_ in trails[order.id] if now == "paid" and was != "paid")
        if order.paid:
            c.paid_orders += 1
            once = states[order.id] == "paid" and to_paid == 1
            c.paid_once += once
        else:
            once = not to_paid
            c.forged_paid += not once
        if not once:
            c.wrong[order.id] = [(order.provider, order.payment_id), *trails[order.id]]
    c.stuck = sum(1 for s in states.values() if s in ("created", "refund_pending"))
    ((c.events,),) = await rows(url, "SELECT count(*) FROM inbound_events")
    c.waiting = await rows(url, WAITING)
    c.unprocessed_events = len(c.waiting)
    ((c.unsent_outbox,),) = await rows(url, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    telegram = shop.telegram
    for order in shop.orders:
        said = [
            m.get("text") or ""
            for m in telegram.messages.get(order.user_id, [])
            if m["from"].get("is_bot")
        ]
        c.customer[order.id] = sum(f"Payment received for order #{order.id}:" in t for t in said)
    for m in telegram.messages.get(MERCHANT_CHAT, []):
        text = m.get("text") or ""
        if text.startswith("💰 Order #"):
            c.merchant[int(text.removeprefix("💰 Order #").split()[0])] += 1
    return c
