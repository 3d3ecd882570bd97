"""The composition root: builds storage, providers, the bot and the web server from Settings,
starts them in order and stops them in reverse.

`BotApp` is used by `python -m bot run`, by the demo and by the tests, so all three run the
same wiring. A failed start unwinds what was already started.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage, SimpleEventIsolation
from aiogram.types import BotCommand, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

from bot.catalog import Catalog, load_catalog
from bot.check import catalog_lines, errors, merchant_lines, photo_lines, redis_problem
from bot.config import Settings
from bot.core import CheckoutService, CheckSchedule
from bot.core.cards import CardService
from bot.handlers import get_routers
from bot.handlers.fallback import on_error
from bot.handlers.payments import CARRIES_MONEY, money_not_stored
from bot.locale import SUPPORTED, LocaleMiddleware, build_i18n
from bot.notify import Notifier, OutboxRenderer
from bot.polling import PollConflict, conflict_reason, tell_admins
from bot.reconcile import Reconciler
from bot.telegram_payments import BotPayments
from bot.web import WebServices, create_web_app
from bot.web.telegram import TelegramWebhook
from bot.wiring import PROVIDERS, build_providers, setting_names
from providers.base import Capability, Provider
from providers.http import logging_hooks
from providers.registry import Registry
from storage import StorageUnavailable, storage_from_url
from storage.base import Storage

log = logging.getLogger("bot.app")
STOP_TASKS_WITHIN = 10  # seconds a cancelled background task gets to end at stop
CALLBACK_SETUP_FIRST_RETRY = 5.0  # seconds before asking a provider that was down again
CALLBACK_SETUP_LONGEST_RETRY = 600.0


class PlainHTTPSession(AiohttpSession):
    """aiogram's session for a Bot API reached over plain HTTP (a local Bot API server, the
    sandbox): closed without aiogram's fixed 250 ms wait, which lets TLS connections shut
    down, and there are none."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def telegram_session(settings: Settings) -> AiohttpSession:
    """aiogram's session for Telegram, or for TELEGRAM_API_URL when set."""
    api_url = settings.telegram_api_url
    if not api_url:
        return AiohttpSession()
    kind = PlainHTTPSession if api_url.startswith("http://") else AiohttpSession
    return kind(api=TelegramAPIServer.from_base(api_url))


class StartupError(RuntimeError):
    """A setting or a dependency that stops the bot from starting; `problems` says each, one
    line apiece."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


async def whoami(bot: Bot, *, timeout: float = 10.0) -> User:
    """getMe: BOT_TOKEN accepted by the Bot API (or the sandbox), or a StartupError saying why."""
    try:
        async with asyncio.timeout(timeout):
            return await bot.get_me()
    except TelegramUnauthorizedError:
        raise StartupError("Telegram refused BOT_TOKEN (401 Unauthorized)") from None
    except TimeoutError:
        raise StartupError(f"the Telegram Bot API did not answer within {timeout:g} s") from None
    except Exception as exc:
        raise StartupError(f"cannot reach the Telegram Bot API: {type(exc).__name__}") from None


async def fsm_storage(settings: Settings) -> BaseStorage:
    """Carts live in memory, or in Redis when several replicas run: a Redis that does not
    answer stops start-up (carts could not be kept)."""
    if settings.redis_url:
        from aiogram.fsm.storage.redis import RedisStorage

        storage = RedisStorage.from_url(settings.redis_url)
        problem = await redis_problem(storage.redis, settings.redis_url)
        if problem:
            await storage.close()
            raise StartupError(problem)
        return storage
    return MemoryStorage()


@dataclass
class Parts:
    """What a running BotApp holds; tests reach in here."""

    storage: Storage
    http: httpx.AsyncClient
    providers: Registry
    catalog: Catalog
    checkout: CheckoutService
    bot: Bot
    dp: Dispatcher
    i18n: I18n
    notifier: Notifier
    reconciler: Reconciler
    web_url: str
    bot_username: str


class BotApp:
    def __init__(
        self,
        settings: Settings,
        *,
        background: bool = True,
        providers: Sequence[Provider] = (),
    ) -> None:
        self.settings = settings
        self.background = background  # False: no notifier/sweep loops (tests drive them)
        self.extra_providers = tuple(providers)  # adapters beside the configured ones (tests)
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[Any]] = []
        self._web_services: WebServices | None = None
        self.parts: Parts | None = None
        self.failed = asyncio.Event()  # set when the bot stopped serving while up (`run` exits)
        self.failure: str | None = None

    async def __aenter__(self) -> Parts:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> Parts:
        s = self.settings
        catalog = _load(lambda: load_catalog(s.catalog_path))
        storage = _load(lambda: storage_from_url(s.database_url))
        try:
            await storage.open()
        except StorageUnavailable as exc:
            raise StartupError(f"DATABASE_URL: {exc}") from None
        self._stack.push_async_callback(storage.close)

        http = httpx.AsyncClient(
            transport=AiohttpTransport(),
            timeout=httpx.Timeout(s.http_timeout),
            event_hooks=logging_hooks(s.secrets()),  # type: ignore[arg-type]
        )
        self._stack.push_async_callback(http.aclose)
        session = telegram_session(s)
        bot = Bot(
            s.bot_token.get_secret_value(),
            session=session,
            default=DefaultBotProperties(parse_mode="HTML"),
        )
        self._stack.push_async_callback(bot.session.close)
        bot.session.middleware(PollConflict(self._lost_polling))
        i18n = build_i18n(s.default_locale)

        providers = _load(lambda: build_providers(s, http, BotPayments(bot, i18n)))
        for provider in self.extra_providers:
            providers.add(provider)
        if not len(providers):
            raise StartupError(f"no payment provider is configured: set {setting_names()}")
        known = {*PROVIDERS, *providers.names()}
        wrong = errors(
            catalog_lines(catalog, providers, known)
            + photo_lines(catalog)
            + merchant_lines(s, catalog)
        )
        if wrong:  # a shop that cannot sell does not start (`python -m bot check` says the same)
            raise StartupError(*wrong)

        sock = _bind(s.web_host, s.web_port)
        self._stack.callback(sock.close)  # if start-up fails before the server owns it
        web_url = s.public_url or f"http://{s.web_host}:{sock.getsockname()[1]}"
        me = await whoami(bot)

        merchant_locale = s.merchant_locale or s.default_locale
        notifier_ref: list[Notifier] = []
        checkout = CheckoutService(
            storage,
            providers,
            public_url=web_url,
            callback_secret=s.callback_key_secret(),
            merchant_chat_id=s.merchant_chat_id,
            admin_ids=sorted(s.admin_ids),
            schedule=CheckSchedule(
                first=timedelta(seconds=s.first_check_after),
                longest=timedelta(seconds=s.max_check_interval),
            ),
            inbox_keep=s.inbox_keep,
            on_outbox=lambda: notifier_ref[0].wake() if notifier_ref else None,
        )
        cards = None
        if any(Capability.SAVED_CARDS in p.capabilities for p in providers):
            cards = CardService(
                storage, providers, public_url=web_url, secret=f"cards:{s.callback_key_secret()}"
            )
        notifier = Notifier(
            bot,
            storage,
            OutboxRenderer(storage, i18n, checkout, s.default_locale, merchant_locale, catalog),
            claim_for=timedelta(seconds=s.outbox_claim_seconds),
            per_chat_gap=s.notify_chat_gap,
            per_group_gap=s.notify_group_gap,
            per_second=s.notify_per_second,
        )
        notifier_ref.append(notifier)
        reconciler = Reconciler(
            checkout,
            every=s.sweep_every,
            ledger_every=s.ledger_every,
            ledger_window=timedelta(hours=s.ledger_window_hours),
            report_at=s.daily_report_at,
            zone=s.zone,
        )

        carts = await fsm_storage(s)
        self._stack.push_async_callback(carts.close)
        dp = Dispatcher(
            storage=carts,
            events_isolation=SimpleEventIsolation(),  # one update per user at a time: carts
            settings=s,
            checkout=checkout,
            cards=cards,
            catalog=catalog,
        )
        merchant_chat = (s.merchant_chat_id, merchant_locale) if s.merchant_chat_id else None
        LocaleMiddleware(i18n, storage, merchant_chat).setup(dp)
        dp.include_routers(*get_routers())
        dp.errors.register(money_not_stored, CARRIES_MONEY)  # before the apology
        dp.errors.register(on_error)

        self._web_services = WebServices(
            checkout, storage, me.username or "", i18n, cards=cards, dependencies=_pings(dp)
        )
        app = create_web_app(self._web_services)
        if s.webhook_url:
            assert s.webhook_secret is not None
            secret = s.webhook_secret.get_secret_value()
            TelegramWebhook(dp, bot, secret_token=secret).register(
                app, path=f"/telegram/{_path_secret(secret)}"
            )
        # lingering_time=0: the unread rest of a refused body is not drained (aiohttp's drain
        # logs a traceback on a body that cannot be decoded, a false gzip claim); we hang up
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2, lingering_time=0
        )
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        await web.SockSite(runner, sock).start()

        self.parts = Parts(
            storage,
            http,
            providers,
            catalog,
            checkout,
            bot,
            dp,
            i18n,
            notifier,
            reconciler,
            web_url,
            me.username or "",
        )
        await self._set_commands(bot, i18n)
        # events stored before a crash, replayed off the start-up path: a provider that is down
        # must not hold up the bot (the sweep replays them too)
        self._tasks.append(asyncio.create_task(self._replay(checkout), name="replay"))
        self._tasks.append(
            asyncio.create_task(self._register_callbacks(checkout), name="callback urls")
        )
        if self.background:
            self._tasks.append(asyncio.create_task(notifier.run(), name="notifier"))
            self._tasks.append(asyncio.create_task(reconciler.run(), name="reconciler"))
        if s.webhook_url:
            assert s.webhook_secret is not None
            secret = s.webhook_secret.get_secret_value()
            await bot.set_webhook(
                f"{s.webhook_url}/telegram/{_path_secret(secret)}", secret_token=secret
            )
        else:
            await bot.delete_webhook()
            self._tasks.append(
                asyncio.create_task(
                    dp.start_polling(
                        bot, handle_signals=False, close_bot_session=False, polling_timeout=10
                    ),
                    name="polling",
                )
            )
        log.info(
            "bot @%s up; web on %s; providers: %s",
            me.username,
            web_url,
            ", ".join(providers.names()),
        )
        return self.parts

    async def stop(self) -> None:
        """Stop taking updates, finish in-flight callbacks, flush the outbox, close."""
        parts, self.parts = self.parts, None
        if parts is not None:
            with contextlib.suppress(RuntimeError):
                await parts.dp.stop_polling()
            for task in self._tasks:
                if task.get_name() != "notifier":
                    task.cancel()
            if self._web_services and self._web_services.background:
                await asyncio.wait(self._web_services.background, timeout=5)
            parts.notifier.stop()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await parts.notifier.flush()
            for task in self._tasks:
                task.cancel()
            if self._tasks:  # bounded: a task that swallowed its cancel must not hang the stop
                _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TASKS_WITHIN)
                for task in stuck:
                    frames = "; ".join(
                        f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack(limit=6)
                    )
                    log.error(
                        "task %s did not stop within %ss: %s",
                        task.get_name(),
                        STOP_TASKS_WITHIN,
                        frames,
                    )
            self._tasks.clear()
        await self._stack.aclose()

    def _lost_polling(self, description: str) -> None:
        self._tasks.append(
            asyncio.create_task(self._stop_polling(description), name="poll conflict")
        )

    async def _stop_polling(self, description: str) -> None:
        """Another process takes this token's updates (Telegram's `description` says how):
        stop polling (one bot answers), tell the admins once, and let `run` exit."""
        self.failure = conflict_reason(description)
        parts = self.parts
        if parts is not None:
            with contextlib.suppress(RuntimeError):
                await parts.dp.stop_polling()
            await tell_admins(parts.bot, parts.i18n, self.settings, description)
        self.failed.set()

    @staticmethod
    async def _replay(checkout: CheckoutService) -> None:
        try:
            await checkout.replay_inbound(at_start=True)
        except Exception:
            log.exception("replaying stored events at start-up failed; the sweep retries")

    @staticmethod
    async def _register_callbacks(checkout: CheckoutService) -> None:
        """Our callback URL to the providers that keep one per merchant, off the start-up
        path; a provider that is down is asked again, less and less often."""
        delay = CALLBACK_SETUP_FIRST_RETRY
        while True:
            try:
                if not await checkout.register_callbacks():
                    return
            except Exception:
                log.exception("setting the providers' callback URLs failed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, CALLBACK_SETUP_LONGEST_RETRY)

    async def _set_commands(self, bot: Bot, i18n: I18n) -> None:
        """The command menu in every language; a failure is logged, not fatal."""
        with i18n.context():
            for code in (None, *SUPPORTED):
                with i18n.use_locale(code or self.settings.default_locale):
                    commands = [
                        BotCommand(command="catalog", description=_("Browse the catalog")),
                        BotCommand(command="cart", description=_("Your cart")),
                        BotCommand(command="orders", description=_("Your orders")),
                        BotCommand(command="language", description=_("Change the language")),
                        BotCommand(command="help", description=_("Help")),
                    ]
                    try:
                        await bot.set_my_commands(commands, language_code=code)
                    except TelegramAPIError as exc:
                        log.warning("setMyCommands(%s) failed: %s", code, exc)
                        return


def _pings(dp: Dispatcher) -> dict[str, Any]:
    """The dependencies besides storage that /readyz asks: Redis, when carts live there."""
    redis = getattr(dp.storage, "redis", None)
    return {"redis": redis.ping} if redis is not None else {}


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror} (set WEB_HOST/WEB_PORT)"
        ) from None
    return sock


def _path_secret(secret: str) -> str:
    """The webhook path carries a hash of the secret, never the secret (paths get logged)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def _load(loader: Any) -> Any:
    try:
        return loader()
    except ValueError as exc:
        raise StartupError(str(exc)) from None
