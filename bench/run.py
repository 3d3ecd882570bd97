"""Benchmarks, each reported as a ratio against a baseline measured in the same run (this
machine is shared and noisy: absolute figures move 20-50% between runs).

1. start-up: our bot (storage, providers, catalog, getMe, web server, polling) against an idle
   aiogram + aiohttp app, both as fresh processes, wall time until they serve. Target <= 1.2x.
2. memory: RSS of our bot with 100k orders in its database, after a sweep and reads, against
   the idle app. Target <= idle + 40 MB.
3. provider calls: the same Redoya verify call through httpx's default transport, through
   httpx-aiohttp (what we use) and through a bare aiohttp session.

Run: `python -m bench.run [--orders 100000] [--rounds 5]`; prints a Markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from bot.demo import DEMO_CATALOG
from money import Money
from sandbox import registry
from sandbox.redoya import RedoyaServer
from storage import storage_from_url
from storage.base import NewOrder, OrderItem, OrderState

ROOT = Path(__file__).resolve().parent.parent


async def spawn_until(module: str, env: dict[str, str], marker: str) -> tuple[float, int, object]:
    """Start `python -m module`, return (seconds until `marker` line, its RSS KiB, process)."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    elapsed, rss = 0.0, 0
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        if not line:
            raise RuntimeError(f"{module} exited before '{marker}'")
        if line.startswith("ready") and not elapsed:
            elapsed = time.perf_counter() - started
        if line.startswith(marker):
            rss = int(line.split()[1])
            break
    return elapsed, rss, proc


async def finish(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()


def env_for(sandbox: dict[str, str], database_url: str) -> dict[str, str]:
    """The process environment, less any provider settings of the caller's, plus the
    sandbox's .env lines and ours."""
    prefixes = tuple(f"{name.upper()}_" for name in registry.EMULATORS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return (
        env
        | sandbox
        | {
            "DATABASE_URL": database_url,
            "SWEEP_EVERY": "3600",
            "WEB_PORT": "0",
            "CATALOG_PATH": str(DEMO_CATALOG),
            "MERCHANT_CHAT_ID": "-1000001",
        }
    )


async def fill(database_url: str, orders: int) -> float:
    storage = storage_from_url(database_url)
    await storage.open()
    started = time.perf_counter()
    now = datetime.now(UTC)
    for n in range(orders):
        order = await storage.create_order(
            NewOrder(
                user_id=1 + n % 10_000,
                chat_id=1 + n % 10_000,
                provider="redoya",
                total=Money(15000, "TRY"),
                token=f"bench-{n}",
                items=[OrderItem("turkish-coffee", "Turkish coffee 250 g", 1, 15000)],
                description="Turkish coffee 250 g x1",
            )
        )
        if n % 10:  # nine in ten paid, the rest awaiting with a check due later
            await storage.set_checkout(
                order.id,
                pay_url="https://pay.example/x",
                provider_payment_id=f"P{n:015d}",
                expires_at=now + timedelta(days=1),
                next_check_at=now + timedelta(hours=1),
            )
            await storage.transition(
                order.id,
                OrderState.AWAITING_PAYMENT,
                OrderState.PAID,
                actor="bench",
                paid=Money(15000, "TRY"),
            )
    await storage.close()
    return time.perf_counter() - started


async def transports(redoya: RedoyaServer, calls: int, parallel: int) -> dict[str, float]:
    """Calls per second of one verify request through three HTTP stacks."""
    url = f"{redoya.url}/api/v1/order/verify/AAAAAAAAAAAAAAAA"
    body = {"identifier": redoya.identifier}
    results: dict[str, float] = {}

    async def drive(call) -> float:
        gate = asyncio.Semaphore(parallel)

        async def one() -> None:
            async with gate:
                await call()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(calls)))
        return calls / (time.perf_counter() - started)

    async with httpx.AsyncClient() as client:
        results["httpx default transport"] = await drive(lambda: client.post(url, json=body))
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        results["httpx + httpx-aiohttp (ours)"] = await drive(lambda: client.post(url, json=body))
    async with aiohttp.ClientSession() as session:

        async def bare() -> None:
            async with session.post(url, json=body) as response:
                await response.read()

        results["bare aiohttp"] = await drive(bare)
    return results


async def main(orders: int, rounds: int) -> None:
    servers = await registry.start_all()
    redoya = servers["redoya"]
    assert isinstance(redoya, RedoyaServer)
    sandbox = registry.env_of(servers)
    with tempfile.TemporaryDirectory() as tmp:
        empty_db = f"sqlite:///{tmp}/empty.db"
        full_db = f"sqlite:///{tmp}/full.db"
        base_env = env_for(sandbox, empty_db)
        full_env = env_for(sandbox, full_db)
        filled = await fill(full_db, orders)

        idle_t, ours_t, idle_rss, ours_rss = [], [], [], []
        for _ in range(rounds):
            t, rss, proc = await spawn_until("bench.idle_app", base_env, "ready")
            idle_t.append(t)
            idle_rss.append(rss)
            await finish(proc)
            t, _, proc = await spawn_until("bench.our_app", base_env, "loaded")
            ours_t.append(t)
            await finish(proc)
            _, rss, proc = await spawn_until("bench.our_app", full_env, "loaded")
            ours_rss.append(rss)
            await finish(proc)
        speeds = await transports(redoya, 2000, 20)
    await registry.stop_all(servers)

    med = statistics.median
    print(f"## Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({rounds} rounds, medians)\n")
    print("| measure | baseline (idle aiogram+aiohttp) | ours | ratio / diff | target |")
    print("|---|---|---|---|---|")
    print(
        f"| start-up to serving | {med(idle_t):.2f} s | {med(ours_t):.2f} s | "
        f"{med(ours_t) / med(idle_t):.2f}x | <= 1.2x |"
    )
    print(
        f"| RSS, ours with {orders:,} orders | {med(idle_rss) / 1024:.1f} MB | "
        f"{med(ours_rss) / 1024:.1f} MB | +{(med(ours_rss) - med(idle_rss)) / 1024:.1f} MB | "
        "<= +40 MB |"
    )
    print(f"\n(filling {orders:,} orders through the Storage API took {filled:.0f} s)\n")
    fastest = max(speeds.values())
    print("| HTTP stack for provider calls (2000 calls, 20 in flight) | calls/s | vs fastest |")
    print("|---|---|---|")
    for name, speed in speeds.items():
        print(f"| {name} | {speed:.0f} | {speed / fastest:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.rounds))
