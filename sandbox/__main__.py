"""`python -m sandbox`: serve the emulators on loopback for manual use and print the `.env`
lines that point a bot at them. Stop with Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from sandbox.payture import PaytureServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer


async def serve(base_port: int) -> None:
    def port(n):
        return base_port + n if base_port else 0

    telegram = TelegramServer(port=port(0))
    redoya = RedoyaServer(port=port(1))
    payture = PaytureServer(port=port(2))
    for server in (telegram, redoya, payture):
        await server.start()
    print("# sandbox running; put these lines in .env, then `python -m bot run`:")
    print(f"BOT_TOKEN={telegram.token}")
    print(f"TELEGRAM_API_URL={telegram.url}")
    print(f"REDOYA_SECRET={redoya.secret}")
    print(f"REDOYA_IDENTIFIER={redoya.identifier}")
    print(f"REDOYA_API_URL={redoya.url}")
    print(f"REDOYA_PAY_URL={redoya.url}")
    print(f"PAYTURE_URL={payture.url}")
    print(f"PAYTURE_KEY={payture.key}")
    print(f"PAYTURE_PASSWORD={payture.password}")
    print(f"PAYTURE_WALLET_KEY={payture.wallet_key}")
    print(f"PAYTURE_WALLET_PASSWORD={payture.wallet_password}")
    print("PAYTURE_WALLET_SECRET=change-me")
    print("#")
    print(
        f"# act as a user:  curl -XPOST {telegram.url}/sandbox/users/1001/send "
        "-H 'content-type: application/json' -d '{\"text\": \"/start\"}'"
    )
    print(f"# read the chat:  curl {telegram.url}/sandbox/chats/1001/messages")
    print(
        f"# pay:            curl -XPOST {redoya.url}/sandbox/pay "
        "-H 'content-type: application/json' "
        '-d \'{"url": "<Pay URL>", "outcome": "paid"}\'',
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for server in (telegram, redoya, payture):
            with contextlib.suppress(Exception):
                await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=8081, help="first of three ports (0: any free)")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
