"""An emulator of the Telegram Bot API, good enough for aiogram 3, plus a control API that acts
as users (send text or a contact, press buttons) and reads what the bot sent, and the reply
keyboard each chat shows.

Written from the Bot API documentation and PROVIDERS.md's notes on what aiogram validates:
`getMe` with `is_bot`/`first_name`, callback queries with `chat_instance` and the full message,
Unix-second dates, `editMessageText` returning the Message (no markup removes the keyboard, an
identical edit is 400), errors as `{"ok": false, "error_code", "description"}` with the same
HTTP status (429 adds `parameters.retry_after`), long-polling `getUpdates`, 409 while a webhook
is set and 409 to the older of two long polls at once (the newer wins, as Telegram does when two
processes poll with one token), `callback_data` over 64 bytes refused, a callback query answered
once. Telegram's flood limits on new messages (one a second to a chat, 20 a minute to a group,
30 a second in all), answered with 429 and `retry_after` as Telegram does, on request only
(`enforce_flood_limits`), so a test that sends quickly is not refused.

Telegram Stars payments as Telegram runs them: `sendInvoice`/`createInvoiceLink` check an XTR
invoice (no provider token, one price line, payload 1-128 bytes); a user paying sends the bot a
`pre_checkout_query` that must be answered within 10 s, and only an "ok" in time makes a charge,
delivered as a `successful_payment` message (again on request: Telegram delivers at least once,
or never, to test reconciliation); `refundStarPayment` refunds a charge once and tells the bot
with a `refunded_payment` message; `getStarTransactions` lists charges and refunds in
chronological order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import math
import re
import secrets
import time
import urllib.parse
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.base import FakeServer

Json = dict[str, Any]


CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running"
)


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


# Telegram's length limits, counted on the text the user sees.
TEXT_LIMIT = 4096
MERCHANT_CHAT_ID = -1000001  # the merchant's group in `env()`: a chat like any other here
CAPTION_LIMIT = 1024
ANSWER_LIMIT = 200  # answerCallbackQuery's notification or alert

# The tags Telegram's HTML parse mode knows; anything else is refused, as Telegram does.
HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a"}
    | {"tg-emoji", "code", "pre", "blockquote"}
)


# Telegram's flood limits (the Bot API FAQ): the calls that post a new message count
SENDS = frozenset({"sendmessage", "sendphoto", "senddocument", "sendinvoice"})
CHAT_GAP = 1.0  # seconds between two messages to one chat
GROUP_PER_MINUTE = 20
PER_SECOND = 30


# Telegram Stars. The answer window is Telegram's; `pre_checkout_timeout` shortens it in tests.
STARS = "XTR"
PRE_CHECKOUT_TIMEOUT = 10.0
WEBHOOK_CONNECTIONS = 40  # setWebhook's max_connections unless it says (1-100)
TITLE_LIMIT = 32
DESCRIPTION_LIMIT = 255
PAYLOAD_LIMIT = 128  # bytes
# Invoice options a Stars invoice cannot have: Telegram answers STARS_INVOICE_INVALID to any.
NOT_FOR_STARS = (
    "max_tip_amount",
    "suggested_tip_amounts",
    "need_name",
    "need_phone_number",
    "need_email",
    "need_shipping_address",
    "send_phone_number_to_provider",
    "send_email_to_provider",
    "is_flexible",
)
INVOICE_FIELDS = ("title", "description", "start_parameter", "currency", "total_amount")


class _TextOnly(HTMLParser):
    """Telegram's HTML parse mode: tags become entities, the text keeps only the characters.
    An unknown or unclosed tag is a 400 "can't parse entities", like the real API."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self.parts: list[str] = []
        self.open: list[str] = []

    def _refuse(self, problem: str) -> ApiError:
        line, column = self.getpos()
        index = sum(len(row) + 1 for row in self.text.split("\n")[: line - 1]) + column
        offset = len(self.text[:index].encode())
        return ApiError(
            400, f"Bad Request: can't parse entities: {problem} at byte offset {offset}"
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise self._refuse(f'Unsupported start tag "{tag}"')
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            raise self._refuse(f'Unexpected end tag "{tag}"')
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _plain(text: str, parse_mode: str | None, limit: int = TEXT_LIMIT) -> str:
    """The text as the user sees it; 400 where Telegram would refuse it (bad HTML, too long:
    4096 characters for a message, 1024 for a caption, counted after parsing)."""
    shown = _parsed(text, parse_mode)
    if len(shown) > limit:
        what = "message caption" if limit == CAPTION_LIMIT else "message"
        raise ApiError(400, f"Bad Request: {what} is too long")
    return shown


def _parsed(text: str, parse_mode: str | None) -> str:
    if (parse_mode or "").upper() != "HTML":
        return text
    parser = _TextOnly(text)
    parser.feed(text)
    parser.close()
    if parser.open:
        raise ApiError(
            400,
            f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            f'"{parser.open[-1]}"',
        )
    return "".join(parser.parts)


class TelegramServer(FakeServer):
    name = "telegram"

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "checkout_demo_bot",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.token = token
        self.bot = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "Checkout Demo",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[tuple[str, Json]] = []
        self._update_ids = itertools.count(1)  # never restarts: see reset()
        self._generation = 0
        self._changed = asyncio.Event()
        self._pusher: asyncio.Task[None] | None = None  # the one delivering to the webhook
        self._webhook_wake = asyncio.Event()  # a new update for it, or a new webhook
        self._pushers: set[asyncio.Task[None]] = set()  # it and any cancelled ones still ending
        self.reset()
        self.app.router.add_route("*", "/bot{token}/{method}", self._api)
        self.app.router.add_get("/file/bot{token}/{file_id}", self._file)
        self.app.router.add_post("/sandbox/users/{user_id}/send", self._user_send)
        self.app.router.add_post("/sandbox/users/{user_id}/press", self._user_press)
        self.app.router.add_post("/sandbox/users/{user_id}/send_contact", self._user_contact)
        self.app.router.add_get("/sandbox/users/{user_id}/answers", self._user_answers)
        self.app.router.add_post("/sandbox/users/{user_id}/pay_invoice", self._user_pay)
        self.app.router.add_post("/sandbox/users/{user_id}/redeliver_payment", self._user_redeliver)
        self.app.router.add_get("/sandbox/chats/{chat_id}/messages", self._chat_messages)
        self.app.router.add_get("/sandbox/state", self._state)

    def env(self) -> dict[str, str]:
        # the Bot API is the Stars provider: this emulator runs its payments too; a shop that
        # ships things needs a merchant chat (bot check refuses without), a group kept here
        return {
            "BOT_TOKEN": self.token,
            "TELEGRAM_API_URL": self.url,
            "STARS_ENABLED": "true",
            "MERCHANT_CHAT_ID": str(MERCHANT_CHAT_ID),
        }

    def hints(self) -> list[str]:
        return [
            f"# act as a user:  curl -XPOST {self.url}/sandbox/users/1001/send "
            "-H 'content-type: application/json' -d '{\"text\": \"/start\"}'",
            f"# read the chat:  curl {self.url}/sandbox/chats/1001/messages",
            f"# the merchant's: curl {self.url}/sandbox/chats/{MERCHANT_CHAT_ID}/messages",
            f"# press a button: curl -XPOST {self.url}/sandbox/users/1001/press "
            "-H 'content-type: application/json' "
            '-d \'{"message_id": <id>, "data": "<callback_data>"}\'',
            f"# share a phone:  curl -XPOST {self.url}/sandbox/users/1001/send_contact "
            "-H 'content-type: application/json' -d '{\"phone_number\": \"905321234567\"}' "
            "(the contact button of the delivery questions)",
            f"# pay the newest Stars invoice: "
            f"curl -XPOST {self.url}/sandbox/users/1001/pay_invoice",
        ]

    def reset(self) -> None:
        """Also stops the webhook pusher and ends every long poll in progress (getUpdates,
        chat reads) with an empty answer, so a stopped bot's requests cannot take or be handed
        a later test's updates. Update ids keep growing, as Telegram's do: a stale
        `getUpdates?offset=N` arriving after a reset then cannot drop new updates. A payment
        waiting for its pre-checkout answer ends unpaid, so it cannot charge into the next test."""
        for query in getattr(self, "pre_checkouts", {}).values():
            query["answered"].set()  # its waiter sees the new generation and gives up
        for pusher in self._pushers:
            pusher.cancel()  # ends at its next await; stop() awaits it
        self._pusher = None
        self._generation += 1
        self._changed.set()  # wakes the waiters of the old generation
        self.chats: dict[int, Json] = {}
        self.messages: dict[int, list[Json]] = {}
        self.keyboards: dict[int, Json] = {}  # the reply keyboard each chat shows now
        self.users: dict[int, Json] = {}
        self.updates: list[Json] = []
        self._newest_poll = 0  # the number of the latest getUpdates: an older one still open loses
        self.commands: dict[str, list[Json]] = {}
        self.webhook: Json | None = None
        # several replicas behind one webhook (a load balancer): each update goes to the next
        # of these base URLs (scheme://host:port) in turn, the next one again when it fails
        self.webhook_spread: list[str] = []
        self.webhook_taken: dict[str, int] = {}  # updates each webhook URL answered 2xx to
        self.webhook_refused: list[tuple[int, int]] = []  # (update_id, status) of non-2xx
        self._spread_turn = itertools.count()
        self.files: dict[str, bytes] = {}
        self.queries: dict[str, Json] = {}
        self.answers: dict[int, list[Json]] = {}
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._failures: dict[str, list[ApiError]] = {}
        self._refusing: dict[str, ApiError] = {}
        # every Bot API call: (time.monotonic(), method, chat_id, error code or 0, retry_after)
        self.timeline: list[tuple[float, str, object, int, int | None]] = []
        self._changed = asyncio.Event()
        self.calls.clear()
        self._hang_on: str | None = None
        self.hung = asyncio.Event()
        if hasattr(self, "_released"):
            self._released.set()
        self._released = asyncio.Event()
        self.invoices: dict[tuple[int, int], Json] = {}  # by (chat_id, message_id)
        self.force_replies: set[tuple[int, int]] = set()  # (chat_id, message_id) asked so
        self.invoice_links: dict[str, Json] = {}
        self.pre_checkouts: dict[str, Json] = {}
        self.charges: dict[str, Json] = {}  # by telegram_payment_charge_id
        self.star_transactions: list[Json] = []  # chronological, as getStarTransactions lists
        self.pre_checkout_timeout = PRE_CHECKOUT_TIMEOUT
        self.flood_limits: tuple[float, int, int] | None = None  # (chat gap, group/min, /s)
        self._sent_all: collections.deque[float] = collections.deque()  # the last second's
        self._sent_to: dict[int, collections.deque[float]] = {}  # the last minute's, per chat

    # --- knobs --------------------------------------------------------------------------

    def hang_after_accepting(self, contains: str) -> None:
        """The next sendMessage whose text has `contains` is stored (Telegram took it) but its
        answer never comes until `release()` or a reset: what a bot killed, or cut off, right
        after Telegram accepted a message sees. `hung` is set when it happens."""
        self._hang_on = contains
        self.hung.clear()

    def release(self) -> None:
        self._released.set()
        self._released = asyncio.Event()

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        description: str = "Too Many Requests: retry after 1",
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` fail (times=0 clears the knob)."""
        error = ApiError(error_code, description, retry_after if error_code == 429 else None)
        self._failures[method.lower()] = [error] * times

    def refuse(self, method: str, error_code: int = 429, *, retry_after: int | None = 1) -> None:
        """Every call of `method` fails until `refuse(method, 0)`: an outage (5xx) or a
        429 storm, each refusal with its `retry_after` noted in `timeline`."""
        if not error_code:
            self._refusing.pop(method.lower(), None)
            return
        description = "Too Many Requests" if error_code == 429 else "Internal Server Error"
        self._refusing[method.lower()] = ApiError(
            error_code, description, retry_after if error_code == 429 else None
        )

    def enforce_flood_limits(
        self,
        chat_gap: float = CHAT_GAP,
        group_per_minute: int = GROUP_PER_MINUTE,
        per_second: int = PER_SECOND,
        *,
        on: bool = True,
    ) -> None:
        """Refuse a new message beyond Telegram's limits with 429 and the whole seconds to
        wait, as Telegram does; off again with `on=False` (and at a reset)."""
        self.flood_limits = (chat_gap, group_per_minute, per_second) if on else None
        self._sent_all.clear()
        self._sent_to.clear()

    def _flood_wait(self, chat_id: object, now: float) -> float:
        """Seconds until a new message to `chat_id` is within the limits (0: now)."""
        assert self.flood_limits is not None
        chat_gap, group_per_minute, per_second = self.flood_limits
        while self._sent_all and now - self._sent_all[0] >= 1.0:
            self._sent_all.popleft()
        waits = [self._sent_all[0] + 1.0 - now] if len(self._sent_all) >= per_second else []
        try:
            chat = int(str(chat_id))
        except ValueError:
            return max(waits, default=0.0)
        sent = self._sent_to.get(chat, collections.deque())
        while sent and now - sent[0] >= 60.0:
            sent.popleft()
        if sent and now - sent[-1] < chat_gap:
            waits.append(sent[-1] + chat_gap - now)
        if chat < 0 and len(sent) >= group_per_minute:
            waits.append(sent[-group_per_minute] + 60.0 - now)
        return max(waits, default=0.0)

    def _flood_count(self, chat_id: object, now: float) -> None:
        self._sent_all.append(now)
        with contextlib.suppress(ValueError):
            self._sent_to.setdefault(int(str(chat_id)), collections.deque()).append(now)

    # --- the Bot API --------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(ApiError(401, "Unauthorized"))
        method = request.match_info["method"].lower()
        try:
            params = await _params(request)
            self.calls.append((method, params))
            failures = self._failures.get(method)
            refusal = failures.pop() if failures else self._refusing.get(method)
            now, chat_id = time.monotonic(), params.get("chat_id")
            flooded = self.flood_limits is not None and method in SENDS
            if flooded and not refusal and (wait := self._flood_wait(chat_id, now)) > 0:
                seconds = max(1, math.ceil(wait))
                refusal = ApiError(429, f"Too Many Requests: retry after {seconds}", seconds)
            code, retry_after = (refusal.code, refusal.retry_after) if refusal else (0, None)
            self.timeline.append((now, method, chat_id, code, retry_after))
            if refusal:
                raise refusal
            handler = self._methods().get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
            if flooded:
                self._flood_count(chat_id, now)
        except ApiError as exc:
            return _error(exc)
        except (KeyError, ValueError, TypeError) as exc:
            return _error(ApiError(400, f"Bad Request: {exc}"))
        return web.json_response({"ok": True, "result": result})

    def _methods(self) -> dict[str, Any]:
        return {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "editmessagetext": self._edit_text,
            "editmessagecaption": self._edit_caption,
            "editmessagereplymarkup": self._edit_markup,
            "deletemessage": self._delete_message,
            "answercallbackquery": self._answer_callback,
            "setmycommands": self._set_commands,
            "getmycommands": self._get_commands,
            "deletemycommands": self._delete_commands,
            "sendchataction": self._true,
            "setchatmenubutton": self._true,
            "getchat": self._get_chat,
            "getfile": self._get_file,
            "sendinvoice": self._send_invoice,
            "createinvoicelink": self._create_invoice_link,
            "answerprecheckoutquery": self._answer_pre_checkout,
            "refundstarpayment": self._refund_star_payment,
            "getstartransactions": self._get_star_transactions,
        }

    async def _true(self, params: Json) -> bool:
        return True

    async def _get_me(self, params: Json) -> Json:
        return self.bot

    async def _get_updates(self, params: Json) -> list[Json]:
        if self.webhook:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = min(int(params.get("limit") or 100), 100)
        timeout = min(float(params.get("timeout") or 0), 50)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        generation = self._generation
        self._newest_poll += 1
        mine = self._newest_poll
        self._changed.set()  # an older poll still waiting ends with a 409
        while not self.updates and time.monotonic() < deadline and not self.webhook:
            await self._wait_change(deadline)
            if self._generation != generation:
                return []  # reset while waiting: the updates now belong to someone else
            if self._newest_poll != mine:
                raise ApiError(409, CONFLICT)
        return self.updates[:limit]

    async def _wait_change(self, deadline: float) -> None:
        changed = self._changed
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), deadline - time.monotonic())

    async def _set_webhook(self, params: Json) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params)
        if not url.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
        try:
            connections = int(params.get("max_connections") or WEBHOOK_CONNECTIONS)
        except ValueError:
            raise ApiError(400, "Bad Request: max_connections must be a number") from None
        self.webhook = {
            "url": url,
            "secret_token": params.get("secret_token"),
            "max_connections": min(max(connections, 1), 100),
        }
        if _flag(params.get("drop_pending_updates")):
            self.updates.clear()
        self._changed.set()
        self._kick_pusher()
        return True

    async def _delete_webhook(self, params: Json) -> bool:
        self.webhook = None
        if _flag(params.get("drop_pending_updates")):
            self.updates.clear()
        return True

    async def _get_webhook_info(self, params: Json) -> Json:
        return {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }

    async def _send_message(self, params: Json) -> Json:
        text = str(params.get("text") or "")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        message = self._bot_message(params)
        message["text"] = _plain(text, params.get("parse_mode"))
        stored = self._store(message)
        if self._hang_on and self._hang_on in message["text"]:
            self._hang_on = None
            self.hung.set()
            await self._released.wait()  # accepted, and the answer never reaches the bot
        return stored

    async def _send_photo(self, params: Json) -> Json:
        photo = params.get("photo")
        if isinstance(photo, str) and photo.startswith("attach://"):
            photo = params.get(photo.removeprefix("attach://"))  # an upload: that part's bytes
        if isinstance(photo, bytes):
            file_id = "photo-" + secrets.token_hex(8)
            self.files[file_id] = photo
        elif isinstance(photo, str) and photo:
            file_id = photo if photo in self.files else "url-" + secrets.token_hex(8)
        else:
            raise ApiError(400, "Bad Request: there is no photo in the request")
        message = self._bot_message(params)
        message["photo"] = [
            {"file_id": file_id, "file_unique_id": file_id[-8:], "width": 90, "height": 90},
            {"file_id": file_id, "file_unique_id": file_id[-8:] + "x", "width": 320, "height": 320},
        ]
        if params.get("caption"):
            message["caption"] = _plain(
                str(params["caption"]), params.get("parse_mode"), CAPTION_LIMIT
            )
        return self._store(message)

    async def _send_document(self, params: Json) -> Json:
        """A file the bot uploads (a receipt): kept in `files` under its file_id, with the
        name the upload gave it."""
        document, name = params.get("document"), "document"
        if isinstance(document, str) and document.startswith("attach://"):
            name = document.removeprefix("attach://")  # the upload is the part of that name
            document = params.get(name)
        if not isinstance(document, bytes) or not document:
            raise ApiError(400, "Bad Request: there is no document in the request")
        file_id = "doc-" + secrets.token_hex(8)
        self.files[file_id] = document
        message = self._bot_message(params)
        message["document"] = {
            "file_id": file_id,
            "file_unique_id": file_id[-8:],
            "file_name": params.get("_filenames", {}).get(name, "file"),
            "file_size": len(document),
        }
        if params.get("caption"):
            message["caption"] = _plain(
                str(params["caption"]), params.get("parse_mode"), CAPTION_LIMIT
            )
        return self._store(message)

    def _bot_message(self, params: Json) -> Json:
        chat = self._chat(int(params["chat_id"]))
        message: Json = {
            "message_id": next(self._message_ids.setdefault(chat["id"], itertools.count(1))),
            "from": self.bot,
            "chat": chat,
            "date": int(time.time()),
        }
        markup = _markup(params.get("reply_markup"))
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        elif markup and "keyboard" in markup:  # the chat's, not the message's (as Telegram)
            self.keyboards[chat["id"]] = markup
        elif markup and markup.get("remove_keyboard"):
            self.keyboards.pop(chat["id"], None)
        elif markup and markup.get("force_reply"):  # the client opens a reply to it
            self.force_replies.add((chat["id"], message["message_id"]))
        return message

    def _store(self, message: Json) -> Json:
        self.messages.setdefault(message["chat"]["id"], []).append(message)
        self._changed.set()
        return message

    def _find(self, params: Json) -> Json:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        for message in self.messages.get(chat_id, []):
            if message["message_id"] == message_id:
                return message
        raise ApiError(400, "Bad Request: message to edit not found")

    def _edit(self, message: Json, field: str, value: str | None, params: Json) -> Json:
        markup = _markup(params.get("reply_markup"))
        if markup and "inline_keyboard" not in markup:
            raise ApiError(400, "Bad Request: inline keyboard expected")
        if message.get(field) == value and message.get("reply_markup") == markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        if value is not None:
            message[field] = value
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        message["edit_date"] = int(time.time())
        message["edit_count"] = message.get("edit_count", 0) + 1
        self._changed.set()
        return message

    async def _edit_text(self, params: Json) -> Json:
        message = self._find(params)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = str(params.get("text") or "")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        return self._edit(message, "text", _plain(text, params.get("parse_mode")), params)

    async def _edit_caption(self, params: Json) -> Json:
        message = self._find(params)
        caption = _plain(str(params.get("caption") or ""), params.get("parse_mode"), CAPTION_LIMIT)
        return self._edit(message, "caption", caption, params)

    async def _edit_markup(self, params: Json) -> Json:
        message = self._find(params)
        field = "text" if "text" in message else "caption"
        return self._edit(message, field, message.get(field), params)

    async def _delete_message(self, params: Json) -> bool:
        message = self._find(params)
        self.messages[message["chat"]["id"]].remove(message)
        return True

    async def _answer_callback(self, params: Json) -> bool:
        query = self.queries.get(str(params.get("callback_query_id")))
        if query is None or query["answered"]:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        if len(str(params.get("text") or "")) > ANSWER_LIMIT:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        query["answered"] = True
        self.answers.setdefault(query["user_id"], []).append(
            {
                "callback_query_id": query["id"],
                "text": params.get("text"),
                "show_alert": _flag(params.get("show_alert")),
            }
        )
        self._changed.set()
        return True

    def _commands_key(self, params: Json) -> str:
        scope = params.get("scope")
        scope_type = (json.loads(scope) if isinstance(scope, str) else scope or {}).get("type")
        return f"{scope_type or 'default'}:{params.get('language_code') or ''}"

    async def _set_commands(self, params: Json) -> bool:
        commands = params.get("commands")
        commands = json.loads(commands) if isinstance(commands, str) else commands
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be a list of at most 100 commands")
        for command in commands:
            if not 1 <= len(command.get("command", "")) <= 32 or not command.get("description"):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        self.commands[self._commands_key(params)] = commands
        return True

    async def _get_commands(self, params: Json) -> list[Json]:
        return self.commands.get(self._commands_key(params), [])

    async def _delete_commands(self, params: Json) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    async def _get_chat(self, params: Json) -> Json:
        chat = dict(self._chat(int(params["chat_id"])))
        chat["accent_color_id"] = 0
        chat["max_reaction_count"] = 11
        return chat

    async def _get_file(self, params: Json) -> Json:
        file_id = str(params.get("file_id"))
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {"file_id": file_id, "file_unique_id": file_id[-8:], "file_path": file_id}

    async def _file(self, request: web.Request) -> web.StreamResponse:
        data = self.files.get(request.match_info["file_id"])
        if request.match_info["token"] != self.token or data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/octet-stream")

    # --- Telegram Stars -----------------------------------------------------------------

    async def _send_invoice(self, params: Json) -> Json:
        """An invoice message: the bot's keyboard must start with a pay button, no keyboard
        gets Telegram's own "Pay ⭐️N". The payload stays here, the chat only sees the rest."""
        invoice = _invoice(params)
        markup = _markup(params.get("reply_markup"))
        first_row = markup["inline_keyboard"][0] if markup else []
        if markup and not (first_row and first_row[0].get("pay")):
            raise ApiError(400, "Bad Request: REPLY_MARKUP_BUY_EMPTY")
        message = self._bot_message(params)
        if not markup:
            message["reply_markup"] = {"inline_keyboard": [[_pay_button(invoice)]]}
        message["invoice"] = {field: invoice[field] for field in INVOICE_FIELDS}
        chat_id, message_id = message["chat"]["id"], message["message_id"]
        self.invoices[(chat_id, message_id)] = {
            **invoice,
            "chat_id": chat_id,
            "message_id": message_id,
            "paid": False,
        }
        return self._store(message)

    async def _create_invoice_link(self, params: Json) -> str:
        """A link anyone can pay, any number of times (unlike an invoice message)."""
        invoice = _invoice(params)
        link = "https://t.me/$" + secrets.token_urlsafe(16)
        self.invoice_links[link] = {**invoice, "link": link}
        return link

    async def _answer_pre_checkout(self, params: Json) -> bool:
        """Once per query and only before its deadline (Telegram's 10 s, or earlier if the user
        gave up): later answers are refused, and the payment they were for never happened."""
        query = self.pre_checkouts.get(str(params.get("pre_checkout_query_id")))
        if query is None or query["answer"] is not None or time.monotonic() > query["deadline"]:
            raise ApiError(400, "Bad Request: QUERY_ID_INVALID")
        ok = _flag(params.get("ok"))
        error_message = str(params.get("error_message") or "")
        if not ok and not error_message.strip():
            raise ApiError(400, "Bad Request: ERROR_TEXT_EMPTY")
        query["answer"] = {
            "ok": ok,
            "error_message": None if ok else error_message,
            "after": time.monotonic() - query["sent"],
        }
        query["answered"].set()
        return True

    async def _refund_star_payment(self, params: Json) -> bool:
        """A charge is refunded whole and once; the bot hears of it as a `refunded_payment`
        message (Bot API 7.10) and sees it in getStarTransactions under the same id."""
        charge = self.charges.get(str(params.get("telegram_payment_charge_id") or ""))
        user_id = int(params["user_id"])
        if charge is None or charge["user_id"] != user_id or charge["currency"] != STARS:
            raise ApiError(400, "Bad Request: CHARGE_NOT_FOUND")
        if charge["refunded"]:
            raise ApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        charge["refunded"] = True
        self.star_transactions.append(_transaction(charge, "receiver", self._user(user_id, {})))
        refunded = {
            "currency": charge["currency"],
            "total_amount": charge["total_amount"],
            "invoice_payload": charge["invoice_payload"],
            "telegram_payment_charge_id": charge["id"],
        }
        self.push(
            "message", self._user_message(user_id, charge["chat_id"], refunded_payment=refunded)
        )
        return True

    async def _get_star_transactions(self, params: Json) -> Json:
        """Oldest first ("in chronological order"); offset skips, limit is clamped to 1-100."""
        offset = max(int(params.get("offset") or 0), 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        return {"transactions": self.star_transactions[offset : offset + limit]}

    def _payable(self, user_id: int, body: Json) -> Json:
        """The invoice the user pays: an invoice link, or an invoice message still in the chat
        (the one named, else the newest). A paid invoice message cannot be paid again."""
        if body.get("link"):
            if body["link"] not in self.invoice_links:
                raise ApiError(400, f"no invoice link {body['link']!r}")
            return self.invoice_links[body["link"]]
        chat_id = int(body.get("chat_id") or user_id)
        wanted = None if body.get("message_id") is None else int(body["message_id"])
        for message in reversed(self.messages.get(chat_id, [])):
            if "invoice" in message and wanted in (None, message["message_id"]):
                invoice = self.invoices[(chat_id, message["message_id"])]
                if invoice["paid"]:
                    raise ApiError(400, f"invoice message {message['message_id']} is already paid")
                return invoice
        which = "invoice message" if wanted is None else f"invoice message {wanted}"
        raise ApiError(400, f"no {which} in chat {chat_id}")

    async def _pre_checkout(self, user_id: int, invoice: Json, timeout: float) -> Json | None:
        """Send the bot the pre-checkout query and wait for its answer; None when it did not
        come in time (or the emulator was reset meanwhile). A late answer is then refused."""
        query_id = str(secrets.randbits(63))
        now = time.monotonic()
        query = {
            "sent": now,
            "deadline": now + timeout,
            "answer": None,
            "answered": asyncio.Event(),
        }
        self.pre_checkouts[query_id] = query
        generation = self._generation
        self.push(
            "pre_checkout_query",
            {
                "id": query_id,
                "from": self._user(user_id, {}),
                "currency": invoice["currency"],
                "total_amount": invoice["total_amount"],
                "invoice_payload": invoice["payload"],
            },
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(query["answered"].wait(), timeout)
        query["deadline"] = min(query["deadline"], time.monotonic())
        if self._generation != generation:
            return None
        return {"pre_checkout_query_id": query_id, **(query["answer"] or {})}

    def _charge(self, user_id: int, invoice: Json) -> Json:
        """What Telegram does after an "ok": take the stars, record the charge (and the star
        transaction) and write the `successful_payment` service message in the chat."""
        charge_id = "stx" + secrets.token_urlsafe(36)
        chat_id = int(invoice.get("chat_id") or user_id)
        paid = {
            "currency": invoice["currency"],
            "total_amount": invoice["total_amount"],
            "invoice_payload": invoice["payload"],
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": "" if invoice["currency"] == STARS else charge_id[3:],
        }
        charge = {
            "id": charge_id,
            "user_id": user_id,
            "chat_id": chat_id,
            "currency": invoice["currency"],
            "total_amount": invoice["total_amount"],
            "invoice_payload": invoice["payload"],
            "date": int(time.time()),
            "refunded": False,
            "message": self._user_message(user_id, chat_id, successful_payment=paid),
        }
        self.charges[charge_id] = charge
        if charge["currency"] == STARS:
            self.star_transactions.append(_transaction(charge, "source", self._user(user_id, {})))
        if "message_id" in invoice:
            invoice["paid"] = True
        return charge

    def _user_message(self, user_id: int, chat_id: int, **content: Json) -> Json:
        """A service message from the user in the chat (a payment, a refund), stored there."""
        message: Json = {
            "message_id": next(self._message_ids.setdefault(chat_id, itertools.count(1))),
            "from": self._user(user_id, {}),
            "chat": self._chat(chat_id),
            "date": int(time.time()),
            **content,
        }
        return self._store(message)

    # --- chats, users, updates ----------------------------------------------------------

    def _chat(self, chat_id: int) -> Json:
        if chat_id not in self.chats:
            if chat_id > 0:
                user = self.users.get(chat_id, {"first_name": f"User {chat_id}"})
                self.chats[chat_id] = {
                    "id": chat_id,
                    "type": "private",
                    "first_name": user["first_name"],
                }
            else:
                self.chats[chat_id] = {"id": chat_id, "type": "group", "title": f"Chat {chat_id}"}
        return self.chats[chat_id]

    def _user(self, user_id: int, profile: Json) -> Json:
        user = self.users.setdefault(user_id, {"id": user_id, "is_bot": False, "first_name": "Ada"})
        for key in ("first_name", "last_name", "username", "language_code"):
            if profile.get(key):
                user[key] = profile[key]
        return user

    def push(self, kind: str, payload: Json) -> int:
        update_id = next(self._update_ids)
        self.updates.append({"update_id": update_id, kind: payload})
        self._changed.set()
        self._kick_pusher()
        return update_id

    def _kick_pusher(self) -> None:
        self._webhook_wake.set()
        if self.webhook and (self._pusher is None or self._pusher.done()):
            self._pusher = asyncio.create_task(self._push_webhook())
            self._pushers.add(self._pusher)
            self._pusher.add_done_callback(self._pushers.discard)

    async def _push_webhook(self) -> None:
        """Deliver pending updates to the webhook: up to `max_connections` (40 unless
        setWebhook said) at a time, as Telegram does, and each chat's one at a time and in
        order (Telegram's documents do not say how it orders them; tests need one order)."""
        sending: dict[int, asyncio.Task[None]] = {}  # update id -> its delivery
        async with aiohttp.ClientSession() as session:
            try:
                while self.webhook and self.updates:
                    self._webhook_wake.clear()
                    self._start_deliveries(session, sending)
                    woken = asyncio.ensure_future(self._webhook_wake.wait())
                    await asyncio.wait([*sending.values(), woken], return_when="FIRST_COMPLETED")
                    woken.cancel()
                    for update_id in [i for i, task in sending.items() if task.done()]:
                        del sending[update_id]
            finally:
                for task in sending.values():
                    task.cancel()
                await asyncio.gather(*sending.values(), return_exceptions=True)

    def _start_deliveries(
        self, session: aiohttp.ClientSession, sending: dict[int, asyncio.Task[None]]
    ) -> None:
        assert self.webhook is not None
        limit = int(self.webhook["max_connections"])
        busy: set[int | str] = set()  # chats with an update on its way or waiting behind one
        for update in self.updates:
            chat = _chat_of(update)
            if update["update_id"] not in sending:
                if chat in busy:
                    continue
                if len(sending) >= limit:
                    return
                sending[update["update_id"]] = asyncio.create_task(self._deliver(session, update))
            busy.add(chat)

    async def _deliver(self, session: aiohttp.ClientSession, update: Json) -> None:
        """One update, retried a few times. With several replicas (a load balancer), one that
        fails passes it to the next at once; the pause comes after every replica failed it."""
        assert self.webhook is not None
        headers = {}
        if self.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = str(self.webhook["secret_token"])
        replicas = max(1, len(self.webhook_spread))
        try:
            for attempt in range(5 * replicas):
                target = self._webhook_target()
                try:
                    async with session.post(target, json=update, headers=headers) as r:
                        if r.status < 300:
                            self.webhook_taken[target] = self.webhook_taken.get(target, 0) + 1
                            return
                        self.webhook_refused.append((update["update_id"], r.status))
                except aiohttp.ClientError:
                    pass
                if (attempt + 1) % replicas == 0:
                    await asyncio.sleep(0.2 * (attempt // replicas + 1))
        finally:
            with contextlib.suppress(ValueError):
                self.updates.remove(update)

    def _webhook_target(self) -> str:
        """The webhook URL, on the next replica's base when `webhook_spread` names several."""
        assert self.webhook is not None
        url = str(self.webhook["url"])
        if not self.webhook_spread:
            return url
        base = self.webhook_spread[next(self._spread_turn) % len(self.webhook_spread)]
        path = urllib.parse.urlsplit(url)
        return base.rstrip("/") + path.path + (f"?{path.query}" if path.query else "")

    async def stop(self) -> None:
        self._released.set()
        for query in self.pre_checkouts.values():
            query["answered"].set()
        for pusher in self._pushers:
            pusher.cancel()
        await asyncio.gather(*self._pushers, return_exceptions=True)
        await super().stop()

    # --- the control API ----------------------------------------------------------------

    async def _user_send(self, request: web.Request) -> web.Response:
        user_id = int(request.match_info["user_id"])
        body = await request.json()
        text = str(body.get("text") or "")
        if not text:
            return web.json_response({"error": "text is required"}, status=400)
        user = self._user(user_id, body)
        chat = self._chat(int(body.get("chat_id") or user_id))  # a group: a member writes there
        message: Json = {
            "message_id": next(self._message_ids.setdefault(chat["id"], itertools.count(1))),
            "from": user,
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        if body.get("reply_to_message_id"):  # Telegram's Reply: the message replied to, whole
            try:
                replied = self._find(
                    {"chat_id": chat["id"], "message_id": body["reply_to_message_id"]}
                )
            except ApiError:
                return web.json_response({"error": "no such message to reply to"}, status=400)
            message["reply_to_message"] = replied
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        self._store(message)
        update_id = self.push("message", message)
        return web.json_response({"update_id": update_id, "message_id": message["message_id"]})

    async def _user_contact(self, request: web.Request) -> web.Response:
        """The user shares a phone number: their own (the request-contact button: the
        contact's `user_id` is theirs) or, with `contact_user_id`, someone else's contact
        card (0: one with no Telegram account)."""
        user_id = int(request.match_info["user_id"])
        body = await request.json()
        phone = str(body.get("phone_number") or "")
        if not phone:
            return web.json_response({"error": "phone_number is required"}, status=400)
        user = self._user(user_id, body)
        contact: Json = {"phone_number": phone, "first_name": user["first_name"]}
        owner = int(body.get("contact_user_id", user_id))
        if owner:
            contact["user_id"] = owner
        message: Json = {
            "message_id": next(self._message_ids.setdefault(user_id, itertools.count(1))),
            "from": user,
            "chat": self._chat(user_id),
            "date": int(time.time()),
            "contact": contact,
        }
        self._store(message)
        update_id = self.push("message", message)
        return web.json_response({"update_id": update_id, "message_id": message["message_id"]})

    async def _user_press(self, request: web.Request) -> web.Response:
        user_id = int(request.match_info["user_id"])
        body = await request.json()
        data = str(body.get("data") or "")
        chat_id = int(body.get("chat_id") or user_id)
        try:
            message = self._find({"chat_id": chat_id, "message_id": body["message_id"]})
        except (ApiError, KeyError):
            return web.json_response({"error": "no such message"}, status=400)
        buttons = [
            b.get("callback_data")
            for row in message.get("reply_markup", {}).get("inline_keyboard", [])
            for b in row
        ]
        if data not in buttons and not body.get("force"):
            return web.json_response({"error": f"the message has no button {data!r}"}, status=400)
        query_id = str(secrets.randbits(63))
        self.queries[query_id] = {"id": query_id, "user_id": user_id, "answered": False}
        query = {
            "id": query_id,
            "from": self._user(user_id, {}),
            "message": message,
            "chat_instance": str(abs(hash(("chat", chat_id))) % 10**18),
            "data": data,
        }
        update_id = self.push("callback_query", query)
        return web.json_response({"update_id": update_id, "callback_query_id": query_id})

    async def _user_pay(self, request: web.Request) -> web.Response:
        """Pay as the user would: pre-checkout query, the bot's answer within the window, then
        the charge and its `successful_payment` update. Body (all optional): `message_id`,
        `chat_id` or `link` (which invoice), `timeout` (the user gives up sooner than
        Telegram's window), `drop_update` (charged, but the update never reaches the bot)."""
        user_id = int(request.match_info["user_id"])
        body = await _optional_json(request)
        try:
            invoice = self._payable(user_id, body)
        except ApiError as exc:
            return web.json_response({"error": exc.description}, status=400)
        except ValueError:
            return web.json_response({"error": "message_id must be a number"}, status=400)
        timeout = self.pre_checkout_timeout
        if body.get("timeout") is not None:
            timeout = min(timeout, float(body["timeout"]))
        answer = await self._pre_checkout(user_id, invoice, timeout)
        if answer is None:
            return web.json_response({"ok": False, "error": "the emulator was reset"})
        outcome: Json = {
            "ok": False,
            "charge_id": None,
            "error_message": answer.get("error_message"),
            "answered_in": round(answer["after"], 3) if "after" in answer else None,
            "timed_out": "ok" not in answer,
            "pre_checkout_query_id": answer["pre_checkout_query_id"],
            "update_id": None,
        }
        if answer.get("ok"):
            charge = self._charge(user_id, invoice)
            outcome.update(ok=True, charge_id=charge["id"])
            if not body.get("drop_update"):
                outcome["update_id"] = self.push("message", charge["message"])
        return web.json_response(outcome)

    async def _user_redeliver(self, request: web.Request) -> web.Response:
        """The same `successful_payment` message again, same ids: Telegram delivers at least
        once, so a bot must take a charge id once however often it comes."""
        user_id = int(request.match_info["user_id"])
        body = await _optional_json(request)
        charge = self.charges.get(str(body.get("charge_id")))
        if charge is None or charge["user_id"] != user_id:
            return web.json_response({"error": "no such charge for this user"}, status=400)
        update_id = self.push("message", charge["message"])
        return web.json_response({"update_id": update_id, "charge_id": charge["id"]})

    async def _user_answers(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"answers": self.answers.get(int(request.match_info["user_id"]), [])}
        )

    async def _chat_messages(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        after = int(request.query.get("after_id") or 0)
        deadline = time.monotonic() + min(float(request.query.get("wait") or 0), 30)

        def newer() -> list[Json]:
            return [m for m in self.messages.get(chat_id, []) if m["message_id"] > after]

        generation = self._generation
        while time.monotonic() < deadline and not any(m["from"].get("is_bot") for m in newer()):
            await self._wait_change(deadline)
            if self._generation != generation:
                return web.json_response({"messages": []})
        keyboard = self.keyboards.get(chat_id)
        return web.json_response({"messages": newer(), "reply_keyboard": keyboard})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "webhook": self.webhook,
                "commands": self.commands,
                "pending_updates": len(self.updates),
                "invoices": len(self.invoices) + len(self.invoice_links),
                "charges": len(self.charges),
            }
        )


async def _params(request: web.Request) -> Json:
    """Bot API parameters from the query, a JSON body, a urlencoded form or multipart."""
    params: Json = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params
    if request.content_type == "multipart/form-data":
        async for part in await request.multipart():
            if isinstance(part, aiohttp.BodyPartReader) and part.name:
                params[part.name] = bytes(await part.read()) if part.filename else await part.text()
                if part.filename:
                    params.setdefault("_filenames", {})[part.name] = part.filename
        return params
    form = await request.post()
    params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


async def _optional_json(request: web.Request) -> Json:
    """A control endpoint's JSON body, where no body (or not an object) means {}."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _invoice(params: Json) -> Json:
    """An invoice as Telegram checks it for sendInvoice and createInvoiceLink. Stars (XTR): no
    provider token, exactly one price line, none of the card-only options; other currencies
    need a provider token. Error texts are Telegram's where known."""
    for name in ("title", "description", "payload", "currency", "prices"):
        if params.get(name) is None:
            raise ApiError(400, f'Bad Request: parameter "{name}" is required')
    title, description = str(params["title"]), str(params["description"])
    payload, currency = str(params["payload"]), str(params["currency"])
    if not 1 <= len(title) <= TITLE_LIMIT:
        raise ApiError(400, f"Bad Request: invoice title must be 1-{TITLE_LIMIT} characters")
    if not 1 <= len(description) <= DESCRIPTION_LIMIT:
        raise ApiError(
            400, f"Bad Request: invoice description must be 1-{DESCRIPTION_LIMIT} characters"
        )
    if not 1 <= len(payload.encode()) <= PAYLOAD_LIMIT:
        raise ApiError(400, "Bad Request: INVOICE_PAYLOAD_INVALID")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ApiError(400, "Bad Request: CURRENCY_INVALID")
    amounts = _amounts(params["prices"])
    token = str(params.get("provider_token") or "")
    if currency == STARS:
        if token or len(amounts) != 1 or any(_given(params.get(n)) for n in NOT_FOR_STARS):
            raise ApiError(400, "Bad Request: STARS_INVOICE_INVALID")
        if amounts[0] <= 0:
            raise ApiError(400, "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
    elif not token:
        raise ApiError(400, "Bad Request: PAYMENT_PROVIDER_INVALID")
    if sum(amounts) <= 0:
        raise ApiError(400, "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
    return {
        "title": title,
        "description": description,
        "start_parameter": str(params.get("start_parameter") or ""),
        "currency": currency,
        "total_amount": sum(amounts),
        "payload": payload,
    }


def _amounts(raw: object) -> list[int]:
    """The amounts of `prices`, a JSON array of {label, amount} with integer amounts."""
    try:
        prices = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        prices = None
    if not isinstance(prices, list) or not all(
        isinstance(p, dict)
        and isinstance(p.get("label"), str)
        and isinstance(p.get("amount"), int)
        and not isinstance(p.get("amount"), bool)
        for p in prices
    ):
        raise ApiError(400, "Bad Request: can't parse prices JSON object")
    return [p["amount"] for p in prices]


def _given(value: object) -> bool:
    """Whether an optional parameter was really set (clients send false, 0 or [] for unset)."""
    return value not in (None, "", 0, False, "0", "false", "False", "[]", [])


def _pay_button(invoice: Json) -> Json:
    amount, currency = invoice["total_amount"], invoice["currency"]
    return {
        "text": f"Pay ⭐️{amount}" if currency == STARS else f"Pay {amount} {currency}",
        "pay": True,
    }


def _transaction(charge: Json, side: str, user: Json) -> Json:
    """A StarTransaction: the payment with the user as `source`, its refund with the user as
    `receiver`; both carry the charge id, as Telegram's do."""
    partner = {
        "type": "user",
        "transaction_type": "invoice_payment",
        "user": user,
        "invoice_payload": charge["invoice_payload"],
    }
    return {
        "id": charge["id"],
        "amount": charge["total_amount"],
        "date": int(time.time()),
        side: partner,
    }


def _markup(raw: object) -> Json | None:
    if raw in (None, "", "null"):
        return None
    markup = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup.get("keyboard", []):
        for button in row:
            if not (button.get("text") if isinstance(button, dict) else button):
                raise ApiError(400, "Bad Request: keyboard button text is empty")
    for row in markup.get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            if not button.get("text"):
                raise ApiError(
                    400, "Bad Request: text buttons are unallowed in the inline keyboard"
                )
    kinds = ("inline_keyboard", "keyboard", "remove_keyboard", "force_reply")
    return markup if any(markup.get(kind) for kind in kinds) else None


def _chat_of(update: Json) -> int | str:
    """The chat an update is about (a private chat's id is its user's), whose updates the
    emulator delivers one at a time, in order; an update about no chat is a chat of its own."""
    payload = next((v for k, v in update.items() if k != "update_id"), {})
    chat = payload.get("chat") or (payload.get("message") or {}).get("chat")
    if chat:
        return int(chat["id"])
    sender = payload.get("from")
    return int(sender["id"]) if sender else f"update {update['update_id']}"


def _flag(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _error(exc: ApiError) -> web.Response:
    body: Json = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.retry_after is not None:
        body["parameters"] = {"retry_after": exc.retry_after}
    return web.json_response(body, status=exc.code)
