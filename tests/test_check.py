"""A set-up that tells what is wrong: `python -m bot check` names each problem, `run` refuses
to start on the same ones, a second process polling with the token is told apart (the sandbox
answers 409 as Telegram does), and the providers' limits reach the customer before checkout."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import sys
from collections.abc import Callable
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import polling
from bot.__main__ import serve
from bot.app import BotApp, StartupError
from bot.check import Level, report, run_check
from bot.config import Settings
from bot.demo import DEMO_CATALOG
from bot.images import image_size
from sandbox import registry
from sandbox.base import FakeServer
from sandbox.botuser import BotUser
from sandbox.telegram import TelegramServer
from tests.conftest import ADMIN
from tests.flows import eventually

ROOT = Path(__file__).resolve().parent.parent
PNG = (ROOT / "bot" / "photos" / "coffee.png").read_bytes()
SHOP = '[[categories]]\nid = "shop"\ntitle = "Shop"\n'


def product(pid: str, name: str, price: str = "", **fields: str) -> str:
    lines = [f'id = "{pid}"', 'category = "shop"', f'name = "{name}"']
    if price:
        lines += [f'price = "{price}"', 'currency = "TRY"']
    lines += [f"{key} = {value}" for key, value in fields.items()]
    return "\n[[products]]\n" + "\n".join(lines) + "\n"


@pytest.fixture
def servers(
    telegram: TelegramServer, redoya: FakeServer, payture: FakeServer, ktwidget: FakeServer,
    pocket: FakeServer, erp: FakeServer,
) -> list[FakeServer]:  # fmt: skip
    return [telegram, redoya, payture, ktwidget, pocket, erp]


@pytest.fixture
def check(servers: list[FakeServer], tmp_path: Path) -> Callable[..., Any]:
    """run_check on the sandbox's lines, with `env` changed (a value of None drops a line)."""

    async def run(env: dict[str, str | None] | None = None, **overrides: Any) -> list[str]:
        lines = registry.env_of(servers) | {
            "CATALOG_PATH": str(DEMO_CATALOG),
            "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db",
        }
        for key, value in (env or {}).items():
            lines.pop(key, None) if value is None else lines.__setitem__(key, value)
        found = await run_check(lines, **overrides)
        out = io.StringIO()
        code = report(found, out)
        assert (code == 0) is all(line.level is not Level.ERROR for line in found)
        return [str(line) for line in found]

    return run


def errors_of(lines: list[str]) -> list[str]:
    return [line.removeprefix("error").strip() for line in lines if line.startswith("error")]


def catalog(tmp_path: Path, *products: str) -> str:
    path = tmp_path / "catalog.toml"
    path.write_text(SHOP + "".join(products), encoding="utf-8")
    return str(path)


async def test_an_all_good_setup(check: Callable[..., Any]) -> None:
    lines = await check()
    assert not errors_of(lines), lines
    for said in (
        "settings: valid",
        "telegram: long polling",
        "redoya: enabled",
        "stars: enabled",
        "catalog: 15 products, each payable",
        "photos: 1 local, each a readable image",
        "database: sqlite opens",
        "telegram: BOT_TOKEN accepted, the bot is @checkout_demo_bot",
    ):
        assert any(said in line for line in lines), (said, lines)


async def test_postgres_opens_or_is_named_without_its_password(
    check: Callable[..., Any], postgres_url: str
) -> None:
    assert "ok     database: postgresql opens" in await check({"DATABASE_URL": postgres_url})
    lines = await check({"DATABASE_URL": "postgresql://shop:pg-secret@127.0.0.1:1/shop"})
    (wrong,) = [line for line in errors_of(lines) if "DATABASE_URL" in line]
    assert wrong.startswith("DATABASE_URL: cannot connect to PostgreSQL at 127.0.0.1:1/shop")
    assert "pg-secret" not in "\n".join(lines)


def closed_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: nothing answers there
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize(
    "case",
    [
        "half_credential",
        "settings",
        "provider_typo",
        "unpayable",
        "beyond_cap",
        "photo",
        "database",
        "redis",
        "token",
        "nobody_ships",
        "report_to_nobody",
        "inbox_keep",
    ],
)
async def test_each_problem_is_named(case: str, check: Callable[..., Any], tmp_path: Path) -> None:
    env: dict[str, str | None] = {}
    overrides: dict[str, Any] = {}
    held = None
    if case == "half_credential":
        env = {"PAYTURE_PASSWORD": None, "PAYTURE_WALLET_KEY": None}
        expected = "payture: PAYTURE_PASSWORD: required with the others"
    elif case == "settings":
        env = {"WEB_PORT": "99999"}
        expected = "WEB_PORT: input should be less than or equal to 65535"
    elif case == "provider_typo":
        env = {
            "CATALOG_PATH": catalog(tmp_path, product("rug", "Rug", "50", providers='["redoay"]'))
        }
        expected = (
            "product 'rug': `providers` names 'redoay', not a provider (one of halkbank, ktwidget"
        )
    elif case == "unpayable":
        env = {
            "CATALOG_PATH": catalog(tmp_path, product("club", "Club", stars="500")),
            "STARS_ENABLED": "false",
        }
        expected = "product 'club' cannot be paid: no enabled provider takes XTR"
    elif case == "beyond_cap":
        env = {"CATALOG_PATH": catalog(tmp_path, product("kilim", "Kilim", "1500"))}
        expected = (
            "product 'kilim' cannot be paid: 1500.00 TRY is above Redoya's cap of 1000.00 TRY "
            "per order"
        )
    elif case == "photo":
        (tmp_path / "not-a-photo.png").write_text("hello")
        env = {
            "CATALOG_PATH": catalog(
                tmp_path,
                product("a", "A", "50", photo='"photos/gone.png"'),
                product("b", "B", "50", photo='"not-a-photo.png"'),
                product("c", "C", "50", photo='"https://example.com/c.png"'),
            )
        }
        expected = f"product 'a': photo {tmp_path}/photos/gone.png: no such file"
    elif case == "database":
        env = {"DATABASE_URL": f"sqlite:///{tmp_path}/nope/bot.db"}
        expected = f"DATABASE_URL: directory {tmp_path}/nope does not exist"
    elif case == "redis":
        held, port = closed_port()
        env = {"REDIS_URL": f"redis://shop:redis-secret@127.0.0.1:{port}/2"}
        expected = f"REDIS_URL: cannot reach Redis at 127.0.0.1:{port}/2"
    elif case == "nobody_ships":
        env = {"MERCHANT_CHAT_ID": None}
        expected = "MERCHANT_CHAT_ID: unset, but 'mortar', 'sand', 'samovar' need delivery"
    elif case == "report_to_nobody":
        env = {
            "CATALOG_PATH": catalog(tmp_path, product("rug", "Rug", "50")),  # nothing shipped
            "MERCHANT_CHAT_ID": None,
            "DAILY_REPORT_AT": "08:00",
        }
        expected = "DAILY_REPORT_AT: set, but MERCHANT_CHAT_ID is unset: no chat to send to"
    elif case == "inbox_keep":
        env = {"INBOX_KEEP_DAYS": "2", "LEDGER_WINDOW_HOURS": "48"}  # not longer: refused
        expected = "INBOX_KEEP_DAYS must be longer than LEDGER_WINDOW_HOURS"
    else:
        env = {"BOT_TOKEN": "999:not-the-token"}
        expected = "Telegram refused BOT_TOKEN (401 Unauthorized)"
    try:
        lines = await check(env, **overrides)
    finally:
        if held is not None:
            held.close()
    wrong = errors_of(lines)
    assert any(expected in line for line in wrong), (expected, lines)
    text = "\n".join(lines)
    for secret in ("MerchantKey", "redis-secret", "not-the-token", "redoya-sandbox-secret"):
        assert secret not in text
    if case == "photo":
        assert f"product 'b': photo {tmp_path}/not-a-photo.png: not a PNG, JPEG" in text
        assert "note   product 'c': photo https://example.com/c.png (a URL, not checked)" in text
    if case == "half_credential":
        assert not any("PAYTURE_KEY" in line for line in wrong)  # the one that is set is fine
    if case == "report_to_nobody":
        assert wrong == [expected]  # nothing is shipped: only the report has nowhere to go


def test_image_sizes_from_their_headers() -> None:
    assert image_size(PNG) is not None
    jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x11\x08\x01\xe0\x02\x80" + bytes(20)
    assert image_size(jpeg) == (640, 480)
    assert image_size(b"GIF89a\x10\x00\x20\x00" + bytes(10)) == (16, 32)
    assert image_size(b"<html>") is None


async def test_python_m_bot_check_reads_the_environment(
    servers: list[FakeServer], tmp_path: Path
) -> None:
    lines = registry.env_of(servers) | {
        "CATALOG_PATH": str(DEMO_CATALOG),
        "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db",
        "PAYTURE_PASSWORD": "",  # half-set: an error, exit 1
    }
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check",
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await asyncio.wait_for(done.communicate(), 60))[0].decode()
    assert done.returncode == 1, output
    assert "error  payture: PAYTURE_PASSWORD: required with the others" in output
    assert "ok     telegram: BOT_TOKEN accepted" in output
    assert "MerchantKey" not in output


# --- run refuses --------------------------------------------------------------------------


async def test_run_refuses_a_catalog_that_cannot_sell(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = catalog(
        tmp_path,
        product("kilim", "Kilim", "1500"),
        product("lamp", "Lamp", "50", photo='"photos/lamp.png"'),
    )
    with pytest.raises(StartupError) as refused:
        async with BotApp(make_settings(catalog_path=path)):
            pass
    assert refused.value.problems == [
        "product 'kilim' cannot be paid: 1500.00 TRY is above Redoya's cap of 1000.00 TRY "
        "per order",
        f"product 'lamp': photo {tmp_path}/photos/lamp.png: no such file",
    ]


async def test_run_refuses_a_shop_nobody_is_told_of(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with pytest.raises(StartupError) as refused:
        async with BotApp(make_settings(merchant_chat_id=None)):  # the demo catalog ships
            pass
    [problem] = refused.value.problems
    assert problem.startswith(
        "MERCHANT_CHAT_ID: unset, but 'mortar', 'sand', 'samovar' need delivery"
    )
    path = catalog(tmp_path, product("rug", "Rug", "50"))
    with pytest.raises(StartupError) as refused:
        async with BotApp(
            make_settings(catalog_path=path, merchant_chat_id=None, daily_report_at=time(8))
        ):
            pass
    assert refused.value.problems == [
        "DAILY_REPORT_AT: set, but MERCHANT_CHAT_ID is unset: no chat to send to"
    ]


async def test_a_database_folder_that_does_not_exist_is_an_error(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with pytest.raises(StartupError, match=f"directory {tmp_path}/typo does not exist"):
        async with BotApp(make_settings(database_url=f"sqlite:///{tmp_path}/typo/bot.db")):
            pass
    assert not (tmp_path / "typo").exists()


# --- a second process polling with the same token -----------------------------------------


async def test_the_emulator_answers_409_as_telegram_does(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    api = f"{telegram.url}/bot{telegram.token}"
    older = asyncio.create_task(http.post(f"{api}/getUpdates", json={"timeout": 20}))
    await eventually(lambda: any(name == "getupdates" for name, _ in telegram.calls))
    async with http.post(f"{api}/getUpdates", json={"timeout": 0}) as newer:
        assert (newer.status, (await newer.json())["result"]) == (200, [])
    async with await older as lost:
        body = await lost.json()
    assert (lost.status, body["error_code"]) == (409, 409)
    assert body["description"] == (
        "Conflict: terminated by other getUpdates request; make sure that only one bot "
        "instance is running"
    )
    await http.post(f"{api}/setWebhook", json={"url": "https://shop.example/hook"})
    async with http.post(f"{api}/getUpdates") as hooked:
        assert hooked.status == 409
        assert (await hooked.json())["description"].startswith(
            "Conflict: can't use getUpdates method while webhook is active"
        )


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 409 is tried again three times, as in production, only sooner."""
    monkeypatch.setattr(polling, "RETRY_DELAYS", (0.05, 0.1, 0.15))


def told_admin(telegram: TelegramServer, words: str) -> list[str]:
    return [
        p["text"]
        for m, p in telegram.calls
        if m == "sendmessage" and p["chat_id"] == str(ADMIN) and words in p["text"]
    ]


async def test_a_passing_409_is_polled_through(
    make_settings: Callable[..., Settings],
    telegram: TelegramServer,
    user: BotUser,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    quick_retries: None,
) -> None:
    api = f"{telegram.url}/bot{telegram.token}"
    app = BotApp(make_settings())
    async with app:
        await eventually(lambda: any(name == "getupdates" for name, _ in telegram.calls))
        async with http.post(f"{api}/getUpdates", json={"timeout": 0}) as interloper:
            assert interloper.status == 200  # `curl getUpdates` by hand: the bot's poll got 409
        await eventually(lambda: any("polling again" in r.getMessage() for r in caplog.records))
        await user.send("/start")
        await user.wait_message("Catalog")  # still the one that answers
        assert not app.failed.is_set()
    assert told_admin(telegram, "stopped taking updates") == []


async def test_a_webhook_set_elsewhere_stops_polling_and_is_named(
    make_settings: Callable[..., Settings],
    telegram: TelegramServer,
    http: aiohttp.ClientSession,
    quick_retries: None,
) -> None:
    api = f"{telegram.url}/bot{telegram.token}"
    app = BotApp(make_settings())
    async with app:
        await eventually(lambda: any(name == "getupdates" for name, _ in telegram.calls))
        await http.post(f"{api}/setWebhook", json={"url": "https://shop.example/hook"})
        await asyncio.wait_for(app.failed.wait(), 10)
        assert app.failure is not None
        assert app.failure.startswith("a webhook is set for this BOT_TOKEN")
        await eventually(lambda: told_admin(telegram, "a webhook is set for its token"))
    assert told_admin(telegram, "another process uses the same bot token") == []


async def test_a_second_poller_stops_the_first_which_says_so_once(
    make_settings: Callable[..., Settings],
    telegram: TelegramServer,
    user: BotUser,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    quick_retries: None,
) -> None:
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    first = asyncio.create_task(serve(make_settings(), stop))  # `python -m bot run`'s loop
    await eventually(lambda: sum(name == "getupdates" for name, _ in telegram.calls) >= 1)
    async with BotApp(make_settings()) as second:
        assert await asyncio.wait_for(first, 30) == 1  # the older poll lost: `run` exits
        assert "stopped: another process polls Telegram with this BOT_TOKEN" in (
            capsys.readouterr().err
        )
        await user.send("/start")
        await user.wait_message("Catalog")
        await user.send("/help")
        await user.wait_message("browse products")
        answers = [m for m in await user.bot_messages() if "Catalog" in (m.get("text") or "")]
        assert len(answers) == 1  # one bot answers
        admin = BotUser(telegram.url, ADMIN, session=http)
        told = [m for m in await admin.bot_messages() if "stopped taking updates" in m["text"]]
        assert len(told) == 1
        assert second.bot_username == "checkout_demo_bot"
    said = [r for r in caplog.records if "another process polls" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.ERROR]
    retried = [r for r in caplog.records if "polling again" in r.getMessage()]
    assert len(retried) >= 3  # the first tried three times before it gave up
    assert not [r for r in caplog.records if "Failed to fetch updates" in r.getMessage()]


# --- the limits before checkout -------------------------------------------------------------


async def test_the_cap_is_said_in_the_card_and_the_cart_before_checkout(
    make_settings: Callable[..., Settings], tmp_path: Path, user: BotUser
) -> None:
    path = catalog(
        tmp_path,
        product("kilim", "Kilim", "600"),
        product("lamp", "Mosaic lamp", "1500", stars="900"),
    )
    async with BotApp(make_settings(catalog_path=path)) as app:
        await user.send("/start p_lamp")
        card = await user.wait_message("Mosaic lamp")
        assert "Redoya takes at most ₺1,000.00 per order." in card["text"]
        await user.send("/start p_kilim")
        card = await user.wait_message("Kilim")
        assert "Redoya takes at most" not in card["text"]
        await user.press(text="Add to cart", message_id=card["message_id"])
        await user.press(text="Add one more", message_id=card["message_id"])
        await user.send("/cart")
        cart = await user.wait_message("Your cart")
        said = "Redoya takes at most ₺1,000.00 per order; remove something from the cart."
        assert said in cart["text"]
        answer = await user.press(text="Checkout", message_id=cart["message_id"])
        assert answer is not None
        assert answer["text"] == said
        assert await app.storage.orders_for_user(user.user_id, limit=5) == []


# --- empty lines and every problem in one go ------------------------------------------------


def example_lines() -> dict[str, str]:
    """`.env.example` as a new merchant copies it: every `NAME=value` line, empty ones too."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and line[:1] != "#")
    return {name.strip(): value.strip() for name, value in pairs}


def test_the_inbox_is_kept_for_the_days_said_or_for_ever() -> None:
    from bot.wiring import load_settings

    example = example_lines()
    assert load_settings(example).inbox_keep == timedelta(days=180)
    assert load_settings(example | {"INBOX_KEEP_DAYS": "3"}).inbox_keep == timedelta(days=3)
    assert load_settings(example | {"INBOX_KEEP_DAYS": "0"}).inbox_keep is None


async def test_env_example_as_is_says_nothing_about_its_empty_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.wiring import load_settings, provider_states

    example = example_lines()
    assert example["MERCHANT_CHAT_ID"] == ""
    assert example["ERP_PM_ID"] == ""
    # the sandbox's path (given lines) and the .env path read the empty lines alike: unset
    assert all(not s.problems for s in provider_states(example)), provider_states(example)
    assert load_settings(example).merchant_chat_id is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text(encoding="utf-8"))
    for name in example:
        monkeypatch.delenv(name, raising=False)
    assert all(not s.problems for s in provider_states()), provider_states()
    assert Settings().merchant_chat_id is None
    (tmp_path / ".env").write_text("BOT_TOKEN=\nMERCHANT_CHAT_ID=\nKTWIDGET_MERCHANT_ID=\n")
    found = [str(line) for line in await run_check()]
    wrong = [line for line in found if line.startswith("error")]
    assert any("BOT_TOKEN: field required" in line for line in wrong), found
    assert not any("integer" in line or "MERCHANT_ID" in line for line in wrong), found


async def test_a_bad_setting_does_not_stop_the_other_checks(check: Callable[..., Any]) -> None:
    lines = await check({"TIMEZONE": "Europe/Istambul", "DAILY_REPORT_AT": "9am"})
    wrong = errors_of(lines)
    assert any(line.startswith("TIMEZONE: 'Europe/Istambul' is not a time zone") for line in wrong)
    assert "DAILY_REPORT_AT: must be a time of day as HH:MM, e.g. 09:00" in wrong, wrong
    assert not any("Value error" in line for line in lines), lines
    for said in (
        "catalog: 15 products, each payable",
        "photos: 1 local, each a readable image",
        "database: sqlite opens",
        "telegram: BOT_TOKEN accepted",
    ):
        assert any(said in line for line in lines), (said, lines)


async def test_a_missing_token_still_checks_the_rest(check: Callable[..., Any]) -> None:
    lines = await check({"BOT_TOKEN": None, "WEB_PORT": "80000"})
    wrong = errors_of(lines)
    assert "BOT_TOKEN: field required" in wrong, wrong
    assert any(line.startswith("WEB_PORT: input should be less than") for line in wrong), wrong
    assert any("database: sqlite opens" in line for line in lines), lines
    assert not any(line.startswith("ok     telegram: BOT_TOKEN") for line in lines), lines
