"""Issue 25, hostile input (small sizes of bench/reliability/fuzz.py, chat_fuzz.py and
secrets.py): every web route fuzzed, every chat handler fed random input, the secrets scan;
and the failures the fuzzer found, each pinned."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from enum import Enum

import aiohttp
import pytest
from aiogram.filters.callback_data import CallbackData

from bench.reliability import chat_fuzz, fuzz
from bench.reliability import secrets as secrets_scan
from bot import keyboards
from bot.app import BotApp, Parts
from sandbox.botuser import BotUser
from sandbox.telegram import TelegramServer
from tests.conftest import ADMIN, MERCHANT_CHAT

SECRET = "hook-secret-hostile-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def webhook_app(make_settings) -> AsyncIterator[Parts]:
    port = free_port()
    settings = make_settings(
        web_port=port,
        webhook_url=f"http://127.0.0.1:{port}",
        webhook_secret=SECRET,
        support_ids=frozenset({chat_fuzz.SUPPORT}),
    )
    async with BotApp(settings) as parts:
        yield parts


def address(parts: Parts) -> tuple[str, int]:
    host, port = parts.web_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def status_of(parts: Parts, raw: bytes) -> int | None:
    return await fuzz.send_raw(*address(parts), raw)


def post(path: str, body: bytes, *headers: str, method: str = "POST") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close", *headers]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_a_webhook_body_that_is_no_update_is_a_400(webhook_app: Parts, no_tracebacks) -> None:
    """Was a 500 (JSON nested past the parser, bad UTF-8, a form) or a 200 with a traceback
    in a background task (a list, a string)."""
    path = fuzz.webhook_path(SECRET)
    secret = f"X-Telegram-Bot-Api-Secret-Token: {SECRET}"
    kind = "Content-Type: application/json"
    for body in (
        b"[" * 100_000,
        b'{"a": "\xff"}',
        b"x=1",
        b"[]",
        b'"update"',
        b'{"update_id": "x"}',
    ):
        assert await status_of(webhook_app, post(path, body, secret, kind)) == 400, body[:20]
    assert await status_of(webhook_app, post(path, b'{"update_id": 5}', secret, kind)) == 200


async def test_a_webhook_update_with_an_id_past_64_bits_is_a_400(
    webhook_app: Parts, no_tracebacks
) -> None:
    """Was a 200, then an OverflowError in a background task (the id cannot be stored)."""
    user = {"id": 2**65, "is_bot": False, "first_name": "F"}
    message = {"message_id": 1, "date": 0, "chat": {"id": 7, "type": "private"}, "from": user}
    body = json.dumps({"update_id": 9, "message": {**message, "text": "/start"}}).encode()
    secret = f"X-Telegram-Bot-Api-Secret-Token: {SECRET}"
    answer = post(fuzz.webhook_path(SECRET), body, secret, "Content-Type: application/json")
    assert await status_of(webhook_app, answer) == 400


async def test_a_body_with_a_false_content_encoding_is_a_400(app: Parts, no_tracebacks) -> None:
    """Was a 500 with aiohttp's traceback (the body read raised), and the drain of the rest
    logged another."""
    claim, garbage = "Content-Encoding: deflate", b"\x1f\x8b\x08\x00garbage"
    form = b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n"
    for method, path, body in (
        ("POST", "/pay/stars/" + "a" * 300, garbage),
        ("GET", "/return/erp/" + "a" * 300, form),
        ("POST", "/healthz", garbage * 10),
    ):
        status = await status_of(app, post(path, body, claim, method=method))
        assert status in (200, 400, 404, 405), (path, status)
    assert await status_of(app, post("/callbacks/payture", b"\x00garbage", claim)) == 400


async def test_a_callback_body_past_the_limit_is_a_413(app: Parts, no_tracebacks) -> None:
    """Was a 503 (the provider's "try again", so it would send it again) with a traceback."""
    big = b"Notification=EnginePaySuccess&x=" + b"9" * fuzz.TOO_BIG
    assert await status_of(app, post("/callbacks/payture", big)) == 413


async def test_a_request_aiohttp_cannot_parse_logs_one_line(
    app: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    """Was an ERROR with a traceback for each (a header too long, two Content-Types)."""
    caplog.set_level(logging.INFO)
    for extra in ("X-Huge: " + "h" * 9000, "Content-Type: a/b\r\nContent-Type: c/d"):
        assert await status_of(app, post("/callbacks/payture", b"", extra)) == 400
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(records) == 2
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in records)


async def test_a_forged_fulfilment_button_past_64_bits_gets_a_clear_answer(
    app: Parts, telegram: TelegramServer, http: aiohttp.ClientSession, no_tracebacks
) -> None:
    """Was the generic apology and an OverflowError traceback (found by the chat fuzzer)."""
    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.send("/help")
    shown = await admin.wait_message()
    for data in ("tn:99999999999999999999:1", "fu:99999999999999999999:shipped", "tn:-5:0"):
        answer = await admin.press(data, message_id=shown["message_id"], force=True)
        assert chat_fuzz.APOLOGY not in str(answer), (data, answer)


def oversized_payloads() -> list[str]:
    """Every button kind with each of its numbers past 64 bits, the rest well formed."""
    found = []
    for factory in CallbackData.__subclasses__():
        if factory.__module__ != keyboards.__name__:
            continue
        values = {}
        for name, field in factory.model_fields.items():
            kind = field.annotation
            if isinstance(kind, type) and issubclass(kind, Enum):
                values[name] = next(iter(kind)).value
            elif kind is bool:
                values[name] = "1"
            elif kind is str:
                values[name] = "x"
            else:
                values[name] = "0"
        for name, value in values.items():
            if value == "0":
                fields = {**values, name: str(2**70)}
                found.append(":".join([factory.__prefix__, *fields.values()]))
    return found


async def test_no_button_number_past_64_bits_reaches_the_database(
    app: Parts, telegram: TelegramServer, http: aiohttp.ClientSession, no_tracebacks
) -> None:
    """Every CallbackData number is bounded to what a column holds: an edited payload unpacks
    to nothing (the stale-button answer), never an OverflowError."""
    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.send("/help")
    shown = await admin.wait_message()
    payloads = oversized_payloads()
    assert len(payloads) > 20
    for data in payloads:
        answer = await admin.press(data, message_id=shown["message_id"], force=True)
        assert chat_fuzz.APOLOGY not in str(answer), (data, answer)


async def test_every_route_fuzzed_answers_no_5xx(webhook_app: Parts) -> None:
    async with fuzz.capture_logs() as log:
        report = await fuzz.fuzz(*address(webhook_app), 400, seed=7, log=log)
    assert report.held, report.as_dict()
    assert set(report.by_route) == {name for name, _ in fuzz.routes("")}
    assert not [s for s in report.statuses if s >= 500]


async def test_every_chat_handler_answers_random_input(
    webhook_app: Parts, telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    assert (ADMIN, MERCHANT_CHAT) == (chat_fuzz.ADMIN, chat_fuzz.MERCHANT_CHAT)
    async with fuzz.capture_logs() as log:
        report = await chat_fuzz.fuzz_chats(telegram.url, 15, seed=3, session=http)
    report.bad_logs = list(log.bad)
    assert report.held, report.as_dict()
    assert sum(report.actions.values()) == 60


async def test_no_secret_in_logs_rows_or_chats_with_credentials_refused() -> None:
    scan = await secrets_scan.run(modes=("echo500",), quick=True)
    assert scan.secrets >= 20
    assert sum(scan.places.values()) > 100
    assert not scan.found, scan.found


def test_the_scan_finds_a_secret_where_there_is_one() -> None:
    scan = secrets_scan.Scan()
    scan.look(
        "log", ["GET /x?password=p%40ss%2Fw", 'body {"k": "a\\"b"}'], {"A": "p@ss/w", "B": 'a"b'}
    )
    assert len(scan.found) == 2
