"""The emulators as a set: the registry knows every one, each says its `.env` lines, and a
reset leaves nothing of the test before (the session's servers are shared by every test)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import web

from sandbox import registry
from sandbox.base import FakeServer
from sandbox.botuser import BotUser
from sandbox.payture import PaytureOrder, PaytureServer
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from tests.conftest import CUSTOMER
from tests.flows import eventually

ROOT = Path(__file__).resolve().parent.parent


def documented_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def test_the_registry_lists_every_emulator_in_sandbox() -> None:
    defined = set()
    for path in sorted((ROOT / "sandbox").glob("*.py")):
        if path.stem == "__main__":
            continue
        module = importlib.import_module(f"sandbox.{path.stem}")
        defined |= {
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, FakeServer)
            and cls is not FakeServer
            and cls.__module__ == module.__name__
        }
    listed = {registry.TELEGRAM, *registry.EMULATORS.values()}
    assert defined == listed, "add the new emulator to sandbox/registry.py"
    assert all(registry.EMULATORS[name].name == name for name in registry.EMULATORS)
    assert len(set(registry.emulator_names())) == len(listed)


async def test_every_env_names_only_documented_settings() -> None:
    documented = documented_names()
    servers = await registry.start_all()
    try:
        for name, server in servers.items():
            env = server.env()
            assert env, name
            assert set(env) <= documented, f"{name}: {set(env) - documented} not in .env.example"
            assert all(isinstance(v, str) and v for v in env.values()), name
            assert server.url in env.values(), f"{name}: no variable points at the server"
        merged = registry.env_of(servers)
        assert len(merged) == sum(len(s.env()) for s in servers.values())  # no name clashes
        assert list(merged)[:2] == ["BOT_TOKEN", "TELEGRAM_API_URL"]
    finally:
        await registry.stop_all(servers)


async def test_start_all_starts_telegram_and_the_named_ones_only() -> None:
    servers = await registry.start_all(["redoya"])
    try:
        assert list(servers) == ["telegram", "redoya"]
        assert all(s.url.startswith("http://127.0.0.1:") for s in servers.values())
    finally:
        await registry.stop_all(servers)
    with pytest.raises(KeyError, match="no emulator named 'nope'"):
        await registry.start_all(["nope"])


async def test_telegram_reset_forgets_chats_and_updates(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    user = BotUser(telegram.url, CUSTOMER, first_name="Ada", session=http)
    await user.send("/start")
    api = f"{telegram.url}/bot{telegram.token}"
    async with http.post(f"{api}/sendMessage", json={"chat_id": CUSTOMER, "text": "hi"}):
        pass
    telegram.fail_next("sendMessage")
    assert telegram.messages
    assert telegram.updates
    assert telegram.users
    assert telegram.calls
    url, port = telegram.url, telegram.port

    telegram.reset()

    assert (telegram.url, telegram.port) == (url, port)
    assert not any(
        (telegram.chats, telegram.messages, telegram.users, telegram.updates, telegram.calls)
    )
    assert telegram.webhook is None
    assert not telegram._failures
    assert not telegram._message_ids
    async with http.post(f"{api}/sendMessage", json={"chat_id": CUSTOMER, "text": "hi"}) as r:
        assert (await r.json())["result"]["message_id"] == 1  # not the 429 set before


async def test_telegram_reset_ends_a_stale_long_poll(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    """A getUpdates left waiting by a stopped bot answers [] at the reset, and cannot take the
    next test's updates; a stale offset cannot drop them either (update ids keep growing)."""
    api = f"{telegram.url}/bot{telegram.token}"
    telegram.push("message", {"text": "old"})
    old_id = telegram.updates[-1]["update_id"]

    async def poll(offset: int) -> list:
        async with http.post(f"{api}/getUpdates", json={"offset": offset, "timeout": 20}) as r:
            return (await r.json())["result"]

    stale = asyncio.create_task(poll(old_id + 1))
    await asyncio.sleep(0.2)
    telegram.reset()
    assert await asyncio.wait_for(stale, 5) == []
    telegram.push("message", {"text": "new"})
    assert telegram.updates[0]["update_id"] > old_id
    assert [u["message"]["text"] for u in await poll(old_id + 1)] == ["new"]


async def test_telegram_reset_stops_delivering_to_the_old_webhook(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    hits: list[tuple[str, str]] = []
    came = {"/old": asyncio.Event(), "/new": asyncio.Event()}

    async def refuse(request: web.Request) -> web.Response:
        hits.append((request.path, (await request.json())["message"]["text"]))
        came[request.path].set()
        return web.Response(status=500)  # the pusher would retry it four more times

    async with receiver(refuse) as hook:
        api = f"{telegram.url}/bot{telegram.token}"
        await http.post(f"{api}/setWebhook", json={"url": f"{hook}/old"})
        telegram.push("message", {"text": "for the old bot"})
        await asyncio.wait_for(came["/old"].wait(), 5)
        telegram.reset()
        await http.post(f"{api}/setWebhook", json={"url": f"{hook}/new"})
        telegram.push("message", {"text": "for the new bot"})
        await asyncio.wait_for(came["/new"].wait(), 5)
        await asyncio.sleep(0.5)  # the old pusher's next retry would have come by now
    assert hits[0] == ("/old", "for the old bot")
    assert set(hits[1:]) == {("/new", "for the new bot")}  # the old update went with the reset


async def test_telegram_delivers_to_the_webhook_in_parallel_each_chat_in_order(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    """Up to setWebhook's `max_connections` updates at a time, as Telegram, and a chat's
    updates one at a time, in order (the emulator's choice)."""
    in_flight, most, seen = 0, 0, []

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        message = (await request.json())["message"]
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.1)
        seen.append((message["chat"]["id"], message["text"]))
        in_flight -= 1
        return web.Response()

    async with receiver(slow) as hook:
        api = f"{telegram.url}/bot{telegram.token}"
        await http.post(f"{api}/setWebhook", json={"url": f"{hook}/hook", "max_connections": 3})
        for chat in (1, 2, 3, 4, 5):
            telegram.push("message", {"chat": {"id": chat}, "text": "first"})
        for n in range(3):
            telegram.push("message", {"chat": {"id": 1}, "text": f"then {n}"})
        await eventually(lambda: not telegram.updates, timeout=10)
    assert most == 3
    assert [text for chat, text in seen if chat == 1] == ["first", "then 0", "then 1", "then 2"]
    assert sorted(chat for chat, text in seen if text == "first") == [1, 2, 3, 4, 5]


async def test_redoya_reset_forgets_orders_calls_and_knobs(
    redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    claims = {
        "price": 150,
        "successfulURL": "http://return.example/ok/{order_id}",
        "failURL": "http://return.example/fail/{order_id}",
        "isInTestMode": 0,
    }
    pay_url = f"{redoya.url}/checkout#{jwt.encode(claims, redoya.secret)}#{redoya.identifier}"
    async with http.post(
        f"{redoya.url}/sandbox/pay", json={"url": pay_url, "outcome": "paid"}
    ) as answer:
        order_id = (await answer.json())["order_id"]
    async with http.post(
        f"{redoya.url}/api/v1/order/verify/{order_id}", json={"identifier": redoya.identifier}
    ) as answer:
        assert answer.status == 200
    redoya.verify_delay, redoya.decimal_prices, redoya.not_confirmed_verifies = 1.0, True, 2
    assert redoya.orders
    assert redoya.verify_calls == 1
    url, secret = redoya.url, redoya.secret

    redoya.reset()

    assert not redoya.orders
    assert redoya.verify_calls == 0
    assert redoya.verify_delay == 0
    assert redoya.decimal_prices is False
    assert redoya.not_confirmed_verifies == 0
    assert (redoya.url, redoya.secret) == (url, secret)


async def test_the_reset_route_calls_reset(
    payture: PaytureServer, http: aiohttp.ClientSession
) -> None:
    payture.malformed_xml = True
    payture.orders["o"] = PaytureOrder("o", 100)
    async with http.post(f"{payture.url}/sandbox/reset") as answer:
        assert answer.status == 200
    assert payture.malformed_xml is False
    assert not payture.orders


async def test_payture_reset_forgets_orders_and_cancels_notifications(
    payture: PaytureServer, http: aiohttp.ClientSession
) -> None:
    arrived = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(5)  # a bot that does not answer
        return web.Response(text="OK")

    async with receiver(hold) as bot:
        data = "SessionType=Pay;OrderId=o-1;Amount=15000;Url=http://return.example/{orderid}"
        async with http.post(
            f"{payture.url}/apim/Init", data={"Key": payture.key, "Data": data}
        ) as answer:
            session_id = re.search(r'SessionId="([^"]+)"', await answer.text())[1]
        payture.notify_url = f"{bot}/callback"
        async with http.post(
            f"{payture.url}/sandbox/pay",
            json={"url": f"{payture.url}/apim/Pay?SessionId={session_id}", "outcome": "paid"},
        ):
            pass
        await asyncio.wait_for(arrived.wait(), 5)
        payture._notify("EngineRefundSuccess", payture.orders["o-1"], 100)  # not started yet
        assert len(payture._tasks) == 2
        assert payture.orders
        assert payture.sessions

        payture.reset()

        await asyncio.wait_for(payture.settle(), 1)  # cancelled, not waiting for the bot
        assert not payture._tasks
        assert not (payture.orders)
        assert not (payture.sessions)
        assert not (payture.users)
        assert not (payture.notifications)
        assert payture.notify_url is None
        assert payture.raw_answer is None


@contextlib.asynccontextmanager
async def receiver(handler) -> AsyncIterator[str]:
    """A stand-in bot on a free loopback port: every POST goes to `handler`."""
    app = web.Application()
    app.router.add_post("/{path}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def test_the_printed_lines_say_every_step_a_tester_takes(
    telegram: TelegramServer, redoya: RedoyaServer, payture: PaytureServer
) -> None:
    for server in (redoya, payture):
        hints = "\n".join(server.hints())
        assert 'open the "redirect" URL' in hints, hints
    assert f"{telegram.url}/sandbox/users/1001/send_contact" in "\n".join(telegram.hints())
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for said in ("send_contact", '{"redirect": ...}', "bot/demo_catalog.toml"):
        assert said in readme, said
