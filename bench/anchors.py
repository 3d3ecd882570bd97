"""The anchors the payment path is measured against, each a process of its own on loopback.

- `bare`: an aiohttp handler that reads the body and answers OK, nothing else.
- `insert`: aiohttp and one database insert per request, committed before the answer.
- `confirm`: the least a confirm can do (the baseline of target 2): read the callback, find the
  order by its payment id, store the event and answer; then, off the request path, ask the
  Payture emulator with the same HTTP client as ours (httpx over httpx-aiohttp), and in one
  transaction move the order to paid if it still awaits payment, queue the customer's message
  and mark the event done.

`python -m bench.anchors bare|insert|confirm --port P [--database sqlite:///f.db | postgresql://...]
[--payture URL --key K]`. It prints "serving" once it listens. Orders for `confirm` are loaded
from the database with `--orders file.tsv` (order id, payment id, amount).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

import aiosqlite
import asyncpg
import httpx
from aiohttp import web
from defusedxml.ElementTree import fromstring
from httpx_aiohttp import AiohttpTransport

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, payment_id TEXT UNIQUE, "
    "amount BIGINT, state TEXT)",
    "CREATE TABLE IF NOT EXISTS events (id BIGSERIAL PRIMARY KEY, event_key TEXT UNIQUE, "
    "order_id BIGINT, body BYTEA, received_at TEXT, processed_at TEXT)",
    "CREATE TABLE IF NOT EXISTS outbox (id BIGSERIAL PRIMARY KEY, order_id BIGINT, "
    "payload TEXT, created_at TEXT)",
)


def stamp() -> str:
    return f"{time.time():.6f}"


class Db(Protocol):
    async def one(self, sql: str, *args: Any) -> Any: ...
    def tx(self) -> contextlib.AbstractAsyncContextManager[Any]: ...
    async def run(self, tx: Any, sql: str, *args: Any) -> int: ...


class Lite:
    """One aiosqlite connection, WAL and synchronous=NORMAL, as ours; one writer at a time."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db, self.lock = db, asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> Lite:
        db = await aiosqlite.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
            await db.execute(f"PRAGMA {pragma}")
        for sql in SCHEMA:
            await db.execute(sql.replace("BIGSERIAL", "INTEGER").replace("BYTEA", "BLOB"))
        return cls(db)

    async def one(self, sql: str, *args: Any) -> Any:
        rows = await self.db.execute_fetchall(sql.replace("$", "?"), args)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self.lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    async def run(self, tx: aiosqlite.Connection, sql: str, *args: Any) -> int:
        for n in range(len(args), 0, -1):
            sql = sql.replace(f"${n}", "?")
        return (await tx.execute(sql, args)).rowcount


class Pg:
    """An asyncpg pool of ten, as ours."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str) -> Pg:
        base, _, schema = url.partition("?search_path=")
        settings = {"search_path": schema} if schema else {}
        pool = await asyncpg.create_pool(base, min_size=2, max_size=10, server_settings=settings)
        async with pool.acquire() as conn:
            for sql in SCHEMA:
                await conn.execute(sql)
        return cls(pool)

    async def one(self, sql: str, *args: Any) -> Any:
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(sql, *args)

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def run(self, tx: asyncpg.Connection, sql: str, *args: Any) -> int:
        status = await tx.execute(sql, *args)
        return int(status.rsplit(" ", 1)[-1])


async def open_db(url: str) -> Db:
    if url.startswith("sqlite:///"):
        return await Lite.open(url.removeprefix("sqlite:///"))
    return await Pg.open(url)


def bare_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/callbacks/{provider}", handle)
    return app


def insert_app(db: Db) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        async with db.tx() as tx:
            await db.run(
                tx,
                "INSERT INTO events (event_key, body, received_at) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                f"k{time.monotonic_ns()}",
                body,
                stamp(),
            )
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/callbacks/{provider}", handle)
    return app


def confirm_app(db: Db, payture: str, key: str) -> web.Application:
    http = httpx.AsyncClient(transport=AiohttpTransport(), timeout=httpx.Timeout(10.0))
    background: set[asyncio.Task[None]] = set()

    async def paid(order_id: int, payment_id: str, amount: int, event_id: int) -> None:
        answer = await http.post(
            f"{payture}/apim/GetState", data={"Key": key, "OrderId": payment_id}
        )
        state = fromstring(answer.content).attrib
        if state.get("State") != "Charged" or int(state.get("Amount", "0")) != amount:
            return
        async with db.tx() as tx:
            moved = await db.run(
                tx,
                "UPDATE orders SET state = 'paid' WHERE id = $1 AND state = 'awaiting_payment'",
                order_id,
            )
            if moved:
                await db.run(
                    tx,
                    "INSERT INTO outbox (order_id, payload, created_at) VALUES ($1, $2, $3)",
                    order_id,
                    f'{{"kind": "paid", "amount": {amount}}}',
                    stamp(),
                )
            await db.run(tx, "UPDATE events SET processed_at = $1 WHERE id = $2", stamp(), event_id)

    async def handle(request: web.Request) -> web.Response:
        fields = dict(parse_qsl((await request.read()).decode()))
        payment_id = fields.get("OrderId", "")
        order = await db.one("SELECT id, amount FROM orders WHERE payment_id = $1", payment_id)
        if order is None:
            return web.Response(status=404, text="no such order")
        event_key = f"{fields.get('Notification')}:{payment_id}:{fields.get('TransactionDate')}"
        async with db.tx() as tx:
            if isinstance(tx, aiosqlite.Connection):
                cursor = await tx.execute(
                    "INSERT INTO events (event_key, order_id, body, received_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                    (event_key, order[0], b"", stamp()),
                )
                row = await cursor.fetchone()
            else:
                row = await tx.fetchrow(
                    "INSERT INTO events (event_key, order_id, body, received_at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
                    event_key,
                    order[0],
                    b"",
                    stamp(),
                )
        if row is not None:
            task = asyncio.create_task(paid(order[0], payment_id, order[1], row[0]))
            background.add(task)
            task.add_done_callback(background.discard)
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/callbacks/{provider}", handle)
    app.on_cleanup.append(lambda _: http.aclose())
    return app


async def load_orders(db: Db, text: str) -> None:
    rows = [line.split("\t") for line in text.splitlines() if line]
    async with db.tx() as tx:
        await db.run(tx, "DELETE FROM orders")
        await db.run(tx, "DELETE FROM events")
        await db.run(tx, "DELETE FROM outbox")
        for order_id, payment_id, amount in rows:
            await db.run(
                tx,
                "INSERT INTO orders VALUES ($1, $2, $3, 'awaiting_payment')",
                int(order_id),
                payment_id,
                int(amount),
            )


async def serve(args: argparse.Namespace) -> None:
    if args.kind == "bare":
        app = bare_app()
    else:
        db = await open_db(args.database)
        if args.kind == "insert":
            app = insert_app(db)
        else:
            await load_orders(db, await asyncio.to_thread(Path(args.orders).read_text))
            app = confirm_app(db, args.payture, args.key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print("serving", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("bare", "insert", "confirm"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", default="")
    parser.add_argument("--payture", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--orders", default="")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parser.parse_args()))
    sys.exit(0)


if __name__ == "__main__":
    main()
