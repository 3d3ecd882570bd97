"""`python -m bot run` runs the bot; `python -m bot check` says what the settings and the
catalog set up and what is wrong; `python -m bot demo` plays the whole flow on the sandbox."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the bot with settings from the environment and .env")
    sub.add_parser(
        "check", help="check the settings, the catalog and what they reach; exit 1 if wrong"
    )
    demo = sub.add_parser("demo", help="the whole flow against the local sandbox, then exit")
    demo.add_argument("--verbose", action="store_true", help="show the bot's logs")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from bot.demo import run_demo

        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
        return asyncio.run(run_demo())
    if args.command == "check":
        from bot.check import report, run_check

        logging.basicConfig(level=logging.ERROR)
        return report(asyncio.run(run_check()), sys.stdout)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    gc.disable()  # start-up makes tens of thousands of objects that live as long as the process
    return asyncio.run(run())


async def run() -> int:
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
    return await serve(settings, stop, on_serving=serving)


async def serve(
    settings: Settings, stop: asyncio.Event, on_serving: Callable[[], None] = lambda: None
) -> int:
    """Run until `stop` is set (0), or until the bot can no longer serve: another process took
    its updates (1); a start that cannot happen says why (2)."""
    from bot.app import BotApp, StartupError

    app = BotApp(settings)
    try:
        async with app:
            on_serving()
            ended = [asyncio.ensure_future(event.wait()) for event in (stop, app.failed)]
            await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
            for waiter in ended:
                waiter.cancel()
    except StartupError as exc:
        for problem in exc.problems:
            print(f"cannot start: {problem}", file=sys.stderr)
        return 2
    if app.failure:
        print(f"stopped: {app.failure}", file=sys.stderr)
        return 1
    return 0


def serving() -> None:
    """Start-up is done: its garbage is collected once, what it keeps (modules, models, the
    catalog, the routers) is frozen out of the collector's sight, and the collector runs again
    over what the bot makes from here on."""
    gc.collect()
    gc.freeze()
    gc.enable()


if __name__ == "__main__":
    sys.exit(main())
