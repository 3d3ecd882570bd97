"""`python -m bot run` runs the bot; `python -m bot demo` plays the whole flow on the sandbox."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the bot with settings from the environment and .env")
    demo = sub.add_parser("demo", help="the whole flow against the local sandbox, then exit")
    demo.add_argument("--verbose", action="store_true", help="show the bot's logs")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from bot.demo import run_demo

        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
        return asyncio.run(run_demo())
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(run())


async def run() -> int:
    from bot.app import BotApp, StartupError
    from bot.wiring import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with BotApp(settings):
            await stop.wait()
    except StartupError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
