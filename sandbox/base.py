"""The base of every emulator: an aiohttp app on a free loopback port, like aiohttp's
examples/fake_server.py. Scenario knobs live on the subclasses as plain attributes; those
named in `knobs` are also set by `POST /sandbox/scenario {name: value}`.

Every emulator also says which `.env` lines point a bot at it (`env()`) and can be put back to
its just-started state without a restart (`reset()`, also `POST /sandbox/reset`), so a test
session starts each emulator once. `sandbox/registry.py` lists them."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web


class FakeServer:
    """An emulator: `await start()` binds 127.0.0.1 on a free port and returns its base URL."""

    name = "fake"
    knobs: tuple[str, ...] = ()  # the attributes POST /sandbox/scenario may set

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[self._outage])
        # an outage of the whole API (never /sandbox/*): every request answers `down_status`,
        # or hangs `down_delay` seconds first; `down_calls` counts what arrived meanwhile,
        # `down_paths` by path
        self.down_status: int | None = None
        self.down_delay = 0.0
        self.down_calls = 0
        self.down_paths: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.app.router.add_post("/sandbox/reset", self._reset)
        if self.knobs:
            self.app.router.add_post("/sandbox/scenario", self._scenario)

    @web.middleware
    async def _outage(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        down = self.down_status is not None or self.down_delay > 0
        if not down or request.path.startswith("/sandbox/"):
            return await handler(request)
        self.down_calls += 1
        self.down_paths[request.path] += 1
        if self.down_delay:
            await asyncio.sleep(self.down_delay)
        if self.down_status is not None:
            return web.Response(status=self.down_status, text="Service Unavailable")
        return await handler(request)

    def env(self) -> dict[str, str]:
        """The `.env` lines (names as in .env.example) that point a bot at this running server."""
        raise NotImplementedError

    def hints(self) -> list[str]:
        """Comment lines `python -m sandbox` prints: how to drive this emulator by hand."""
        return []

    def reset(self) -> None:
        """Back to the just-started state: no chats, orders or knobs; the port, URL and
        credentials stay. Synchronous: background tasks are cancelled, not awaited."""
        raise NotImplementedError

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    def unknown_knobs(self, names: object) -> str | None:
        """Why a scenario body cannot be taken: names that are no knobs of this emulator."""
        unknown = set(names) - set(self.knobs)  # type: ignore[call-overload]
        return f"unknown knobs {sorted(unknown)}" if unknown else None

    def knob_values(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.knobs}

    async def _scenario(self, request: web.Request) -> web.Response:
        """`{knob: value, ...}`: all set, or none when one is no knob; answers every knob."""
        body = await request.json()
        error = self.unknown_knobs(body)
        if error:
            return web.json_response({"error": error}, status=400)
        for key, value in body.items():
            setattr(self, key, value)
        return web.json_response(self.knob_values())

    async def start(self) -> str:
        if self._runner is not None:
            return self.url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(
                f"the {self.name} emulator cannot bind {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def json_error(status: int, payload: object) -> web.Response:
    return web.json_response(payload, status=status)
