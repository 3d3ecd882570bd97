"""`python -m sandbox`: serve the emulators on loopback for manual use and print the `.env`
lines that point a bot at them. Stop with Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from sandbox.registry import env_of, start_all, stop_all


async def serve(base_port: int) -> None:
    servers = await start_all(base_port=base_port)
    try:
        print("# sandbox running; put these lines in .env, then `python -m bot run`:")
        for key, value in env_of(servers).items():
            print(f"{key}={value}")
        print("#")
        for server in servers.values():
            for hint in server.hints():
                print(hint)
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await stop_all(servers)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=8081, help="first of the emulators' ports (0: any free)"
    )
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
