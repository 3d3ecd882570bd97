"""Benchmarks, each reported as a ratio against a baseline measured in the same run (this
machine is shared and noisy: absolute figures move 20-50% between runs).

1. start-up: our bot (storage, all six providers, catalog, getMe, web server, polling) against
   an idle aiogram + aiohttp app, both as fresh processes, wall time until they serve, on
   SQLite and on PostgreSQL (each migrated beforehand). Target <= 1.2x.
2. memory: RSS of our bot with 100k orders in its database (bench/sweep.py's bulk fill: every
   provider, all awaiting payment, a hundred due), after a sweep, /orders-style reads, an
   outbox pass and the figures, against the idle app. Target <= idle + 40 MB.
3. provider calls: the same Redoya verify call through httpx's default transport, through
   httpx-aiohttp (what we use) and through a bare aiohttp session.

Run: `python -m bench.run [--orders 100000] [--rounds 5] [--database sqlite|postgres|both]`;
prints a Markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from bench.reliability.harness import postgres_schema
from bench.sweep import fill, migrate, seed
from bot.demo import DEMO_CATALOG
from sandbox import registry
from sandbox.payture import PaytureServer
from sandbox.redoya import RedoyaServer

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DUE = 100  # due orders in the filled database: the sweep of the RSS run checks them


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


async def databases(
    stack: contextlib.AsyncExitStack, names: list[str], rounds: int, tmp: str
) -> dict[str, tuple[str, list[str]]]:
    """For each backend: an empty database, and a filled one for each round (a round's sweep
    settles the due orders of the one it reads)."""
    found = {}
    for name in names:
        if name == "sqlite":
            empty = f"sqlite:///{tmp}/empty.db"
            full = [f"sqlite:///{tmp}/full-{n}.db" for n in range(rounds)]
        else:
            empty = await stack.enter_async_context(postgres_schema(POSTGRES))
            full = [
                await stack.enter_async_context(postgres_schema(POSTGRES)) for _ in range(rounds)
            ]
        found[name] = empty, full
    return found


async def main(orders: int, rounds: int, backends: list[str]) -> None:
    servers = await registry.start_all()
    redoya, payture = servers["redoya"], servers["payture"]
    assert isinstance(redoya, RedoyaServer)
    assert isinstance(payture, PaytureServer)
    sandbox = registry.env_of(servers)
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        urls = await databases(stack, backends, rounds, tmp)
        filled = {}
        for name, (empty, fulls) in urls.items():
            await migrate(empty)  # start-up is timed without the first migration
            for full in fulls:
                filled[name] = await fill(full, orders, DUE, datetime.now(UTC))
        seed(payture, filled[backends[0]])  # the same due payments in every filled database

        idle_t: list[float] = []
        idle_rss: list[int] = []
        idle_like_t: list[float] = []  # the idle app started as ours is (bench/idle_app.py)
        ours_t: dict[str, list[float]] = {name: [] for name in urls}
        ours_rss: dict[str, list[int]] = {name: [] for name in urls}
        ours_empty_rss: dict[str, list[int]] = {name: [] for name in urls}
        for turn in range(rounds):
            t, rss, proc = await spawn_until("bench.idle_app", env_for(sandbox, ""), "ready")
            idle_t.append(t)
            idle_rss.append(rss)
            await finish(proc)
            env = env_for(sandbox, "") | {"IDLE_GC": "like-ours"}
            t, _, proc = await spawn_until("bench.idle_app", env, "ready")
            idle_like_t.append(t)
            await finish(proc)
            for name, (empty, fulls) in urls.items():
                t, rss, proc = await spawn_until("bench.our_app", env_for(sandbox, empty), "loaded")
                ours_t[name].append(t)
                ours_empty_rss[name].append(rss)
                await finish(proc)
                env = env_for(sandbox, fulls[turn])
                _, rss, proc = await spawn_until("bench.our_app", env, "loaded")
                ours_rss[name].append(rss)
                await finish(proc)
        speeds = await transports(redoya, 2000, 20)
    await registry.stop_all(servers)

    med = statistics.median
    print(f"## Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({rounds} rounds, medians)\n")
    print("| measure | baseline (idle aiogram+aiohttp) | ours | ratio / diff | target |")
    print("|---|---|---|---|---|")
    for name in urls:
        print(
            f"| start-up to serving, {name} | {med(idle_t):.2f} s | {med(ours_t[name]):.2f} s | "
            f"{med(ours_t[name]) / med(idle_t):.2f}x | <= 1.2x |"
        )
        print(
            f"| start-up, {name}, against the idle app started as ours is | "
            f"{med(idle_like_t):.2f} s | {med(ours_t[name]):.2f} s | "
            f"{med(ours_t[name]) / med(idle_like_t):.2f}x | |"
        )
        print(
            f"| RSS, ours with {orders:,} orders, {name} | {med(idle_rss) / 1024:.1f} MB | "
            f"{med(ours_rss[name]) / 1024:.1f} MB | "
            f"+{(med(ours_rss[name]) - med(idle_rss)) / 1024:.1f} MB | <= +40 MB |"
        )
        print(
            f"| RSS, ours with an empty database, {name} | {med(idle_rss) / 1024:.1f} MB | "
            f"{med(ours_empty_rss[name]) / 1024:.1f} MB | "
            f"+{(med(ours_empty_rss[name]) - med(idle_rss)) / 1024:.1f} MB | |"
        )
    fills = ", ".join(f"{name} {f.seconds:.0f} s" for name, f in filled.items())
    print(f"\n(filling {orders:,} orders by bulk SQL, a database a round: {fills})\n")
    fastest = max(speeds.values())
    print("| HTTP stack for provider calls (2000 calls, 20 in flight) | calls/s | vs fastest |")
    print("|---|---|---|")
    for name, speed in speeds.items():
        print(f"| {name} | {speed:.0f} | {speed / fastest:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    asyncio.run(main(args.orders, args.rounds, backends))
