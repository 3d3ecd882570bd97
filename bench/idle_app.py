"""The baseline: an idle aiogram + aiohttp app (Bot, Dispatcher, a web server on loopback),
nothing of ours. Prints 'ready <rss_kib>' and waits for stdin to close."""

from __future__ import annotations

import asyncio
import sys

from aiogram import Bot, Dispatcher, Router
from aiohttp import web

from bench.rss import rss_kib


async def main() -> None:
    bot = Bot("123456:TEST-TOKEN")
    dp = Dispatcher()
    dp.include_router(Router())
    runner = web.AppRunner(web.Application())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"ready {rss_kib()}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()
    await bot.session.close()


if __name__ == "__main__":
    asyncio.run(main())
