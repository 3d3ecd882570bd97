"""Settings from the environment and `.env`. Every setting is documented in `.env.example`.

Secrets are `SecretStr`, so they print as '**********' in logs, reprs and validation errors.
Each provider has a settings model of its own (`ProviderSettings`, in `bot/wiring.py`) under
its prefix (`REDOYA_`, `PAYTURE_`...); a provider is enabled when its credentials are set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# The languages the bot speaks (bot/locales); kept here so settings load without aiogram.
LOCALES = ("en", "ru", "tr", "mn", "kk", "tk")
# An empty value (`MERCHANT_CHAT_ID=` as `.env.example` has it) means unset, in the environment,
# in `.env` and in the sandbox's lines alike.
ENV = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    case_sensitive=False,
    env_ignore_empty=True,
)
_GIVEN_ONLY: ContextVar[bool] = ContextVar("settings_from_given_values_only", default=False)


@contextmanager
def given_values_only() -> Iterator[None]:
    """Settings built inside read only the values passed in: neither the process environment
    nor a `.env` file (the demo and the tests, whatever folder they run in)."""
    token = _GIVEN_ONLY.set(True)
    try:
        yield
    finally:
        _GIVEN_ONLY.reset(token)


class _Sources(BaseSettings):
    """Where settings come from: the environment and `.env`, unless `given_values_only`."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _GIVEN_ONLY.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)


def secret_values(model: BaseSettings) -> tuple[str, ...]:
    """Every secret value of a settings model, for scrubbing logs."""
    values = [
        getattr(model, name).get_secret_value()
        for name, field in type(model).model_fields.items()
        if field.annotation in (SecretStr, SecretStr | None) and getattr(model, name)
    ]
    return tuple(v for v in values if v)


class ProviderSettings(_Sources):
    """One provider's settings under its own prefix; `enabled` when its credentials are set."""

    model_config = ENV
    required: ClassVar[tuple[str, ...]] = ()  # the fields that enable the provider

    @classmethod
    def prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix", "")).upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """From environment-style lines (the sandbox's) only, never the process environment."""
        prefix = cls.prefix()
        values = {
            k[len(prefix) :].lower(): v
            for k, v in env.items()
            if k.upper().startswith(prefix) and v.strip()
        }
        with given_values_only():
            return cls(**values)

    def is_enabled(self) -> bool:
        return all(getattr(self, name) for name in self.required)

    def missing(self) -> list[str]:
        """The required fields left empty when some of them are set (a half-made setup)."""
        empty = [name for name in self.required if not getattr(self, name)]
        return empty if len(empty) < len(self.required) else []

    def secrets(self) -> tuple[str, ...]:
        return secret_values(self)


class Settings(_Sources):
    model_config = ENV

    # Telegram
    bot_token: SecretStr
    telegram_api_url: str | None = None  # a local Bot API server or the sandbox
    webhook_url: str | None = None  # set: webhook mode; unset: long polling
    webhook_secret: SecretStr | None = None
    # Signs the per-order keys in callback URLs; derived from BOT_TOKEN when unset.
    callback_secret: SecretStr | None = None
    merchant_chat_id: int | None = None
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    support_ids: Annotated[frozenset[int], NoDecode] = frozenset()  # look up, never refund
    timezone: str = "UTC"  # the merchant's IANA zone: the staff see every time in it
    daily_report_at: time | None = None  # local time of the daily report to the merchant chat

    # web server and links
    web_host: str = "127.0.0.1"
    web_port: int = Field(8080, ge=0, le=65535)  # 0: any free port (the demo)
    public_url: str | None = None  # base of every link we hand out; default http://host:port

    # state
    database_url: str = "sqlite:///data/bot.db"
    redis_url: str | None = None
    catalog_path: Path = Path("catalog.toml")
    default_locale: str = "en"
    merchant_locale: str | None = None  # the merchant chat's language; DEFAULT_LOCALE when unset
    # /export's CSV: comma (',' and 1234.50) or semicolon (';' and 1234,50, what Excel reads in
    # Turkish, Russian...); unset: comma for an English merchant, semicolon for the others
    export_csv_dialect: Literal["comma", "semicolon"] | None = None

    # timing (seconds)
    http_timeout: float = Field(10.0, gt=0)
    first_check_after: float = Field(15.0, ge=0)
    max_check_interval: float = Field(600.0, gt=0)
    sweep_every: float = Field(5.0, gt=0)
    # how long a sender holds an outbox row while it sends; a process killed meanwhile leaves
    # the row to be sent again (by any replica) once this runs out
    outbox_claim_seconds: float = Field(60.0, gt=0)
    # the gaps between two messages to one chat and to one group (Telegram's flood limits:
    # ~1/s per chat, 20/min per group); a local Bot API server or the sandbox may allow less
    notify_chat_gap: float = Field(1.0, ge=0)
    notify_group_gap: float = Field(3.0, ge=0)
    # messages a second in all (Telegram: 30; more for a bot with paid broadcasts enabled)
    notify_per_second: int = Field(30, ge=1)
    # how often, and how far back, an in-chat provider's own ledger (Stars) is compared with
    # what we stored
    ledger_every: float = Field(600.0, gt=0)
    ledger_window_hours: int = Field(48, ge=1, le=24 * 90)
    # days an inbox event (a callback, a return, as it arrived) is kept after it arrived, once
    # processed; 0: for ever
    inbox_keep_days: int = Field(180, ge=0, le=36_500)

    # the enabled providers' settings by name (bot/wiring.py loads them)
    providers: dict[str, Any] = Field(default_factory=dict)

    @field_validator("admin_ids", "support_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",")]
            try:
                return frozenset(int(p) for p in parts if p)
            except ValueError:
                raise ValueError(
                    f"{(info.field_name or '').upper()} must be Telegram user ids separated by "
                    "commas"
                ) from None
        if isinstance(value, int):
            return frozenset({value})
        return value

    @field_validator("public_url", "webhook_url", "telegram_api_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("default_locale", "merchant_locale")
    @classmethod
    def _known_locale(cls, value: str | None, info: ValidationInfo) -> str | None:
        code = (value or "").strip().lower()
        if not code:  # left empty: English by default, the default language for the merchant
            return "en" if info.field_name == "default_locale" else None
        if code not in LOCALES:
            raise ValueError(f"must be one of {', '.join(LOCALES)}")
        return code

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        name = value.strip() or "UTC"
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{name[:60]!r} is not a time zone name (e.g. Europe/Istanbul, Asia/Almaty)"
            ) from None
        return name

    @field_validator("daily_report_at", mode="before")
    @classmethod
    def _clock_time(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            try:
                return time.fromisoformat(text)
            except ValueError:
                raise ValueError("must be a time of day as HH:MM, e.g. 09:00") from None
        return value

    @field_validator("export_csv_dialect", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def csv_semicolons(self) -> bool:
        """/export writes ';' and decimal commas: said, or the merchant's language not English
        (a spreadsheet in those languages reads ',' as the decimal mark)."""
        if self.export_csv_dialect is not None:
            return self.export_csv_dialect == "semicolon"
        return (self.merchant_locale or self.default_locale) != "en"

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("WEBHOOK_URL needs WEBHOOK_SECRET (Telegram signs webhook calls)")
        return self

    @model_validator(mode="after")
    def _inbox_outlives_the_ledger(self) -> Settings:
        if self.inbox_keep_days and self.inbox_keep_days * 24 <= self.ledger_window_hours:
            raise ValueError(
                "INBOX_KEEP_DAYS must be longer than LEDGER_WINDOW_HOURS: the ledger check looks "
                "for the payments it lists among the stored events"
            )
        return self

    @property
    def inbox_keep(self) -> timedelta | None:
        return timedelta(days=self.inbox_keep_days) if self.inbox_keep_days else None

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, the providers' included, for scrubbing logs."""
        found = [*secret_values(self), self.callback_key_secret()]
        for provider in self.providers.values():
            found += provider.secrets()
        return tuple(found)

    def callback_key_secret(self) -> str:
        if self.callback_secret:
            return self.callback_secret.get_secret_value()
        token = self.bot_token.get_secret_value()
        return hashlib.sha256(f"callback-keys:{token}".encode()).hexdigest()
