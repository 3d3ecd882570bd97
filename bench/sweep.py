"""Target 6 (issue 26): the reconcile sweep reads only the due orders, so its time per due order
stays flat from 1,000 to 100,000 orders awaiting payment.

Each size gets a fresh database: the Storage is opened once so the migrations make the real
schema, then the rows go in by bulk SQL (one executemany transaction on SQLite, COPY on
PostgreSQL, then VACUUM ANALYZE there as autovacuum would; SQLite is left without statistics, as the
bot leaves it), never through the Storage API, which would take minutes for 100,000 orders. All N
orders await payment; `due` of them (spread evenly through the table) have their check due,
the rest are checked later (minutes to a day ahead, some after failed checks). Half of the
others have a stored, processed return (none is left unprocessed: the start-up replay looks at
those once, off the timed pass, so the timed replay would find none of them).
The due orders are real payments on the emulators: a Payture order charged, one still
new, and a Redoya order whose customer never came back (no payment id yet, so its stored events
are read).

The pass is the real one: `BotApp` against every emulator (all six providers enabled), its
`Reconciler.run_once` until nothing is due, timed. Sizes are interleaved round by round;
medians. With `--plans`, every query one pass ran (SQLite's trace callback, asyncpg's query
logger) is shown with its plan from the filled 100,000-order database.

Run: `python -m bench.sweep [--sizes 1000,10000,100000] [--due 500] [--rounds 3]
[--postgres postgresql://postgres@127.0.0.1:5432/test] [--plans]`; prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.reliability.harness import postgres_schema
from bot.app import BotApp
from bot.demo import sandbox_settings
from sandbox import registry
from sandbox.base import FakeServer
from sandbox.payture import PaytureOrder, PaytureServer
from storage import storage_from_url
from storage.sqlite import ts

# provider -> (currency, amount in minor units, sku) of the product the order is for
GOODS = {
    "redoya": ("TRY", 15000, "turkish-coffee"),
    "payture": ("RUB", 45000, "ivan-chai"),
    "ktwidget": ("KZT", 320050, "kazakh-tea"),
    "pocket": ("MNT", 1250000, "milk-tea"),
    "halkbank": ("TMT", 115, "chorek"),
    "tfeb": ("TMT", 115, "chorek"),
    "stars": ("XTR", 500, "coffee-club"),
}
PROVIDERS = list(GOODS)
# the columns the fill gives values (the rest keep their defaults), table by table
COLUMNS = {
    "orders": (
        "id, user_id, chat_id, provider, amount, currency, state, token, description, "
        "provider_payment_id, pay_url, expires_at, next_check_at, check_attempts, created_at, "
        "updated_at"
    ),
    "order_items": "order_id, position, sku, title, quantity, unit_amount",
    "audit": "order_id, from_state, to_state, actor, detail, created_at",
    "inbound_events": "provider, event_key, order_id, body, received_at, processed_at",
}


@dataclass
class Filled:
    """What the fill put in, and what the emulators must know of the due orders."""

    orders: int
    due: int
    charged: list[str] = field(default_factory=list)  # Payture order ids paid on the emulator
    new: list[str] = field(default_factory=list)  # Payture order ids not paid yet
    seconds: float = 0.0


def _due_kind(i: int) -> str:
    """The i-th due order: half Payture paid, a quarter Payture not yet, a quarter Redoya
    before the return."""
    return ("charged", "charged", "new", "redoya")[i % 4]


def rows(orders: int, due: int, now: datetime) -> tuple[Filled, dict[str, list[tuple]]]:
    """The rows of every table, times as aware datetimes."""
    filled = Filled(orders, due)
    every = orders // due
    start = now - timedelta(minutes=30)
    tables: dict[str, list[tuple]] = {name: [] for name in COLUMNS}
    for n in range(orders):
        order_id = n + 1
        made = start - timedelta(milliseconds=orders - n)
        if n % every == 0 and n // every < due:
            kind = _due_kind(n // every)
            provider = "redoya" if kind == "redoya" else "payture"
            payment_id = None if kind == "redoya" else f"sweep-{order_id}"
            if payment_id:
                (filled.charged if kind == "charged" else filled.new).append(payment_id)
            next_check, attempts = now - timedelta(seconds=30), 0
        else:
            provider = PROVIDERS[n % len(PROVIDERS)]
            payment_id = None if provider == "redoya" and n % 2 else f"{provider}-{order_id}"
            next_check = now + timedelta(minutes=5 + n % 1440)
            attempts = n % 6
        currency, amount, sku = GOODS[provider]
        tables["orders"].append(
            (
                order_id,
                1 + n % 10_000,
                1 + n % 10_000,
                provider,
                amount,
                currency,
                "awaiting_payment",
                f"sweep-token-{order_id}",
                f"{sku} x1",
                payment_id,
                f"https://pay.example/{order_id}",
                now + timedelta(hours=1),
                next_check,
                attempts,
                made,
                made,
            )
        )
        tables["order_items"].append((order_id, 0, sku, sku, 1, amount))
        tables["audit"].append((order_id, None, "created", "checkout", "", made))
        tables["audit"].append((order_id, "created", "awaiting_payment", "checkout", "", made))
        if next_check > now and n % 2:
            processed = made + timedelta(seconds=1)
            key = f"return:{order_id}"
            tables["inbound_events"].append((provider, key, order_id, b"{}", made, processed))
    return filled, tables


def _sqlite_values(table: list[tuple]) -> Iterator[tuple]:
    for row in table:
        yield tuple(ts(v) if isinstance(v, datetime) else v for v in row)


async def migrate(database_url: str) -> None:
    """Open the real Storage once: its migrations make the schema the bulk insert fills."""
    storage = storage_from_url(database_url)
    await storage.open()
    await storage.close()


async def fill(database_url: str, orders: int, due: int, now: datetime) -> Filled:
    """A fresh database of `orders` orders awaiting payment, `due` of them due at `now`."""
    await migrate(database_url)
    started = time.perf_counter()
    filled, tables = rows(orders, due, now)
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            for table, columns in COLUMNS.items():
                marks = ",".join("?" * len(columns.split(",")))
                db.executemany(
                    f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 - ours
                    _sqlite_values(tables[table]),
                )
    else:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                for table, columns in COLUMNS.items():
                    await conn.copy_records_to_table(
                        table,
                        records=tables[table],
                        columns=[c.strip() for c in columns.split(",")],
                    )
                await conn.execute(
                    "SELECT setval(pg_get_serial_sequence('orders', 'id'), $1)", orders
                )
            # what autovacuum would have done by now, and not in the middle of the timed pass
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
    filled.seconds = time.perf_counter() - started
    return filled


def seed(payture: PaytureServer, filled: Filled) -> None:
    """The due Payture orders as the emulator holds them (Init made them; the page paid some)."""
    payture.reset()
    _, amount, _ = GOODS["payture"]
    for payment_id in filled.charged:
        payture.orders[payment_id] = PaytureOrder(payment_id, amount, state="Charged")
    for payment_id in filled.new:
        payture.orders[payment_id] = PaytureOrder(payment_id, amount)


# --- what a pass asks the database ----------------------------------------------------------


@dataclass
class Statement:
    sql: str
    args: tuple[Any, ...] = ()


_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b|\$\d+")
_QUERIES = ("SELECT", "UPDATE", "INSERT", "DELETE", "WITH")
OURS = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN)\s+(?:orders|order_items|audit|inbound_events|outbox|refunds|"
    r"unexpected_payments|saved_cards|user_prefs)\b",
    re.IGNORECASE,
)


def shape(sql: str) -> str:
    """A statement with its values taken out: one line per query of the code."""
    return " ".join(_LITERALS.sub("?", sql).split())


@contextlib.asynccontextmanager
async def traced(storage: Any) -> AsyncIterator[list[Statement]]:
    """Every query the storage runs meanwhile. SQLite: the connection's trace callback (values
    inlined); PostgreSQL: a query logger on every pooled connection (the pool is opened full)."""
    seen: list[Statement] = []
    if hasattr(storage, "_pool"):
        pool = storage._pool
        cons = [holder._con for holder in pool._holders if holder._con is not None]

        def log(query: Any) -> None:
            seen.append(Statement(query.query, tuple(query.args or ())))

        for con in cons:
            con.add_query_logger(log)
        try:
            yield seen
        finally:
            for con in cons:
                con.remove_query_logger(log)
    else:
        await storage._conn.set_trace_callback(lambda sql: seen.append(Statement(sql)))
        try:
            yield seen
        finally:
            await storage._conn.set_trace_callback(None)


def queries(seen: list[Statement]) -> dict[str, Statement]:
    """One statement of each shape, in the order first run: ours only (not BEGIN, COMMIT,
    PRAGMA, asyncpg's type introspection or its pool's reset script)."""
    found: dict[str, Statement] = {}
    for statement in seen:
        sql = statement.sql.strip()
        if sql.upper().startswith(_QUERIES) and OURS.search(sql):
            found.setdefault(shape(statement.sql), statement)
    return found


async def plans(
    database_url: str, found: dict[str, Statement], *, small: bool = False
) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN (SQLite) or EXPLAIN (PostgreSQL) of each statement. SQLite keeps no
    statistics here, so its plan is the same on a small table as on a big one. PostgreSQL's
    depends on the table's size: for a `small` one, sequential scans, hash and merge joins are
    turned off, as on a small table it would rather read everything than use an index; what
    is left is the index plan it takes on a big table (`--plans` shows those, at 100,000)."""
    result: dict[str, list[str]] = {}
    if database_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as db:
            for key, statement in found.items():
                lines = db.execute(f"EXPLAIN QUERY PLAN {statement.sql}").fetchall()
                result[key] = [line[3] for line in lines]
        return result
    conn = await asyncpg.connect(database_url)
    try:
        if small:
            for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
                await conn.execute(f"SET {setting} = off")
        for key, statement in found.items():
            lines = await conn.fetch(f"EXPLAIN {statement.sql}", *statement.args)
            result[key] = [line[0].strip() for line in lines]
    finally:
        await conn.close()
    return result


_SQLITE_SCAN = re.compile(r"^SCAN (\w+)")
_SQLITE_SORT = "USE TEMP B-TREE FOR ORDER BY"
_PG_SEQ = re.compile(r"Seq Scan on (\w+)")
_PG_INDEX = re.compile(r"Index (?:Only )?Scan(?: Backward)? using (\w+) on (\w+)")


def full_scans(plan: list[str]) -> list[str]:
    """The lines of a plan that read a whole table (or a whole index of one): SQLite's `SCAN t`
    (with or without an index; `SEARCH` is the index lookup) or its sort of everything the
    lookup matched before the LIMIT (the index did not give the order), PostgreSQL's Seq Scan,
    or an index scan with no condition on the index (it walks the index end to end)."""
    bad = [
        line
        for line in plan
        if (_SQLITE_SCAN.match(line) and not _partial(line.rpartition(" INDEX ")[2]))
        or _PG_SEQ.search(line)
        or line.startswith(_SQLITE_SORT)
    ]
    for n, line in enumerate(plan):
        match = _PG_INDEX.search(line)
        if not match:
            continue
        details = []
        for below in plan[n + 1 :]:
            if _PG_INDEX.search(below) or "->" in below:
                break
            details.append(below)
        if not any(d.startswith("Index Cond") for d in details) and not _partial(match[1]):
            bad.append(line)
    return bad


# Partial indexes hold only the rows a query wants (their WHERE is the condition): reading one
# whole is reading only those rows (SQLite says `SCAN t USING INDEX i` for it).
PARTIAL = {"inbound_unprocessed", "outbox_pending", "refunds_pending", "orders_due"}


def _partial(index: str) -> bool:
    return index in PARTIAL


# --- the pass, timed ------------------------------------------------------------------------


@dataclass
class Pass:
    seconds: float
    checked: int
    passes: int
    paid: int
    seen: list[Statement]


async def sweep(
    servers: dict[str, FakeServer], database_url: str, now: datetime, *, trace: bool = False
) -> Pass:
    """The real app's sweep over the filled database until no order is due."""
    settings = sandbox_settings(
        *servers.values(),
        database_url=database_url,
        sweep_every=3600,
        first_check_after=3600,
    )
    app = BotApp(settings, background=False)
    parts = await app.start()
    try:
        if not database_url.startswith("sqlite"):
            # every pooled connection open, so the trace sees all of them
            await _fill_pool(parts.storage)
        await asyncio.gather(*app._tasks[:1])  # the start-up replay, off the timed path
        reconciler = parts.reconciler
        async with traced(parts.storage) if trace else _nothing() as seen:
            started = time.perf_counter()
            checked = passes = 0
            while True:
                done = await reconciler.run_once(now=now)
                passes += 1
                checked += done
                if not done:
                    break
            seconds = time.perf_counter() - started
    finally:
        await app.stop()
    return Pass(seconds, checked, passes, await _count_paid(database_url), list(seen or []))


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield None


async def _fill_pool(storage: Any) -> None:
    pool = storage._pool
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(pool._maxsize):
            await stack.enter_async_context(pool.acquire())


async def _count_paid(database_url: str) -> int:
    sql = "SELECT COUNT(*) FROM orders WHERE state = 'paid'"
    if database_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as db:
            return db.execute(sql).fetchone()[0]
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


# --- the report -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(backend: str, postgres: str, folder: Path, name: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder}/{name}.db"
        return
    async with postgres_schema(postgres) as url:
        yield url


async def one(
    servers: dict[str, FakeServer],
    url: str,
    orders: int,
    due: int,
    *,
    trace: bool = False,
    now: datetime | None = None,
) -> tuple[Filled, Pass]:
    """A fresh fill, the emulator seeded, one sweep until nothing is due."""
    now = now or datetime.now(UTC)
    filled = await fill(url, orders, due, now)
    payture = servers["payture"]
    assert isinstance(payture, PaytureServer)
    seed(payture, filled)
    done = await sweep(servers, url, now, trace=trace)
    assert done.checked == due, (done.checked, due)
    assert done.paid == len(filled.charged), (done.paid, len(filled.charged))
    return filled, done


async def main(
    sizes: list[int], due: int, rounds: int, backends: list[str], postgres: str, show: bool
) -> None:
    servers = await registry.start_all()
    per_order: dict[tuple[str, int], list[float]] = {}
    fills: dict[tuple[str, int], list[float]] = {}
    traced_plans: dict[str, dict[str, list[str]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds):
                for backend in backends:
                    for orders in sizes if r % 2 == 0 else sizes[::-1]:
                        name = f"{backend}-{orders}-{r}"
                        last = show and r == rounds - 1 and orders == max(sizes)
                        async with database(backend, postgres, Path(tmp), name) as url:
                            filled, done = await one(servers, url, orders, due, trace=last)
                            if last:
                                traced_plans[backend] = await plans(url, queries(done.seen))
                        per_order.setdefault((backend, orders), []).append(
                            done.seconds / done.checked
                        )
                        fills.setdefault((backend, orders), []).append(filled.seconds)
    finally:
        await registry.stop_all(servers)
    report(sizes, due, rounds, backends, per_order, fills, traced_plans)


def report(
    sizes: list[int],
    due: int,
    rounds: int,
    backends: list[str],
    per_order: dict[tuple[str, int], list[float]],
    fills: dict[tuple[str, int], list[float]],
    traced_plans: dict[str, dict[str, list[str]]],
) -> None:
    med = statistics.median
    print(f"## Sweep, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({rounds} rounds, medians)\n")
    print(
        f"| backend | orders awaiting | due | ms per due order, median (rounds) | vs {sizes[0]:,} "
        "| fill (s) |"
    )
    print("|---|---|---|---|---|---|")
    for backend in backends:
        base = med(per_order[(backend, sizes[0])])
        for orders in sizes:
            values = per_order[(backend, orders)]
            each = " / ".join(f"{v * 1000:.2f}" for v in values)
            print(
                f"| {backend} | {orders:,} | {due} | {med(values) * 1000:.2f} ({each}) | "
                f"{med(values) / base:.2f}x | {med(fills[(backend, orders)]):.1f} |"
            )
    for backend, found in traced_plans.items():
        print(f"\n### Every query of a pass on {backend}, {max(sizes):,} orders\n")
        for sql, plan in found.items():
            flag = " **full scan**" if full_scans(plan) else ""
            print(f"- `{sql[:160]}`{flag}")
            for line in plan:
                print(f"    - {line}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--due", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--plans", action="store_true", help="show every query's plan")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse()
    asyncio.run(
        main(
            [int(s) for s in args.sizes.split(",")],
            args.due,
            args.rounds,
            args.backends.split(","),
            args.postgres,
            args.plans,
        )
    )
