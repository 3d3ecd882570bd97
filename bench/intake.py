"""Targets 1, 2 and 8 of the performance issue: the payment path against its anchors.

`python -m bench.intake [--database sqlite|postgres] [--rounds 3] [--seconds 10] [--orders 2000]`

Every figure is measured against an anchor in the same run, the anchors and ours interleaved
round by round, each a fresh process on loopback, the load from wrk (`-t2 -c50`):

- **Intake** (target 1): Payture callbacks, each a new inbox event (a new TransactionDate) about
  one of 50 paid orders, for `--seconds`, against `bench.anchors bare` (an aiohttp handler that
  reads the body) and `bench.anchors insert` (one insert committed per request); ours is
  `python -m bot run` with all six providers enabled. Requests a second, wrk's p99.
- **Confirm** (target 2): `--orders` distinct awaiting Payture orders, paid on the emulator while
  no bot ran, one callback each; the rate is orders over the time from wrk's start to the last
  order paid in the database. The anchor is `bench.anchors confirm` (the same work written
  plainly: find, store, answer, then the status call with the same HTTP client, the
  compare-and-set and the outbox row in one transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.reliability.harness import (
    Bot,
    Placed,
    Shop,
    emulators,
    free_port,
    postgres_schema,
    rows,
)
from bot.app import BotApp
from bot.core.checkout import CartLine
from bot.demo import sandbox_settings

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql://postgres@127.0.0.1:5432/test"
HEADERS = '{["Content-Type"] = "application/x-www-form-urlencoded"}'


@dataclass
class Load:
    """What wrk measured."""

    rate: float  # requests a second
    p99_ms: float
    errors: int


# --- placing Payture orders -------------------------------------------------------------


async def place(shop: Shop, n: int, http: aiohttp.ClientSession) -> list[Placed]:
    """N Payture orders through the checkout core (as the chat places them), paid on the
    emulator while no bot runs: their notifications are lost, wrk sends them."""
    settings = sandbox_settings(
        *shop.servers.values(), database_url=shop.database_url, first_check_after=3600
    )
    placed: list[Placed] = []
    gate = asyncio.Semaphore(16)
    async with BotApp(settings) as parts:
        product = parts.catalog.product("ivan-chai")
        assert product is not None
        price = next(p for p in product.prices if p.currency != "XTR")
        line = CartLine(product.id, product.name, 1, price, sku=product.sku)

        async def one(user_id: int) -> Placed:
            async with gate:
                order = await parts.checkout.place_order(
                    user_id=user_id, chat_id=user_id, lines=[line], provider_name="payture"
                )
            payment_id = order.provider_payment_id or ""
            return Placed(
                order.id, "payture", user_id, order.token, order.pay_url or "", payment_id, ""
            )

        first = 300_000 + len(shop.orders)
        placed = list(await asyncio.gather(*(one(first + i) for i in range(n))))
    payture = shop.servers["payture"]
    for order in placed:
        body = {"url": order.pay_url, "outcome": "paid"}
        async with http.post(f"{payture.url}/sandbox/pay", json=body) as answer:
            assert answer.status == 200, await answer.text()
    await payture.settle()
    shop.orders += placed
    return placed


# --- wrk --------------------------------------------------------------------------------


def callback(payment_id: str, amount: int, when: str) -> str:
    return (
        f"Notification=EnginePaySuccess&OrderId={payment_id}&Success=True&Amount={amount}"
        f"&ErrCode=NONE&TransactionDate={when}"
    )


def script(orders: list[Placed], amounts: dict[str, int], tag: str) -> str:
    """A wrk script: Payture's EnginePaySuccess for the orders, round and round, each with a
    TransactionDate of its own, so that every request is a new inbox event."""
    ids = ", ".join(f'"{o.payment_id}"' for o in orders)
    sums = ", ".join(str(amounts[o.payment_id]) for o in orders)
    return f"""
local ids = {{{ids}}}
local sums = {{{sums}}}
local count, threads = 0, 0
tid = 0  -- each thread's own, set by setup
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function request()
  local i = count % #ids + 1
  count = count + 1
  local body = "Notification=EnginePaySuccess&OrderId=" .. ids[i] .. "&Success=True&Amount="
    .. sums[i] .. "&ErrCode=NONE&TransactionDate={tag}-" .. tid .. "-" .. count
  return wrk.format("POST", "/callbacks/payture", {HEADERS}, body)
end
"""


async def send_once(
    url: str, orders: list[Placed], amounts: dict[str, int], tag: str, senders: int = 50
) -> None:
    """Each order's callback exactly once, from 50 senders at a time (wrk cannot stop after a
    list), every one answered 200."""
    queue = iter(orders)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=senders)) as http:

        async def sender() -> None:
            for order in queue:
                body = callback(order.payment_id, amounts[order.payment_id], tag)
                async with http.post(f"{url}/callbacks/payture", data=body, headers=headers) as a:
                    assert a.status == 200, (a.status, await a.text())

        await asyncio.gather(*(sender() for _ in range(senders)))


async def wrk(url: str, lua: str, seconds: float, workdir: Path, warmup: float = 2) -> Load:
    """wrk's figures for `seconds`, after `warmup` seconds of the same load unmeasured (a new
    process's first requests open its pools and fill its caches)."""
    path = workdir / f"load-{time.monotonic_ns()}.lua"
    path.write_text(lua)
    if warmup:
        await wrk(url, lua.replace("TransactionDate=", "TransactionDate=w"), warmup, workdir, 0)
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t2", "-c50", f"-d{int(seconds)}s", "--latency", "-s", str(path), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode()
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk: {out}")
    rate = float(found.group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: .*", out)
    if socket_errors:
        print("   wrk:", socket_errors.group(0), file=sys.stderr)
    return Load(
        rate,
        float(p99.group(1)) * scale[p99.group(2)] if p99 else 0.0,
        int(errors.group(1)) if errors else 0,
    )


# --- the servers ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def anchor(kind: str, workdir: Path, database: str, *extra: str) -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.anchors", kind, "--port", str(port),
        "--database", database, *extra,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"serving"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


@contextlib.asynccontextmanager
async def ours(shop: Shop, http: aiohttp.ClientSession) -> AsyncIterator[Bot]:
    bot = Bot(shop, FIRST_CHECK_AFTER="3600", SWEEP_EVERY="3600", LOG_LEVEL="WARNING")
    await bot.start(http)
    try:
        yield bot
    finally:
        await bot.stop()


async def paid_count(database: str, ids: list[int]) -> int:
    listed = ",".join(str(i) for i in ids)
    sql = f"SELECT count(*) FROM orders WHERE state = 'paid' AND id IN ({listed})"  # noqa: S608 - ints
    return (await rows(database, sql))[0][0]


async def until_paid(database: str, ids: list[int], started: float, limit: float = 120) -> float:
    while await paid_count(database, ids) < len(ids):
        if time.monotonic() - started > limit:
            raise RuntimeError(f"not all {len(ids)} orders paid within {limit} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def unsent_dropped(database: str) -> None:
    """The messages the confirmed orders left in the outbox, dropped. The notifier sends them
    at Telegram's pace (the merchant's chat: one every 3 s), so the next round's bot would
    still be sending them while its intake is measured, and the intake alone is the target."""
    await rows(database, "DELETE FROM outbox WHERE sent_at IS NULL")


@contextlib.asynccontextmanager
async def profiled(bot: Bot, folder: str, name: str) -> AsyncIterator[None]:
    """py-spy over the bot process while the block runs (`--profile DIR`): raw stacks, for
    `python -m bench.stacks`. It pauses the process for each sample (about 1% at this rate):
    stacks read without pausing come out torn, cut from the event loop they ran in."""
    if not folder or bot.proc is None:
        yield
        return
    out = Path(folder) / f"{name}-{bot.proc.pid}.txt"
    spy = await asyncio.create_subprocess_exec(
        "py-spy", "record", "--pid", str(bot.proc.pid), "--format", "raw", "--rate", "200",
        "--output", str(out), "--threads",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        await spy.wait()


# --- the run ----------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="intake-")))
        servers = await stack.enter_async_context(emulators())
        if args.database == "postgres":
            database = await stack.enter_async_context(postgres_schema(PG))
            anchor_db = await stack.enter_async_context(postgres_schema(PG))
        else:
            database = f"sqlite:///{workdir / 'bot.db'}"
            anchor_db = f"sqlite:///{workdir / 'anchor.db'}"
        shop = Shop(servers, database, workdir)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        payture = servers["payture"]
        started = time.monotonic()
        hot = await place(shop, 50, http)  # the intake's paid orders
        batches = [await place(shop, args.orders, http) for _ in range(args.rounds)]
        print(f"placed {len(shop.orders)} orders in {time.monotonic() - started:.0f} s")
        amounts = {o.order_id: o.amount for o in payture.orders.values()}
        async with ours(shop, http) as bot:  # paid in our database too, before any intake
            await send_once(bot.url, hot, amounts, "settle")
            await until_paid(database, [o.id for o in hot], time.monotonic())
        await unsent_dropped(database)
        results: dict[str, list[float]] = {}
        lat: dict[str, list[float]] = {}

        def keep(name: str, load: Load | float) -> None:
            rate = load.rate if isinstance(load, Load) else load
            results.setdefault(name, []).append(rate)
            if isinstance(load, Load):
                lat.setdefault(name, []).append(load.p99_ms)
                if load.errors:
                    print(f"   {name}: {load.errors} non-2xx answers", file=sys.stderr)

        for n in range(args.rounds):
            tag = f"r{n}-{time.time_ns()}"
            async with anchor("bare", workdir, anchor_db) as url:
                keep(
                    "bare",
                    await wrk(url, script(hot, amounts, tag), args.seconds, workdir),
                )
            async with anchor("insert", workdir, anchor_db) as url:
                keep(
                    "insert",
                    await wrk(url, script(hot, amounts, tag), args.seconds, workdir),
                )
            async with ours(shop, http) as bot:
                async with profiled(bot, args.profile, "intake"):
                    keep(
                        "ours intake",
                        await wrk(bot.url, script(hot, amounts, tag), args.seconds, workdir),
                    )
                batch = batches[n]
                begun = time.monotonic()
                async with profiled(bot, args.profile, "confirm"):
                    await send_once(bot.url, batch, amounts, tag)
                    took = await until_paid(database, [o.id for o in batch], begun)
                keep("ours confirm", len(batch) / took)
            await unsent_dropped(database)
            orders_file = workdir / "orders.tsv"
            orders_file.write_text(
                "".join(f"{o.id}\t{o.payment_id}\t{amounts[o.payment_id]}\n" for o in batch)
            )
            async with anchor(
                "confirm", workdir, anchor_db, "--orders", str(orders_file),
                "--payture", payture.url, "--key", payture.key,
            ) as url:  # fmt: skip
                begun = time.monotonic()
                await send_once(url, batch, amounts, tag)
                keep(
                    "anchor confirm",
                    len(batch) / await until_paid(anchor_db, [o.id for o in batch], begun),
                )
            print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in results.items()))
        report(args, results, lat)


def report(
    args: argparse.Namespace, results: dict[str, list[float]], lat: dict[str, list[float]]
) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{args.database}, {args.rounds} rounds, medians (wrk -t2 -c50 -d{args.seconds}s):")
    print("| measure | per round | median | p99 (median) |")
    print("|---|---|---|---|")
    for name, values in results.items():
        per = " / ".join(f"{v:.0f}" for v in values)
        p99 = f"{statistics.median(lat[name]):.1f} ms" if name in lat else ""
        print(f"| {name} | {per} | {med[name]:.0f}/s | {p99} |")
    print(f"\nintake vs bare: {med['ours intake'] / med['bare']:.2f}x (target >= 0.3x)")
    print(f"intake vs insert: {med['ours intake'] / med['insert']:.2f}x")
    print(f"confirm vs anchor: {med['ours confirm'] / med['anchor confirm']:.2f}x (target >= 0.8x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument(
        "--profile",
        default="",
        help="a folder for py-spy's stacks of ours (it slows ours: the figures of a profiled "
        "run are not comparable)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
