"""Our bot, started for real against the sandbox whose URLs come in the environment; prints
'ready <rss_kib>' once it serves, then (with an order-filled database) 'loaded <rss_kib>' after
a reconcile sweep, /orders-style reads and an outbox pass. Waits for stdin to close."""

from __future__ import annotations

import gc

gc.disable()  # as `python -m bot run` starts (bot/__main__.py)

import asyncio  # noqa: E402
import sys  # noqa: E402

from bench.rss import rss_kib  # noqa: E402
from bot.__main__ import serving  # noqa: E402
from bot.app import BotApp  # noqa: E402
from bot.wiring import load_settings  # noqa: E402


async def main() -> None:
    settings = load_settings()  # from the environment the runner sets
    async with BotApp(settings) as parts:
        print(f"ready {rss_kib()}", flush=True)
        serving()  # after the server is up, as in `python -m bot run`
        await parts.reconciler.run_once()
        for user_id in range(1, 200):
            await parts.checkout.orders_of(user_id, limit=10)
        await parts.notifier.flush()
        await parts.checkout.figures(36_500)
        print(f"loaded {rss_kib()}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
