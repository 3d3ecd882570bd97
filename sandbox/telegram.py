"""An emulator of the Telegram Bot API, good enough for aiogram 3, plus a control API that acts
as users (send text, press buttons) and reads what the bot sent.

Written from the Bot API documentation and PROVIDERS.md's notes on what aiogram validates:
`getMe` with `is_bot`/`first_name`, callback queries with `chat_instance` and the full message,
Unix-second dates, `editMessageText` returning the Message (no markup removes the keyboard, an
identical edit is 400), errors as `{"ok": false, "error_code", "description"}` with the same
HTTP status (429 adds `parameters.retry_after`), long-polling `getUpdates`, 409 while a webhook
is set, `callback_data` over 64 bytes refused, a callback query answered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.base import FakeServer

Json = dict[str, Any]


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


# Telegram's length limits, counted on the text the user sees.
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
ANSWER_LIMIT = 200  # answerCallbackQuery's notification or alert

# The tags Telegram's HTML parse mode knows; anything else is refused, as Telegram does.
HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a"}
    | {"tg-emoji", "code", "pre", "blockquote"}
)


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
        self._pushers: set[asyncio.Task[None]] = set()  # it and any cancelled ones still ending
        self.reset()
        self.app.router.add_route("*", "/bot{token}/{method}", self._api)
        self.app.router.add_get("/file/bot{token}/{file_id}", self._file)
        self.app.router.add_post("/sandbox/users/{user_id}/send", self._user_send)
        self.app.router.add_post("/sandbox/users/{user_id}/press", self._user_press)
        self.app.router.add_get("/sandbox/users/{user_id}/answers", self._user_answers)
        self.app.router.add_get("/sandbox/chats/{chat_id}/messages", self._chat_messages)
        self.app.router.add_get("/sandbox/state", self._state)

    def env(self) -> dict[str, str]:
        return {"BOT_TOKEN": self.token, "TELEGRAM_API_URL": self.url}

    def hints(self) -> list[str]:
        return [
            f"# act as a user:  curl -XPOST {self.url}/sandbox/users/1001/send "
            "-H 'content-type: application/json' -d '{\"text\": \"/start\"}'",
            f"# read the chat:  curl {self.url}/sandbox/chats/1001/messages",
        ]

    def reset(self) -> None:
        """Also stops the webhook pusher and ends every long poll in progress (getUpdates,
        chat reads) with an empty answer, so a stopped bot's requests cannot take or be handed
        a later test's updates. Update ids keep growing, as Telegram's do: a stale
        `getUpdates?offset=N` arriving after a reset then cannot drop new updates."""
        for pusher in self._pushers:
            pusher.cancel()  # ends at its next await; stop() awaits it
        self._pusher = None
        self._generation += 1
        self._changed.set()  # wakes the waiters of the old generation
        self.chats: dict[int, Json] = {}
        self.messages: dict[int, list[Json]] = {}
        self.users: dict[int, Json] = {}
        self.updates: list[Json] = []
        self.commands: dict[str, list[Json]] = {}
        self.webhook: Json | None = None
        self.files: dict[str, bytes] = {}
        self.queries: dict[str, Json] = {}
        self.answers: dict[int, list[Json]] = {}
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._failures: dict[str, list[ApiError]] = {}
        self._changed = asyncio.Event()
        self.calls.clear()
        self._hang_on: str | None = None
        self.hung = asyncio.Event()
        if hasattr(self, "_released"):
            self._released.set()
        self._released = asyncio.Event()

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

    # --- the Bot API --------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(ApiError(401, "Unauthorized"))
        method = request.match_info["method"].lower()
        try:
            params = await _params(request)
            self.calls.append((method, params))
            failures = self._failures.get(method)
            if failures:
                raise failures.pop()
            handler = self._methods().get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
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
        while not self.updates and time.monotonic() < deadline and not self.webhook:
            await self._wait_change(deadline)
            if self._generation != generation:
                return []  # reset while waiting: the updates now belong to someone else
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
        self.webhook = {"url": url, "secret_token": params.get("secret_token")}
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

    def _bot_message(self, params: Json) -> Json:
        chat = self._chat(int(params["chat_id"]))
        message: Json = {
            "message_id": next(self._message_ids.setdefault(chat["id"], itertools.count(1))),
            "from": self.bot,
            "chat": chat,
            "date": int(time.time()),
        }
        markup = _markup(params.get("reply_markup"))
        if markup:
            message["reply_markup"] = markup
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
        for key in ("first_name", "username", "language_code"):
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
        if self.webhook and (self._pusher is None or self._pusher.done()):
            self._pusher = asyncio.create_task(self._push_webhook())
            self._pushers.add(self._pusher)
            self._pusher.add_done_callback(self._pushers.discard)

    async def _push_webhook(self) -> None:
        """Deliver pending updates to the webhook in order, each retried a few times."""
        async with aiohttp.ClientSession() as session:
            while self.webhook and self.updates:
                update = self.updates[0]
                headers = {}
                if self.webhook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = str(self.webhook["secret_token"])
                for attempt in range(5):
                    try:
                        async with session.post(
                            self.webhook["url"], json=update, headers=headers
                        ) as r:
                            if r.status < 300:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2 * (attempt + 1))
                if self.updates and self.updates[0] is update:
                    self.updates.pop(0)

    async def stop(self) -> None:
        self._released.set()
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
        chat = self._chat(user_id)
        message: Json = {
            "message_id": next(self._message_ids.setdefault(user_id, itertools.count(1))),
            "from": user,
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
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
        return web.json_response({"messages": newer()})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "webhook": self.webhook,
                "commands": self.commands,
                "pending_updates": len(self.updates),
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
                params[part.name] = await part.read() if part.filename else await part.text()
        return params
    form = await request.post()
    params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _markup(raw: object) -> Json | None:
    if raw in (None, "", "null"):
        return None
    markup = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            if not button.get("text"):
                raise ApiError(
                    400, "Bad Request: text buttons are unallowed in the inline keyboard"
                )
    return markup if markup.get("inline_keyboard") else None


def _flag(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _error(exc: ApiError) -> web.Response:
    body: Json = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.retry_after is not None:
        body["parameters"] = {"retry_after": exc.retry_after}
    return web.json_response(body, status=exc.code)
