"""Every chat handler fed random text, commands with random arguments and forged callback data,
as a customer, an admin, a support member and in the merchant chat, through the Telegram
emulator. Holds when every message in a private chat and every button press gets an answer,
none of them the generic apology, and nothing logs a traceback.

    python -m bench.reliability.chat_fuzz [--actions N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bench.reliability.fuzz import capture_logs, emulators
from bot.app import BotApp
from bot.demo import sandbox_settings
from sandbox.botuser import BotUser

APOLOGY = "Something went wrong on our side"
CUSTOMER, ADMIN, SUPPORT, MERCHANT_CHAT = 1001, 42, 77, -1000001
COMMANDS = (
    "start", "catalog", "cart", "orders", "language", "help", "cards", "admin", "order",
    "find", "refund", "reconcile", "review", "stats", "today", "export", "nosuch", "START",
)  # fmt: skip
PREFIXES = (
    "c", "p", "k", "w", "dl", "o", "cd", "rf", "ux", "fu", "tn", "rv", "rp", "op", "l", "so",
    "sf", "sv", "sc",
)  # fmt: skip
WORDS = (
    "", "0", "-1", "1", "2", "99999999999999999999999", "1e999", "NaN", "inf", "١٢", "x" * 300,
    "p_cezve", "p_" + "z" * 30, "'; DROP TABLE orders; --", "<b>bold</b>", "&amp;", "\u202e",
    "🛒", "paid", "refunded", "tr", "zz", "@someone", "+905321234567", "%s%n", "{id}", "\\",
)  # fmt: skip


@dataclass
class ChatReport:
    actions: Counter[str] = field(default_factory=Counter)
    unanswered: list[str] = field(default_factory=list)
    apologies: list[str] = field(default_factory=list)
    bad_logs: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not (self.unanswered or self.apologies or self.bad_logs)

    def as_dict(self) -> dict[str, object]:
        return {
            "actions": dict(self.actions),
            "unanswered": self.unanswered[:20],
            "apologies": self.apologies[:20],
            "bad_logs": self.bad_logs[:20],
        }


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 4))).strip() or "?"
    alphabet = "aZ09 ./:_-\n\t🛒ürünĞ\u0000\u200b\u202e<>&\"'"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 200))).strip() or "."


def random_command(rng: random.Random) -> str:
    args = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 4)))
    suffix = rng.choice(("", "", "@sandbox_bot", "@other_bot"))
    return f"/{rng.choice(COMMANDS)}{suffix} {args}".strip()


def random_callback(rng: random.Random) -> str:
    if rng.random() < 0.2:  # random bytes, as a modified client could send (64 at most)
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(1, 64)))
    fields = [rng.choice(WORDS)[:20] for _ in range(rng.randrange(0, 5))]
    return ":".join([rng.choice(PREFIXES), *fields])[:64]


async def act(who: BotUser, rng: random.Random, report: ChatReport, *, private: bool) -> None:
    """One random action and its check."""
    kind = rng.choice(("text", "command", "command", "callback", "callback"))
    report.actions[kind] += 1
    if kind == "callback":
        messages = await who.bot_messages()
        if not messages:
            return
        data = random_callback(rng)
        try:
            answer = await who.press(data, message_id=messages[-1]["message_id"], force=True)
        except AssertionError:
            report.unanswered.append(f"{who.user_id} pressed {data!r}")
            return
        if APOLOGY in str((answer or {}).get("text")):
            report.apologies.append(f"{who.user_id} pressed {data!r}")
        return
    text = random_text(rng) if kind == "text" else random_command(rng)
    await who.send(text)
    try:
        reply = await who.wait_message(timeout=5.0 if private else 0.3)
    except AssertionError:
        if private:  # the merchant's group is never chattered in: silence is its answer
            report.unanswered.append(f"{who.user_id} sent {text!r}")
        return
    if APOLOGY in (reply.get("text") or reply.get("caption") or ""):
        report.apologies.append(f"{who.user_id} sent {text!r}")


async def fuzz_chats(telegram_url: str, actions: int, seed: int, session: object) -> ChatReport:
    """`actions` random actions in each of the four chats, the chats side by side."""
    report = ChatReport()
    people = [
        (BotUser(telegram_url, CUSTOMER, session=session), True),  # type: ignore[arg-type]
        (BotUser(telegram_url, ADMIN, session=session), True),  # type: ignore[arg-type]
        (BotUser(telegram_url, SUPPORT, session=session), True),  # type: ignore[arg-type]
        (BotUser(telegram_url, MERCHANT_CHAT, session=session), False),  # type: ignore[arg-type]
    ]

    async def chat(index: int, who: BotUser, private: bool) -> None:
        rng = random.Random(seed * 10 + index)
        await who.send("/start" if private else "/today")
        await who.wait_message(timeout=5.0)
        for _ in range(actions):
            await act(who, rng, report, private=private)

    await asyncio.gather(*(chat(i, who, private) for i, (who, private) in enumerate(people)))
    return report


async def run(actions: int, seed: int) -> ChatReport:
    with tempfile.TemporaryDirectory() as tmp:
        async with emulators() as servers, capture_logs() as log:
            telegram = servers[0]
            settings = sandbox_settings(
                *servers,
                database_url=f"sqlite:///{tmp}/bot.db",
                admin_ids=frozenset({ADMIN}),
                support_ids=frozenset({SUPPORT}),
                merchant_chat_id=MERCHANT_CHAT,
                sweep_every=3600,
            )
            async with BotApp(settings), aiohttp.ClientSession() as session:
                report = await fuzz_chats(telegram.url, actions, seed, session)
            report.bad_logs = list(log.bad)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", type=int, default=1000, help="in each of the four chats")
    parser.add_argument("--seed", type=int, default=25)
    args = parser.parse_args()
    report = asyncio.run(run(args.actions, args.seed))
    print(json.dumps(report.as_dict(), indent=1))
    raise SystemExit(0 if report.held else 1)


if __name__ == "__main__":
    main()
