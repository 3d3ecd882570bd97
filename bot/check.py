"""`python -m bot check`: what the settings and the catalog set up, and what is wrong with them,
line by line, without starting the bot. `BotApp.start` runs the same catalog and photo checks
and refuses to start on their errors, so a shop that cannot sell never starts without a word.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

from bot.catalog import Catalog, CatalogError, Product, load_catalog
from bot.config import Settings
from bot.core import AmountNotRepresentable, Money, amount_limit
from bot.images import photo_problem
from bot.wiring import PROVIDERS, ConfigError, build_providers, load_settings, provider_states
from providers.base import Provider
from providers.registry import Registry
from storage import StorageUnavailable, storage_from_url

TIMEOUT = 5.0  # seconds for each remote check (Telegram, Redis)


class Level(StrEnum):
    OK = "ok"
    NOTE = "note"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Line:
    level: Level
    text: str

    def __str__(self) -> str:
        return f"{self.level.value:<5}  {self.text}"


def ok(text: str) -> Line:
    return Line(Level.OK, text)


def note(text: str) -> Line:
    return Line(Level.NOTE, text)


def error(text: str) -> Line:
    return Line(Level.ERROR, text)


def errors(lines: list[Line]) -> list[str]:
    return [line.text for line in lines if line.level is Level.ERROR]


# --- the catalog against the enabled providers (shared with start-up) ----------------------


def catalog_lines(catalog: Catalog, providers: Registry, known: Collection[str]) -> list[Line]:
    """Every product payable by an enabled provider, in one of its currencies and within that
    provider's limits; provider names in `providers` lists that name no provider."""
    lines: list[Line] = []
    for product in catalog.products:
        lines += _product_lines(product, providers, known)
    if not errors(lines):
        lines.append(ok(f"catalog: {len(catalog.products)} products, each payable"))
    return lines


def _product_lines(product: Product, providers: Registry, known: Collection[str]) -> list[Line]:
    lines: list[Line] = []
    unknown = [name for name in product.providers if name not in known]
    if unknown:
        lines.append(
            error(
                f"product {product.id!r}: `providers` names {', '.join(map(repr, unknown))}, "
                f"not a provider (one of {', '.join(sorted(known))})"
            )
        )
    payable: list[str] = []
    why_not: list[str] = []
    for price in product.prices:
        takers = [
            p
            for p in providers.for_currency(price.currency)
            if not product.providers or p.name in product.providers
        ]
        refusals = [_refusal(p, price) for p in takers]
        if not takers:
            why_not.append(_nobody_takes(price.currency, providers))
        elif None in refusals:
            payable.append(price.currency)
        else:
            why_not += [refusal for refusal in refusals if refusal]
    if not payable:
        lines.append(error(f"product {product.id!r} cannot be paid: {'; '.join(why_not)}"))
    elif why_not:
        lines.append(
            note(
                f"product {product.id!r} is paid in {', '.join(payable)} only: {'; '.join(why_not)}"
            )
        )
    return lines


def _nobody_takes(currency: str, providers: Registry) -> str:
    left_out = [p.name for p in providers.for_currency(currency)]
    if left_out:
        return f"no provider in its `providers` list takes {currency} ({', '.join(left_out)} would)"
    hint = " (set STARS_ENABLED=true)" if currency == "XTR" else ""
    return f"no enabled provider takes {currency}{hint}"


def _refusal(provider: Provider, price: Money) -> str | None:
    """Why this provider cannot take this price (its cap, first); None when it can."""
    limit = amount_limit(provider, price)
    if limit is not None:
        side, bound = ("above", "cap") if limit.above else ("below", "minimum")
        return f"{price} is {side} {provider.display_name}'s {bound} of {limit.bound} per order"
    try:
        provider.amount_format.check(price)
    except AmountNotRepresentable as exc:  # e.g. more decimals than the provider writes
        return f"{provider.display_name} cannot take {price}: {exc}"
    return None


# --- photos (shared with start-up) -----------------------------------------------------------


def photo_lines(catalog: Catalog) -> list[Line]:
    """Local photos exist and are images Telegram takes; URL photos are only noted."""
    lines: list[Line] = []
    for product in catalog.products:
        if not product.photo:
            continue
        path = catalog.photo_path(product)
        if path is None:
            lines.append(
                note(f"product {product.id!r}: photo {product.photo} (a URL, not checked)")
            )
            continue
        problem = photo_problem(path)
        if problem:
            lines.append(error(f"product {product.id!r}: photo {path}: {problem}"))
    if not errors(lines):
        count = sum(1 for p in catalog.products if catalog.photo_path(p) is not None)
        lines.append(ok(f"photos: {count} local, each a readable image"))
    return lines


# --- what is reached over the network --------------------------------------------------------


async def database_line(url: str) -> Line:
    """The database opens (for SQLite: its directory exists); its migrations apply."""
    try:
        storage = storage_from_url(url)
        await storage.open()
    except (StorageUnavailable, ValueError) as exc:
        return error(f"DATABASE_URL: {exc}")
    await storage.close()
    return ok(f"database: {url.split(':', 1)[0]} opens")


def redis_where(url: str) -> str:
    """host:port/db of a Redis URL, for messages: never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path}"


async def redis_problem(client: Any, url: str) -> str | None:
    """What keeps this Redis client from answering a ping; None when it answers."""
    try:
        async with asyncio.timeout(TIMEOUT):
            await client.ping()
    except TimeoutError:
        return f"REDIS_URL: Redis at {redis_where(url)} did not answer within {TIMEOUT:g} s"
    except Exception as exc:  # redis' errors, OSError: whatever it is, carts cannot live there
        return f"REDIS_URL: cannot reach Redis at {redis_where(url)} ({type(exc).__name__})"
    return None


async def redis_line(url: str) -> Line:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        problem = await redis_problem(client, url)
    finally:
        await client.aclose()
    return error(problem) if problem else ok(f"redis: {redis_where(url)} answers")


async def telegram_line(settings: Settings) -> Line:
    """getMe with BOT_TOKEN, at TELEGRAM_API_URL when set (a local Bot API server, the
    sandbox)."""
    from aiogram import Bot

    from bot.app import StartupError, telegram_session, whoami

    bot = Bot(settings.bot_token.get_secret_value(), session=telegram_session(settings))
    try:
        me = await whoami(bot, timeout=TIMEOUT)
    except StartupError as exc:
        where = settings.telegram_api_url or "api.telegram.org"
        return error(f"telegram ({where}): {exc}")
    finally:
        await bot.session.close()
    return ok(f"telegram: BOT_TOKEN accepted, the bot is @{me.username}")


# --- the whole check ---------------------------------------------------------------------------


def provider_lines(env: Mapping[str, str] | None) -> tuple[dict[str, Any], list[Line]]:
    """Each provider enabled, off (and what would enable it) or half-set (an error)."""
    enabled: dict[str, Any] = {}
    lines: list[Line] = []
    for state in provider_states(env):
        if state.problems:
            lines += [error(f"{state.name}: {problem}") for problem in state.problems]
        elif state.settings is not None:
            enabled[state.name] = state.settings
            lines.append(ok(f"{state.name}: enabled"))
        else:
            needs = ", ".join(state.needs) or f"{PROVIDERS[state.name].settings.prefix()}ENABLED"
            lines.append(note(f"{state.name}: off (set {needs} to enable it)"))
    if not enabled:
        lines.append(error("no payment provider is enabled"))
    return enabled, lines


async def run_check(env: Mapping[str, str] | None = None, **overrides: Any) -> list[Line]:
    """Every check, from the environment and .env, or only from `env` and `overrides`."""
    enabled, lines = provider_lines(env)
    given = {"providers": enabled} | overrides
    try:
        settings = load_settings(env, **given)
    except ConfigError as exc:
        lines[:0] = [error(problem) for problem in exc.problems]
        settings = _despite(env, given, exc)
        if settings is None:
            return lines
    else:
        lines[:0] = [ok("settings: valid"), *_who_is_told(settings)]
    try:
        catalog = load_catalog(settings.catalog_path)
    except CatalogError as exc:
        lines.append(error(str(exc)))
        catalog = None
    lines += merchant_lines(settings, catalog)
    if catalog is not None:
        lines += await _catalog_checks(settings, catalog)
    lines.append(await database_line(settings.database_url))
    if settings.redis_url:
        lines.append(await redis_line(settings.redis_url))
    if settings.bot_token.get_secret_value() != _NO_TOKEN:
        lines.append(await telegram_line(settings))
    return lines


_NO_TOKEN = "-"  # noqa: S105 - stands for a BOT_TOKEN that failed, so the other checks still run


def _despite(
    env: Mapping[str, str] | None, given: dict[str, Any], exc: ConfigError
) -> Settings | None:
    """The settings with every failed value replaced by its default, so that the checks which do
    not need it still run and every problem is told in one go; None if that cannot be had."""
    fields = Settings.model_fields
    stand_ins: dict[str, Any] = {}
    for name in exc.fields:
        if name == "bot_token":
            stand_ins[name] = _NO_TOKEN
        elif name in fields and not fields[name].is_required():
            stand_ins[name] = fields[name].get_default(call_default_factory=True)
        elif not name:  # a rule between settings: WEBHOOK_URL without its secret
            stand_ins["webhook_url"] = None
    try:
        return load_settings(env, **(given | stand_ins))
    except ConfigError:
        return None


def _who_is_told(settings: Settings) -> list[Line]:
    """The mode, and who hears of payments and problems: unset is allowed, but said."""
    mode = f"webhook at {settings.webhook_url}" if settings.webhook_url else "long polling"
    lines = [ok(f"telegram: {mode}")]
    if not settings.admin_ids:
        lines.append(note("ADMIN_IDS: empty, so nobody is told of reviews and provider problems"))
    return lines


def merchant_lines(settings: Settings, catalog: Catalog | None) -> list[Line]:
    """MERCHANT_CHAT_ID may stay unset only while nothing needs it: a shipped product (nobody
    would see what to ship, or where) or DAILY_REPORT_AT (the report has nowhere to go)."""
    if settings.merchant_chat_id is not None:
        return []
    problems = []
    shipped = [p.id for p in catalog.products if p.delivery] if catalog is not None else []
    if shipped:
        problems.append(
            f"MERCHANT_CHAT_ID: unset, but {', '.join(repr(p) for p in shipped[:3])}"
            f"{' and more' if len(shipped) > 3 else ''} need delivery: nobody would be told "
            "what to ship, or where"
        )
    if settings.daily_report_at is not None:
        problems.append("DAILY_REPORT_AT: set, but MERCHANT_CHAT_ID is unset: no chat to send to")
    if problems:
        return [error(problem) for problem in problems]
    return [note("MERCHANT_CHAT_ID: unset, so no chat hears of paid orders")]


async def _catalog_checks(settings: Settings, catalog: Catalog) -> list[Line]:
    async with httpx.AsyncClient() as http:  # the adapters are built, never called
        try:
            providers = build_providers(settings, http, _NoTelegram())
        except ValueError as exc:
            return [error(str(exc))]
        return catalog_lines(catalog, providers, PROVIDERS) + photo_lines(catalog)


class _NoTelegram:
    """The Telegram payments port for adapters that are only built to read their limits."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("bot check sends nothing")


def report(lines: list[Line], out: TextIO) -> int:
    """Print the lines; 0 when nothing is wrong, 1 otherwise."""
    for line in lines:
        print(line, file=out)
    wrong = errors(lines)
    print(f"{len(wrong)} problem(s)" if wrong else "all good", file=out)
    return 1 if wrong else 0
