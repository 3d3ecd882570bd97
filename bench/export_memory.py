"""Peak memory of /export's CSV writer: exporting 100,000 orders against exporting 1,000 from
the same database, in one process. Streaming (keyset batches into a file) keeps the ratio near
1x; holding the result would make it near 100x.

    python -m bench.export_memory [--orders 100000] [--small 1000]

Peak is tracemalloc's (every Python allocation, the aiosqlite thread's included), reset before
each export. The database is a SQLite file filled with plain INSERTs after the migrations ran
(the Storage API would take minutes for 100,000 orders and measures nothing here).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.export import write_csv
from storage import storage_from_url

ZONE = ZoneInfo("Europe/Istanbul")
START = datetime(2026, 1, 1, tzinfo=UTC)


def stamp(n: int) -> str:
    return (START + timedelta(seconds=n)).isoformat(timespec="microseconds")


def fill(path: Path, orders: int) -> None:
    """`orders` orders a second apart, two items each, nine in ten paid, with a buyer and a
    delivery address."""
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO orders (id, user_id, chat_id, provider, amount, currency, state, token, "
        "locale, description, created_at, updated_at, provider_payment_id, paid_at, "
        "paid_amount, buyer_name, buyer_username, delivery_name, delivery_phone, "
        "delivery_address, delivery_comment, search_text) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            (
                n,
                1 + n % 10_000,
                1 + n % 10_000,
                "redoya",
                23500,
                "TRY",
                "paid" if n % 10 else "awaiting_payment",
                f"bench-{n}",
                "tr",
                "",
                stamp(n),
                stamp(n),
                f"P{n:015d}" if n % 10 else None,
                stamp(n + 5) if n % 10 else None,
                23500 if n % 10 else None,
                f"Customer {n}",
                f"user{n}",
                f"Customer {n}",
                "+905551234567",
                f"Moda Cad. {n}, Kadıköy, İstanbul",
                "ring twice",
                f"customer {n}",
            )
            for n in range(1, orders + 1)
        ),
    )
    db.executemany(
        "INSERT INTO order_items VALUES (?,?,?,?,?,?)",
        (
            row
            for n in range(1, orders + 1)
            for row in (
                (n, 0, "turkish-coffee", "Turkish coffee 250 g", 1, 15000),
                (n, 1, "cezve", "Cezve, copper", 1, 8500),
            )
        ),
    )
    db.commit()
    db.close()


async def export(url: str, since: datetime | None) -> tuple[int, int, float, int]:
    """(orders written, peak bytes, seconds, CSV bytes) of one export into a temporary file."""
    storage = storage_from_url(url)
    await storage.open()
    try:
        with tempfile.TemporaryFile("w+", encoding="utf-8-sig", newline="") as out:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            count = await write_csv(storage.export_orders(since, batch=500), out, ZONE)
            seconds = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] - base
            size = out.tell()
    finally:
        await storage.close()
    return count, peak, seconds, size


async def main(orders: int, small: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        url = f"sqlite:///{path}"
        storage = storage_from_url(url)
        await storage.open()  # the migrations
        await storage.close()
        fill(path, orders)
        tracemalloc.start()
        results = {
            small: await export(url, START + timedelta(seconds=orders - small + 1)),
            orders: await export(url, None),
        }
        tracemalloc.stop()
    print("| orders exported | peak traced memory | time | CSV size |")
    print("|---|---|---|---|")
    for count, peak, seconds, size in results.values():
        print(f"| {count:,} | {peak / 1e6:.2f} MB | {seconds:.1f} s | {size / 1e6:.1f} MB |")
    ratio = results[orders][1] / results[small][1]
    print(f"\npeak memory, {orders:,} against {small:,} orders: {ratio:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.small))
