"""Settings from the environment and `.env`. Every setting is documented in `.env.example`.

Secrets are `SecretStr`, so they print as '**********' in logs, reprs and validation errors.
A provider is enabled when its credentials are set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The languages the bot speaks (bot/locales); kept here so settings load without aiogram.
LOCALES = ("en", "ru", "tr", "mn", "kk", "tk")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Telegram
    bot_token: SecretStr
    telegram_api_url: str | None = None  # a local Bot API server or the sandbox
    webhook_url: str | None = None  # set: webhook mode; unset: long polling
    webhook_secret: SecretStr | None = None
    merchant_chat_id: int | None = None
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()

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

    # timing (seconds)
    http_timeout: float = Field(10.0, gt=0)
    first_check_after: float = Field(15.0, ge=0)
    max_check_interval: float = Field(600.0, gt=0)
    sweep_every: float = Field(5.0, gt=0)

    # Redoya (Turkey)
    redoya_secret: SecretStr | None = None
    redoya_identifier: SecretStr | None = None
    redoya_api_url: str = "https://pay.redoya.net"
    redoya_pay_url: str = "https://pay.redoya.net"
    redoya_test_mode: bool = False
    redoya_token_minutes: int = Field(30, ge=11, le=525600)
    redoya_decimal_prices: bool = False

    # Payture (Russia)
    payture_url: str = "https://sandbox3.payture.com"
    payture_key: SecretStr | None = None
    payture_password: SecretStr | None = None
    payture_wallet_key: SecretStr | None = None
    payture_wallet_password: SecretStr | None = None
    payture_wallet_secret: SecretStr | None = None

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",")]
            try:
                return frozenset(int(p) for p in parts if p)
            except ValueError:
                raise ValueError(
                    "ADMIN_IDS must be Telegram user ids separated by commas"
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

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("WEBHOOK_URL needs WEBHOOK_SECRET (Telegram signs webhook calls)")
        return self

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing logs."""
        values = [
            getattr(self, name).get_secret_value()
            for name, field in type(self).model_fields.items()
            if field.annotation in (SecretStr, SecretStr | None) and getattr(self, name)
        ]
        return tuple(v for v in values if v)
