"""One Telegram user acting through the Telegram emulator's control API: sends text, presses
buttons like a client (waiting for the spinner, i.e. the callback answer), reads the chat.
Used by the tests and the demo."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

Json = dict[str, Any]


def buttons(message: Json) -> list[Json]:
    return [b for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row]


def _find_button(message: Json, text: str) -> Json | None:
    exact = [b for b in buttons(message) if b["text"] == text]
    loose = [b for b in buttons(message) if b["text"].startswith(text)]
    return (exact or loose or [None])[0]


def button_url(message: Json, text: str) -> str:
    button = _find_button(message, text)
    if button is None or "url" not in button:
        raise AssertionError(f"no URL button {text!r} in {message.get('text')!r}")
    return str(button["url"])


def transcript(messages: list[Json]) -> str:
    lines = []
    for message in messages:
        who = "bot" if message.get("from", {}).get("is_bot") else "user"
        body = message.get("text") or message.get("caption") or ""
        if message.get("photo"):
            body = "[photo] " + body
        if message.get("contact"):
            body = f"[contact {message['contact']['phone_number']}]"
        if message.get("document"):
            body = f"[document {message['document'].get('file_name', '')}] " + body
        for kind in ("invoice", "successful_payment", "refunded_payment"):
            if kind in message:
                paid = message[kind]
                amount = f"{paid['total_amount']} {paid['currency']}"
                body = f"[{kind} {amount}] {paid.get('title', '')}".rstrip()
        rendered = [
            f"[{b['text']} -> {b['url']}]" if "url" in b else f"[{b['text']}]"
            for b in buttons(message)
        ]
        text = body.replace("\n", "\n      ")
        lines.append(f"{who}> {text}" + (("\n      " + " ".join(rendered)) if rendered else ""))
    return "\n".join(lines)


class BotUser:
    def __init__(
        self,
        base_url: str,
        user_id: int,
        *,
        first_name: str = "Ada",
        language_code: str = "en",
        last_name: str = "",
        username: str = "",
        session: aiohttp.ClientSession | None = None,
        chat_id: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self.chat_id = user_id if chat_id is None else chat_id  # a group: a member writing there
        self.profile = {"first_name": first_name, "language_code": language_code}
        self.profile |= {k: v for k, v in (("last_name", last_name), ("username", username)) if v}
        self._session = session
        self._own_session = session is None
        self._baseline: tuple[int, dict[int, int]] = (0, {})

    async def __aenter__(self) -> BotUser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    async def _post(self, path: str, body: Json) -> Json:
        async with self.session.post(f"{self.base_url}{path}", json=body) as response:
            data = await response.json()
            if response.status != 200:
                raise AssertionError(f"{path}: {data}")
            return data

    async def _mark(self) -> None:
        """Remember what the chat looks like now; wait_message looks for what comes after."""
        messages = await self.messages()
        last = max((m["message_id"] for m in messages), default=0)
        self._baseline = (last, {m["message_id"]: m.get("edit_count", 0) for m in messages})

    async def send(self, text: str, *, reply_to: int | None = None) -> int:
        """Write in the chat; `reply_to`: as a reply to that message (Telegram's Reply)."""
        await self._mark()
        body: Json = {"text": text, "chat_id": self.chat_id, **self.profile}
        if reply_to is not None:
            body["reply_to_message_id"] = reply_to
        answer = await self._post(f"/sandbox/users/{self.user_id}/send", body)
        self._baseline = (answer["message_id"], self._baseline[1])
        return int(answer["message_id"])

    async def send_contact(self, phone_number: str, *, owner: int | None = None) -> int:
        """Share a phone number: this user's own, as Telegram's request-contact button sends
        it, or a contact card of `owner` (another user id; 0: someone not on Telegram)."""
        await self._mark()
        body = {"phone_number": phone_number, **self.profile}
        if owner is not None:
            body["contact_user_id"] = owner
        answer = await self._post(f"/sandbox/users/{self.user_id}/send_contact", body)
        self._baseline = (answer["message_id"], self._baseline[1])
        return int(answer["message_id"])

    async def reply_keyboard(self) -> list[Json]:
        """The buttons of the reply keyboard the bot shows in this chat now (empty: none)."""
        url = f"{self.base_url}/sandbox/chats/{self.user_id}/messages"
        async with self.session.get(url) as response:
            keyboard = (await response.json()).get("reply_keyboard") or {}
        return [b for row in keyboard.get("keyboard", []) for b in row]

    async def press(
        self,
        data: str | None = None,
        *,
        text: str | None = None,
        message_id: int | None = None,
        force: bool = False,
        wait_answer: bool = True,
    ) -> Json | None:
        """Press an inline button by its callback data or its text (the newest bot message with
        it, or `message_id`); returns the bot's answer to the query, like a client's spinner."""
        if data is None:
            if text is None:
                raise ValueError("press() needs data or text")
            candidates = list(reversed(await self.bot_messages()))
            if message_id is not None:
                candidates = [m for m in candidates if m["message_id"] == message_id]
            for message in candidates:
                button = _find_button(message, text)
                if button is not None and "callback_data" in button:
                    data, message_id = button["callback_data"], message["message_id"]
                    break
            else:
                raise AssertionError(
                    f"no button {text!r} in the chat:\n{transcript(await self.messages())}"
                )
        if message_id is None:
            message_id = (await self.bot_messages())[-1]["message_id"]
        await self._mark()
        answer = await self._post(
            f"/sandbox/users/{self.user_id}/press",
            {"message_id": message_id, "data": data, "force": force, "chat_id": self.chat_id},
        )
        if not wait_answer:
            return None
        return await self._wait_answer(answer["callback_query_id"])

    async def _wait_answer(self, query_id: str, timeout: float = 5.0) -> Json:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for answer in await self.answers():
                if answer["callback_query_id"] == query_id:
                    return answer
            await asyncio.sleep(0.02)
        raise AssertionError(f"the bot did not answer the button press {query_id}")

    async def pay_invoice(self, **body: Any) -> Json:
        """Pay an invoice as this user: the newest invoice message in the chat, or the one named
        by `message_id` or `link`. Waits for the bot's pre-checkout answer; the result says
        what happened: {"ok", "charge_id", "error_message", "answered_in", "timed_out", ...}.
        `timeout=` gives up sooner, `drop_update=True` charges without telling the bot."""
        return await self._post(f"/sandbox/users/{self.user_id}/pay_invoice", body)

    async def redeliver_payment(self, charge_id: str) -> Json:
        """Deliver the charge's `successful_payment` message to the bot once more."""
        return await self._post(
            f"/sandbox/users/{self.user_id}/redeliver_payment", {"charge_id": charge_id}
        )

    async def messages(self) -> list[Json]:
        url = f"{self.base_url}/sandbox/chats/{self.chat_id}/messages"
        async with self.session.get(url) as response:
            return list((await response.json())["messages"])

    async def bot_messages(self) -> list[Json]:
        return [m for m in await self.messages() if m.get("from", {}).get("is_bot")]

    async def answers(self) -> list[Json]:
        url = f"{self.base_url}/sandbox/users/{self.user_id}/answers"
        async with self.session.get(url) as response:
            return list((await response.json())["answers"])

    async def wait_message(
        self,
        contains: str | None = None,
        *,
        predicate: Callable[[Json], bool] | None = None,
        after_id: int | None = None,
        timeout: float = 5.0,
    ) -> Json:
        """The first bot message, new or edited since this user's last action, that matches."""
        last, edits = self._baseline if after_id is None else (after_id, {})
        deadline = time.monotonic() + timeout
        while True:
            for message in await self.bot_messages():
                fresh = message["message_id"] > last or message.get("edit_count", 0) > edits.get(
                    message["message_id"], 0
                )
                body = message.get("text") or message.get("caption") or ""
                wanted = contains is None or contains in body
                if fresh and wanted and (predicate is None or predicate(message)):
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no bot message with {contains!r} within {timeout}s; the chat:\n"
                    + transcript(await self.messages())
                )
            await asyncio.sleep(0.03)
