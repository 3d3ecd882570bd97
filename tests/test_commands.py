"""The README's commands as a person runs them: `python -m bot demo`, and `python -m sandbox`
with `python -m bot run` pointed at it through the `.env` lines it prints."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from sandbox.botuser import BotUser
from tests.conftest import CUSTOMER

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any bot setting that could leak in, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "REDOYA_", "PAYTURE_"))}
    env.update(values)
    return env


@asynccontextmanager
async def process(
    *args: str, cwd: Path, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_demo_plays_the_whole_flow_and_exits_0(tmp_path: Path) -> None:
    async with process("-m", "bot", "demo", cwd=tmp_path, env=clean_env()) as demo:
        output, _ = await asyncio.wait_for(demo.communicate(), 120)
    text = output.decode()
    assert demo.returncode == 0, text
    assert "Payment received for order #1" in text
    assert "× 1" in text  # the cart had two products
    assert "Payment received for order #2: 500 ⭐" in text  # then a gift paid in Stars
    assert "[document receipt-3.pdf]" in text  # and tea through KTWidget, with its receipt
    assert "Payment received for order #4" in text  # and milk tea through Pocket
    assert "Payment received for order #5" in text  # and chorek through the ERP's Halkbank
    last = text.rstrip().splitlines()[-5:]
    assert last[0].startswith("order #1: paid · 630.00 TRY · redoya"), last  # coffee + grinder
    assert "Address: Moda Cd. 12, Kadıköy, Istanbul" in text  # the grinder is shipped
    assert last[1].startswith("order #2: paid · 500 XTR · stars"), last
    assert last[2].startswith("order #3: paid · 3200.50 KZT · ktwidget"), last
    assert last[3].startswith("order #4: paid · 12500.00 MNT · pocket"), last
    assert last[4].startswith("order #5: paid · 1.15 TMT · halkbank"), last


async def test_sandbox_prints_env_lines_that_run_the_bot(tmp_path: Path) -> None:
    async with process("-m", "sandbox", "--port", "0", cwd=tmp_path, env=clean_env()) as sandbox:
        assert sandbox.stdout is not None
        settings: dict[str, str] = {}
        while True:  # every emulator's lines, up to the hints: the catalog sells in each
            line = (await asyncio.wait_for(sandbox.stdout.readline(), 30)).decode().strip()
            assert line, "the sandbox stopped before printing its settings"
            if line.startswith("#") and settings:
                break
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                settings[key] = value
        env = clean_env(
            **settings,
            WEB_PORT="0",
            DATABASE_URL=f"sqlite:///{tmp_path}/bot.db",
            CATALOG_PATH=str(ROOT / "catalog.toml"),
        )
        async with process("-m", "bot", "run", cwd=tmp_path, env=env) as bot:
            async with aiohttp.ClientSession() as http:
                user = BotUser(settings["TELEGRAM_API_URL"], CUSTOMER, session=http)
                await user.send("/start")
                await user.wait_message("Catalog", timeout=30)
            bot.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(bot.communicate(), 30)
            assert bot.returncode == 0, output.decode()
            assert settings["BOT_TOKEN"] not in output.decode()  # secrets stay out of the logs
        sandbox.send_signal(signal.SIGTERM)
        await asyncio.wait_for(sandbox.wait(), 30)
        assert sandbox.returncode == 0
