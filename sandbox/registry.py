"""Every emulator, by name. Adding a provider's emulator = its file plus one line in EMULATORS;
`python -m sandbox`, the test fixtures and tests/test_sandbox.py read this list."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from sandbox.base import FakeServer
from sandbox.erp import ErpServer
from sandbox.ktwidget import KtwidgetServer
from sandbox.payture import PaytureServer
from sandbox.pocket import PocketServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer

TELEGRAM = TelegramServer

# The payment providers' emulators, in the order they take ports after Telegram's.
EMULATORS: dict[str, type[FakeServer]] = {
    "redoya": RedoyaServer,
    "payture": PaytureServer,
    "ktwidget": KtwidgetServer,
    "pocket": PocketServer,
    "erp": ErpServer,
}


def emulator_names() -> list[str]:
    """Every emulator's name, Telegram's first."""
    return [TELEGRAM.name, *EMULATORS]


def server_class(name: str) -> type[FakeServer]:
    if name == TELEGRAM.name:
        return TELEGRAM
    try:
        return EMULATORS[name]
    except KeyError:
        known = ", ".join(emulator_names())
        raise KeyError(f"no emulator named {name!r}; known: {known}") from None


async def start_all(
    names: Iterable[str] | None = None, base_port: int = 0
) -> dict[str, FakeServer]:
    """Start the named emulators (all by default; Telegram's always, under "telegram") on
    base_port, base_port+1, ... in emulator_names() order, or on free ports when base_port is
    0. If one cannot start, the ones already started are stopped again."""
    wanted = {TELEGRAM.name, *(emulator_names() if names is None else names)}
    for name in wanted:
        server_class(name)  # an unknown name fails before anything starts
    servers: dict[str, FakeServer] = {}
    try:
        for n, name in enumerate(emulator_names()):
            if name in wanted:
                server = server_class(name)(port=base_port + n if base_port else 0)
                await server.start()
                servers[name] = server
    except BaseException:
        await stop_all(servers)
        raise
    return servers


async def stop_all(servers: Mapping[str, FakeServer]) -> None:
    for server in reversed(list(servers.values())):
        with contextlib.suppress(Exception):
            await server.stop()


def env_of(servers: Mapping[str, FakeServer] | Iterable[FakeServer]) -> dict[str, str]:
    """The `.env` lines of all the servers together (Telegram's first when started by start_all)."""
    values = servers.values() if isinstance(servers, Mapping) else servers
    env: dict[str, str] = {}
    for server in values:
        env.update(server.env())
    return env
