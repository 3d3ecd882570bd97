"""The Telegram emulator's flood limits, on request: a new message beyond one a second to a
chat, 20 a minute to a group or 30 a second in all is answered 429 with `retry_after`, as
Telegram answers it; off, as every other test runs, nothing is refused."""

from __future__ import annotations

import asyncio

import aiohttp

from sandbox.telegram import TelegramServer


async def send(http: aiohttp.ClientSession, telegram: TelegramServer, chat_id: int) -> dict:
    url = f"{telegram.url}/bot{telegram.token}/sendMessage"
    async with http.post(url, json={"chat_id": chat_id, "text": "hi"}) as answer:
        body = await answer.json()
        assert answer.status == (200 if body["ok"] else body["error_code"])
        return body


def refused(answers: list[dict]) -> list[int]:
    """The retry_after of each 429 answer."""
    return [a["parameters"]["retry_after"] for a in answers if a.get("error_code") == 429]


async def test_a_second_message_to_a_chat_within_a_second_is_refused(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    telegram.enforce_flood_limits()
    answers = [await send(http, telegram, 9001) for _ in range(2)]
    answers.append(await send(http, telegram, 9002))  # another chat is free
    assert refused(answers) == [1]
    assert [a["ok"] for a in answers] == [True, False, True]
    assert [m["text"] for m in telegram.messages[9001]] == ["hi"]  # the refused one is not sent
    assert [(t[1], t[3], t[4]) for t in telegram.timeline] == [
        ("sendmessage", 0, None),
        ("sendmessage", 429, 1),
        ("sendmessage", 0, None),
    ]


async def test_messages_beyond_the_overall_rate_are_refused(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    telegram.enforce_flood_limits(per_second=2)
    answers = await asyncio.gather(*(send(http, telegram, 9100 + n) for n in range(3)))
    assert refused(list(answers)) == [1]


async def test_a_group_takes_its_messages_a_minute_and_no_more(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    telegram.enforce_flood_limits(chat_gap=0, group_per_minute=3)
    answers = [await send(http, telegram, -9200) for _ in range(4)]
    (retry_after,) = refused(answers)
    assert 59 <= retry_after <= 60
    assert len(telegram.messages[-9200]) == 3


async def test_without_the_limits_nothing_is_refused(
    telegram: TelegramServer, http: aiohttp.ClientSession
) -> None:
    telegram.enforce_flood_limits()
    telegram.reset()  # a reset turns them off, as it forgets every other knob
    answers = [await send(http, telegram, 9300) for _ in range(5)]
    answers += [await send(http, telegram, -9301) for _ in range(25)]
    assert refused(answers) == []
