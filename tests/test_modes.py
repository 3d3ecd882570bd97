"""How the bot runs: webhook mode with Telegram's secret header, carts in Redis, settings and
start-up errors that say what is wrong without showing secrets."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from bot.app import BotApp, StartupError
from bot.config import Settings
from bot.wiring import ConfigError, load_settings
from sandbox.botuser import BotUser
from sandbox.telegram import TelegramServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_webhook_mode_receives_updates_with_the_secret(make_settings, telegram, http) -> None:
    port = free_port()
    settings = make_settings(
        web_port=port, webhook_url=f"http://127.0.0.1:{port}", webhook_secret="hook-secret-123"
    )
    async with BotApp(settings):
        assert telegram.webhook is not None
        assert telegram.webhook["secret_token"] == "hook-secret-123"
        assert "hook-secret-123" not in telegram.webhook["url"]
        user = BotUser(telegram.url, 1001, session=http)
        await user.send("/start")
        await user.wait_message("Catalog")
        path = telegram.webhook["url"].split(str(port), 1)[1]
        async with http.post(f"http://127.0.0.1:{port}{path}", json={"update_id": 1}) as forged:
            assert forged.status == 401  # no secret header: refused


async def test_carts_live_in_redis_when_configured(make_settings, telegram, http) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:6379/15")
    user = BotUser(telegram.url, 4004, session=http)
    async with BotApp(settings):
        await user.send("/start p_cezve")
        await user.wait_message("Cezve")
        await user.press(text="Add to cart")
    async with BotApp(settings):  # a restart (or another replica) sees the same cart
        await user.send("/cart")
        cart = await user.wait_message("Your cart")
        assert "Cezve, copper × 1" in cart["text"]
        await user.press(text="Clear cart")


def test_settings_errors_never_show_secrets() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, bot_token="123:super-secret", webhook_url="http://x")  # type: ignore[call-arg]
    assert "WEBHOOK_SECRET" in str(caught.value)
    assert "super-secret" not in str(caught.value)
    settings = load_settings(
        {"BOT_TOKEN": "123:super-secret", "REDOYA_SECRET": "r-secret", "REDOYA_IDENTIFIER": "i"}
    )
    assert "super-secret" not in repr(settings)
    assert "r-secret" not in repr(settings)
    assert {"123:super-secret", "r-secret", "i", settings.callback_key_secret()} == set(
        settings.secrets()
    )


def test_provider_settings_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="REDOYA_TOKEN_MINUTES") as caught:
        load_settings(
            {"BOT_TOKEN": "1:t", "REDOYA_SECRET": "r-secret", "REDOYA_TOKEN_MINUTES": "1"}
        )
    assert "r-secret" not in str(caught.value)


async def test_a_refused_token_stops_start_up_clearly(
    make_settings, telegram: TelegramServer
) -> None:
    with pytest.raises(StartupError, match="refused BOT_TOKEN") as caught:
        async with BotApp(make_settings(bot_token="999:wrong-token-value")):
            pass
    assert "wrong-token-value" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://shop:hunter2@127.0.0.1:1/shop", r"DATABASE_URL: .*127\.0\.0\.1:1/shop"),
        ("mysql://shop:hunter2@127.0.0.1/shop", r"DATABASE_URL .*use sqlite:///"),
    ],
)
async def test_an_unusable_database_stops_start_up_clearly(
    make_settings, url: str, said: str
) -> None:
    with pytest.raises(StartupError, match=said) as caught:
        async with BotApp(make_settings(database_url=url)):
            pass
    assert "hunter2" not in str(caught.value)


async def test_an_invalid_catalog_stops_start_up(make_settings, tmp_path) -> None:
    bad = tmp_path / "catalog.toml"
    bad.write_text('[[products]]\nid = "x"\nname = "X"\nprice = 2.5\ncurrency = "TRY"\n')
    with pytest.raises(StartupError, match=r"products\[0\] \(x\), field 'price'"):
        async with BotApp(make_settings(catalog_path=bad)):
            pass


def test_settings_from_given_lines_ignore_the_environment_and_dotenv(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo and the tests build settings from the sandbox's lines only: a merchant's own
    `.env` in the folder, or variables in the shell, must not leak in."""
    (tmp_path / ".env").write_text(
        "ADMIN_IDS=5\nPAYTURE_KEY=x\nPAYTURE_PASSWORD=y\nWEBHOOK_URL=https://x.example\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDOYA_SECRET", "from-the-shell")
    monkeypatch.setenv("REDOYA_IDENTIFIER", "from-the-shell")
    settings = load_settings({"BOT_TOKEN": "1:a"})
    assert (settings.admin_ids, settings.webhook_url, settings.providers) == (frozenset(), None, {})
    (tmp_path / ".env").write_text("ADMIN_IDS=5\nPAYTURE_KEY=x\nPAYTURE_PASSWORD=y\n")
    monkeypatch.setenv("BOT_TOKEN", "1:b")
    from_env = load_settings()  # `python -m bot run`: the environment and .env, as documented
    assert from_env.admin_ids == {5}
    assert set(from_env.providers) == {"redoya", "payture"}


async def test_readyz_includes_redis_and_an_unreachable_redis_stops_start(
    make_settings, http
) -> None:
    async with BotApp(make_settings(redis_url="redis://127.0.0.1:6379/15")) as app:
        answer = await http.get(f"{app.web_url}/readyz")
        assert (answer.status, (await answer.json())["redis"]) == (200, True)
    port = socket.socket()
    port.bind(("127.0.0.1", 0))  # bound, never listening: nothing answers there
    try:
        where = f"127.0.0.1:{port.getsockname()[1]}/0"
        with pytest.raises(StartupError, match=f"REDIS_URL: cannot reach Redis at {where}"):
            async with BotApp(make_settings(redis_url=f"redis://user:pw-secret@{where}")):
                pass
    finally:
        port.close()
