"""The baseline: an idle aiogram + aiohttp app (Bot, Dispatcher, a web server on loopback),
nothing of ours. Prints 'ready <rss_kib>' and waits for stdin to close. With IDLE_GC=like-ours
in the environment it starts as our bot does (the collector off until it serves, then frozen),
to show how much of our start-up figure that alone accounts for."""

from __future__ import annotations

import gc
import os

LIKE_OURS = os.environ.get("IDLE_GC") == "like-ours"
if LIKE_OURS:
    gc.disable()

import asyncio  # noqa: E402
import sys  # noqa: E402

from aiogram import Bot, Dispatcher, Router  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.rss import rss_kib  # noqa: E402


async def main() -> None:
    bot = Bot("123456:TEST-TOKEN")
    dp = Dispatcher()
    dp.include_router(Router())
    runner = web.AppRunner(web.Application())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"ready {rss_kib()}", flush=True)
    if LIKE_OURS:
        from bot.__main__ import serving  # the standard library only: nothing of the bot's

        serving()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()
    await bot.session.close()


if __name__ == "__main__":
    asyncio.run(main())
