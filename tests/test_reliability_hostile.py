"""Issue 25, hostile input (small sizes of bench/reliability/fuzz.py, chat_fuzz.py and
secrets.py): every web route fuzzed, every chat handler fed random input, the secrets scan;
and the failures the fuzzer found, each pinned."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import pytest

from bench.reliability import fuzz
from bot.app import BotApp, Parts

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
