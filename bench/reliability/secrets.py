"""No secret in a log line, a stored row or a chat message, whatever goes wrong.

For the bot token and every provider's credentials, the bot is run through its error paths:
orders on every provider and payments, forged callbacks, refunds refused, a sweep; once with the
right credentials, once with every credential refused, once with every provider answering 5xx
(echoing what it was sent), garbage or nothing (a time-out), and with Telegram refusing
messages; and a start with BOT_TOKEN refused. Every log record (all loggers, all levels, with
its traceback), every row of every table of the SQLite file (the outbox payloads, the stored
requests) and every chat message is then scanned for each secret value, raw and URL-encoded.

    python -m bench.reliability.secrets
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets as random_secrets
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bench.reliability.fuzz import Collector, capture_logs, emulators
from bot.app import BotApp, Parts, StartupError
from bot.demo import sandbox_settings
from sandbox import registry
from sandbox.base import FakeServer
from sandbox.botuser import BotUser, buttons

CUSTOMER, ADMIN, MERCHANT_CHAT = 1001, 42, -1000001
WEBHOOK_SECRET = "webhook-secret-never-logged-5e1f"
CALLBACK_SECRET = "callback-secret-never-logged-77aa"
PRODUCTS = ("cezve", "ivan-chai", "kazakh-tea", "milk-tea", "chorek", "coffee-club")
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "APP_ID")
NOT_SECRET = ("POCKET_PUBLIC_KEY", "KTWIDGET_APP_KEY", "ERP_TOKEN_HEADER")  # public keys
HOSTILE_MODES = ("echo500", "garbage", "hang")


@dataclass
class Scan:
    secrets: int = 0
    places: dict[str, int] = field(default_factory=dict)  # what was scanned, how many of each
    found: list[str] = field(default_factory=list)

    def look(self, where: str, texts: list[str], values: dict[str, str]) -> None:
        self.places[where] = self.places.get(where, 0) + len(texts)
        for name, value in values.items():
            forms = {value, quote(value, safe=""), json.dumps(value)[1:-1]}
            for text in texts:
                if any(form in text for form in forms):
                    self.found.append(f"{name} in {where}: {text[:160]!r}")
                    break


def secret_env(env: dict[str, str]) -> dict[str, str]:
    """The env lines that hold a secret (by name), the public key and header kind aside."""
    return {
        k: v
        for k, v in env.items()
        if any(w in k for w in SECRET_WORDS) and k not in NOT_SECRET and len(v) >= 6
    }


def refused(env: dict[str, str]) -> dict[str, str]:
    """The same settings with every credential replaced by one the providers refuse."""
    wrong = {k: f"wrong-{k.lower()}-{random_secrets.token_hex(6)}" for k in secret_env(env)}
    if "BOT_TOKEN" in wrong:
        wrong["BOT_TOKEN"] = env["BOT_TOKEN"]  # the bot must start; a refused token below
    return env | wrong


@asynccontextmanager
async def hostile_upstream(mode: str) -> AsyncIterator[str]:
    """A provider that answers 5xx echoing what it got, garbage, or nothing."""

    async def answer(request: web.Request) -> web.StreamResponse:
        got = f"{request.method} {request.path_qs}\n{dict(request.headers)}\n"
        got += (await request.read()).decode("utf-8", "replace")
        if mode == "echo500":
            return web.Response(status=500, text=f"Internal error while handling:\n{got}")
        if mode == "garbage":
            return web.Response(status=200, body=b"\x00<<not json " + got.encode()[:500])
        await asyncio.sleep(30)
        return web.Response(status=504)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _buy(user: BotUser, product: str, label: str = "") -> dict | None:
    """/start p_<product> -> Buy now [-> label]: the bot's answer (an order, an invoice, the
    choice of provider or an error; None: none came)."""
    await user.send(f"/start p_{product}")
    await _quietly(user.wait_message(predicate=lambda m: not _not_the_card(m), timeout=3))
    reply = await _answer(user, "Buy now")
    if label and reply is not None:
        reply = await _answer(user, label)
    return reply


async def _answer(user: BotUser, button: str) -> dict | None:
    """Press `button`: the message that answers it, or None when an alert did (a provider
    that refused us: the customer is told in the alert)."""
    alert = await _quietly(user.press(text=button))
    if isinstance(alert, dict) and alert.get("text"):
        return None
    return await _quietly(user.wait_message(predicate=_not_the_card, timeout=3))  # type: ignore[return-value]


def _not_the_card(message: dict) -> bool:
    """Not the product card itself (pressing Buy now may edit it before the answer comes)."""
    return not any(b["text"] == "Buy now" for b in buttons(message))


async def drive(
    parts: Parts, servers: list[FakeServer], http: aiohttp.ClientSession, products: tuple[str, ...]
) -> None:
    """Every path a customer, the providers and an admin can take, errors expected."""
    telegram = servers[0]
    user = BotUser(telegram.url, CUSTOMER, session=http)
    admin = BotUser(telegram.url, ADMIN, session=http)
    for product in products:
        first = await _buy(user, product)
        text = (first or {}).get("text") or ""
        labels = [b["text"] for b in buttons(first or {})] if "How would you like" in text else []
        orders = [first] if not labels else [await _buy(user, product, label) for label in labels]
        for order in orders:
            pay = [b["url"] for b in buttons(order or {}) if "url" in b]
            for server in servers[1:]:
                if pay and pay[0].startswith(server.url):
                    await _pay(http, server, pay[0])
            if order and "invoice" in order:
                await _quietly(user.pay_invoice())
    await _forge_callbacks(parts, http)
    for order in await parts.checkout.orders_of(CUSTOMER, limit=50):
        for command in (f"/refund {order.id}", f"/refund {order.id} 1", f"/order {order.id}"):
            await admin.send(command)
            await _quietly(admin.wait_message(timeout=3))
    await admin.send("/reconcile")
    await _quietly(admin.wait_message(timeout=5))
    await _quietly(parts.reconciler.run_once())
    await _quietly(parts.notifier.flush())


async def _pay(http: aiohttp.ClientSession, server: FakeServer, url: str) -> None:
    for outcome in ("paid", "failed"):
        async with http.post(
            f"{server.url}/sandbox/pay", json={"url": url, "outcome": outcome}
        ) as answer:
            redirect = (await answer.json()).get("redirect") if answer.status == 200 else None
        if redirect:
            await _quietly(_get(http, redirect))


async def _get(http: aiohttp.ClientSession, url: str) -> None:
    async with http.get(url) as page:
        await page.read()


async def _forge_callbacks(parts: Parts, http: aiohttp.ClientSession) -> None:
    orders = await parts.checkout.orders_of(CUSTOMER, limit=50)
    for order in orders:
        for key in ("wrong", parts.checkout.callback_key(order.provider, order.id)):
            url = f"{parts.web_url}/callbacks/{order.provider}?o={order.id}&k={key}"
            for body in (b"{}", b"Notification=EnginePaySuccess&OrderId=x", b"\xff garbage"):
                async with http.post(url, data=body) as answer:
                    await answer.read()


async def _quietly(awaitable: object) -> object:
    """An expected failure (a refused provider) is part of the run, not its end."""
    try:
        async with asyncio.timeout(20):
            return await awaitable  # type: ignore[misc]
    except (AssertionError, TimeoutError, aiohttp.ClientError, ValueError, KeyError):
        return None


async def scenario(
    name: str,
    env: dict[str, str],
    servers: list[FakeServer],
    scan: Scan,
    log: Collector,
    products: tuple[str, ...] = PRODUCTS,
) -> None:
    """One bot on `env`, driven; its log lines, rows and chats scanned for `env`'s secrets."""
    values = secret_env(env) | {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    values["CALLBACK_SECRET"] = CALLBACK_SECRET
    scan.secrets += len(values)
    start = len(log.lines)
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "bot.db"
        settings = sandbox_settings(
            *servers,
            env=env,
            database_url=f"sqlite:///{database}",
            admin_ids=frozenset({ADMIN}),
            merchant_chat_id=MERCHANT_CHAT,
            callback_secret=CALLBACK_SECRET,
            webhook_secret=WEBHOOK_SECRET,
            sweep_every=3600,
            http_timeout=1.0,
        )
        async with BotApp(settings) as parts, aiohttp.ClientSession() as http:
            if name == "telegram refuses":
                servers[0].fail_next(
                    "sendMessage", error_code=403, description="Forbidden", times=50
                )  # type: ignore[attr-defined]
            await drive(parts, servers, http, products)
        scan.look(f"{name}: stored rows", rows(database), values)
    scan.look(f"{name}: log lines", log.lines[start:], values)
    scan.look(f"{name}: chat messages", await chats(servers[0]), values)


def rows(database: Path) -> list[str]:
    """Every row of every table, as text (bytes decoded leniently)."""
    found = []
    with sqlite3.connect(database) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - sqlite_master's
                cells = [
                    c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in row
                ]
                found.append(f"{table}: " + " | ".join(cells))
    return found


async def chats(telegram: FakeServer) -> list[str]:
    async with aiohttp.ClientSession() as http, http.get(f"{telegram.url}/sandbox/state") as state:
        return [json.dumps(await state.json(), ensure_ascii=False)]


async def refused_token(servers: list[FakeServer], scan: Scan, log: Collector) -> None:
    """A start with a BOT_TOKEN Telegram refuses: the error and the log name no token."""
    token = f"999999:refused-{random_secrets.token_hex(8)}"
    env = registry.env_of(servers) | {"BOT_TOKEN": token}
    start = len(log.lines)
    with tempfile.TemporaryDirectory() as tmp:
        settings = sandbox_settings(*servers, env=env, database_url=f"sqlite:///{tmp}/bot.db")
        try:
            async with BotApp(settings):
                problem = "started"
        except StartupError as exc:
            problem = str(exc)
    scan.secrets += 1
    scan.look(
        "refused BOT_TOKEN: start-up error and log",
        [problem, *log.lines[start:]],
        {"BOT_TOKEN": token},
    )


async def run(modes: tuple[str, ...] = HOSTILE_MODES, *, quick: bool = False) -> Scan:
    """Every scenario (quick: credentials refused and `modes`, on three products)."""
    scan = Scan()
    products = PRODUCTS[:4] if quick else PRODUCTS
    async with emulators() as servers, capture_logs() as log:
        env = registry.env_of(servers)
        plain = [("credentials refused", refused(env))]
        if not quick:
            plain = [("right credentials", env), *plain, ("telegram refuses", env)]
        for name, scenario_env in plain:
            await scenario(name, scenario_env, servers, scan, log, products)
            for server in servers:
                server.reset()
        for mode in modes:
            async with hostile_upstream(mode) as url:
                urls = {k: url for k in env if k.endswith("_URL") and k != "TELEGRAM_API_URL"}
                await scenario(f"providers {mode}", env | urls, servers, scan, log, products)
        await refused_token(servers, scan, log)
    return scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    scan = asyncio.run(run())
    print(
        json.dumps({"secrets": scan.secrets, "places": scan.places, "found": scan.found}, indent=1)
    )
    raise SystemExit(1 if scan.found else 0)


if __name__ == "__main__":
    main()
