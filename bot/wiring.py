"""One table of providers: name -> settings model -> builder. Adding a provider is one entry
here (and an adapter, an emulator and a test driver); nothing else in bot/ names providers."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from bot.config import ENV, ProviderSettings, Settings, given_values_only
from providers.base import Provider, TelegramPayments
from providers.erp import Bank, ErpProvider
from providers.ktwidget import KTWidgetProvider
from providers.payture import PaytureProvider
from providers.pocket import Mode as PocketMode
from providers.pocket import PocketProvider
from providers.redoya import RedoyaProvider
from providers.registry import Registry
from providers.stars import StarsProvider


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


@dataclass(frozen=True, slots=True)
class Deps:
    """What builders get besides their settings: the shared HTTP client, the Telegram side of
    in-chat payments, and a secret of the process to derive per-provider keys from."""

    client: httpx.AsyncClient
    telegram: TelegramPayments | None = None
    secret: str = ""

    def key(self, purpose: str) -> str:
        if not self.secret:
            raise ValueError("no secret to derive a key from")
        return hmac.new(self.secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


class RedoyaSettings(ProviderSettings):
    """Redoya (Turkey, TRY)."""

    model_config = SettingsConfigDict(**ENV, env_prefix="REDOYA_")
    required: ClassVar[tuple[str, ...]] = ("secret", "identifier")

    secret: SecretStr | None = None
    identifier: SecretStr | None = None
    api_url: str = "https://pay.redoya.net"
    pay_url: str = "https://pay.redoya.net"
    test_mode: bool = False
    token_minutes: int = Field(30, ge=11, le=525600)
    decimal_prices: bool = False

    def build(self, deps: Deps) -> Provider:
        return RedoyaProvider(
            deps.client,
            api_url=self.api_url,
            pay_url=self.pay_url,
            secret=_secret(self.secret) or "",
            identifier=_secret(self.identifier) or "",
            test_mode=self.test_mode,
            token_lifetime=timedelta(minutes=self.token_minutes),
            decimal_prices=self.decimal_prices,
        )


class PaytureSettings(ProviderSettings):
    """Payture (Russia, RUB): InPay, and EWallet for saved cards when its terminal is set."""

    model_config = SettingsConfigDict(**ENV, env_prefix="PAYTURE_")
    required: ClassVar[tuple[str, ...]] = ("key", "password")

    url: str = "https://sandbox3.payture.com"
    key: SecretStr | None = None
    password: SecretStr | None = None
    wallet_key: SecretStr | None = None
    wallet_password: SecretStr | None = None
    wallet_secret: SecretStr | None = None

    def build(self, deps: Deps) -> Provider:
        return PaytureProvider(
            deps.client,
            base_url=self.url,
            key=_secret(self.key) or "",
            password=_secret(self.password) or "",
            wallet_key=_secret(self.wallet_key),
            wallet_password=_secret(self.wallet_password),
            wallet_secret=_secret(self.wallet_secret),
        )


class KTWidgetSettings(ProviderSettings):
    """KTWidget / ktpay (Kazakhstan, KZT): the app id and its public Sodium key from KTWidget's
    manager, and the merchant id its callbacks carry."""

    model_config = SettingsConfigDict(**ENV, env_prefix="KTWIDGET_")
    required: ClassVar[tuple[str, ...]] = ("app_id", "app_key", "merchant_id")

    app_id: SecretStr | None = None
    app_key: str | None = None  # a public key: not a secret
    merchant_id: int | None = Field(None, ge=1)
    api_url: str = "https://fintech.nplus.tech"  # test: fintech.test.nplus.tech
    widget_url: str = "https://widget.nplus.tech"  # test: widget.test.nplus.tech
    pay_minutes: int = Field(30, ge=5, le=1440)  # how long the card page is offered

    def build(self, deps: Deps) -> Provider:
        return KTWidgetProvider(
            deps.client,
            api_url=self.api_url,
            widget_url=self.widget_url,
            app_id=_secret(self.app_id) or "",
            app_key=self.app_key or "",
            merchant_id=self.merchant_id or 0,
            lifetime=timedelta(minutes=self.pay_minutes),
        )


class PocketSettings(ProviderSettings):
    """Pocket / Invescore (Mongolia, MNT): the merchant's client id and secret and terminal, and
    the realm's public key (Keycloak's realm page, `public_key`) that signs customer tokens.
    `POCKET_MODE`: `app` (the page works inside the Pocket app), `qr` (a QR code and deeplink),
    or `both` (inside Pocket as `app`, elsewhere the QR code is offered)."""

    model_config = SettingsConfigDict(**ENV, env_prefix="POCKET_")
    required: ClassVar[tuple[str, ...]] = (
        "client_id",
        "client_secret",
        "terminal_id",
        "public_key",
    )

    client_id: str | None = None
    client_secret: SecretStr | None = None
    terminal_id: str | None = None
    public_key: str | None = None  # a public key: not a secret
    sso_url: str = "https://sso.invescore.mn"  # staging: sso-staging.invescore.mn
    api_url: str = "https://service.invescore.mn"  # staging: service-staging.invescore.mn
    js_url: str | None = None  # where pocket.js is served; needed unless mode is qr
    issuer: str | None = None  # default: {sso_url}/auth/realms/invescore
    mode: PocketMode = PocketMode.BOTH
    pay_minutes: int = Field(30, ge=5, le=1440)  # how long the order waits for the payment

    @field_validator("mode", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def build(self, deps: Deps) -> Provider:
        if not self.js_url and self.mode is not PocketMode.QR:
            raise ValueError("POCKET_JS_URL: required unless POCKET_MODE=qr")
        return PocketProvider(
            deps.client,
            sso_url=self.sso_url,
            api_url=self.api_url,
            script_url=self.js_url or "",
            client_id=self.client_id or "",
            client_secret=_secret(self.client_secret) or "",
            terminal_id=self.terminal_id or "",
            public_key=self.public_key or "",
            issuer=self.issuer or f"{self.sso_url.rstrip('/')}/auth/realms/invescore",
            mode=self.mode,
            lifetime=timedelta(minutes=self.pay_minutes),
        )


class ErpSettings(ProviderSettings):
    """Halkbank and TFEB through the Turkmen ERP's online-payment API (TMT): the ERP's URL, a
    device or customer-account token, the payment method and the customer account orders are
    booked to, and, for TFEB, the ERP login its register call needs. `ERP_BANKS` says which
    banks the chat offers."""

    model_config = SettingsConfigDict(**ENV, env_prefix="ERP_")
    required: ClassVar[tuple[str, ...]] = ("api_url", "token", "pm_id", "rp_acc_guid")
    bank: ClassVar[Bank]

    api_url: str | None = None
    token: SecretStr | None = None
    token_header: Literal["bearer", "x-access-token"] = "bearer"  # noqa: S105 - a header name
    pm_id: int | None = None
    rp_acc_guid: str | None = None
    login: str | None = None
    password: SecretStr | None = None
    banks: str = "halkbank,tfeb"
    pay_minutes: int = Field(30, ge=5, le=1440)  # how long an order waits for the bank

    def offered(self) -> bool:
        return self.bank.name.lower() in {b.strip().lower() for b in self.banks.split(",")}

    def is_enabled(self) -> bool:
        return self.offered() and super().is_enabled()

    def missing(self) -> list[str]:
        return super().missing() if self.offered() else []

    def build(self, deps: Deps) -> Provider:
        return ErpProvider(
            deps.client,
            bank=self.bank,
            api_url=self.api_url or "",
            token=_secret(self.token) or "",
            auth_header=self.token_header,
            pm_id=self.pm_id or 0,
            rp_acc_guid=self.rp_acc_guid or "",
            login=self.login or "",
            password=_secret(self.password) or "",
            lifetime=timedelta(minutes=self.pay_minutes),
        )


class HalkbankSettings(ErpSettings):
    bank: ClassVar[Bank] = Bank.HALKBANK


class TfebSettings(ErpSettings):
    """TFEB's register call reads the ERP's web session: ERP_LOGIN and ERP_PASSWORD too."""

    bank: ClassVar[Bank] = Bank.TFEB
    required: ClassVar[tuple[str, ...]] = (*ErpSettings.required, "login", "password")


class StarsSettings(ProviderSettings):
    """Telegram Stars (XTR): no provider account, only `STARS_ENABLED=true`. The invoice
    payloads are signed with a key derived from CALLBACK_SECRET (or BOT_TOKEN)."""

    model_config = SettingsConfigDict(**ENV, env_prefix="STARS_")

    enabled: bool = False
    invoice_minutes: int = Field(60, ge=5, le=10080)  # how long an unpaid invoice stays payable

    def is_enabled(self) -> bool:
        return self.enabled

    def build(self, deps: Deps) -> Provider:
        if deps.telegram is None:
            raise ValueError("Stars needs the Telegram payments port")
        return StarsProvider(
            deps.telegram,
            secret=deps.key("stars-payloads"),
            invoice_lifetime=timedelta(minutes=self.invoice_minutes),
        )


@dataclass(frozen=True, slots=True)
class Entry:
    settings: type[ProviderSettings]
    build: Callable[[Any, Deps], Provider]


PROVIDERS: Mapping[str, Entry] = {
    "redoya": Entry(RedoyaSettings, RedoyaSettings.build),
    "payture": Entry(PaytureSettings, PaytureSettings.build),
    "ktwidget": Entry(KTWidgetSettings, KTWidgetSettings.build),
    "pocket": Entry(PocketSettings, PocketSettings.build),
    "halkbank": Entry(HalkbankSettings, HalkbankSettings.build),
    "tfeb": Entry(TfebSettings, TfebSettings.build),
    "stars": Entry(StarsSettings, StarsSettings.build),
}


class ConfigError(ValueError):
    """Settings that do not validate; `problems` name each variable and what is wrong, `fields`
    the settings that failed ('' for a rule between settings)."""

    def __init__(self, problems: list[str], fields: tuple[str, ...] = ()) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.fields = fields


def _message(error: Any) -> str:
    """pydantic's message in our style: no 'Value error,' prefix, lower case like ours."""
    text = str(error["msg"]).removeprefix("Value error, ")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    return [
        f"{prefix}{'.'.join(str(p) for p in error['loc']).upper() or 'settings'}: {_message(error)}"
        for error in exc.errors()
    ]


def _fields(exc: ValidationError) -> tuple[str, ...]:
    return tuple(str(error["loc"][0]) if error["loc"] else "" for error in exc.errors())


@dataclass(frozen=True, slots=True)
class ProviderState:
    """One provider as the settings leave it: enabled (with its settings), off, or wrong
    (`problems` name each variable, never a value)."""

    name: str
    settings: ProviderSettings | None
    problems: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # the variables that would enable it, for "off" lines


def provider_states(env: Mapping[str, str] | None = None) -> list[ProviderState]:
    """Every provider of the table, from the environment and .env, or only from `env`."""
    states: list[ProviderState] = []
    for name, entry in PROVIDERS.items():
        model = entry.settings
        needs = tuple(f"{model.prefix()}{field.upper()}" for field in model.required)
        try:
            settings = model() if env is None else model.from_env(env)
        except ValidationError as exc:
            states.append(ProviderState(name, None, tuple(_problems(exc, model.prefix())), needs))
            continue
        if settings.is_enabled():
            states.append(ProviderState(name, settings, (), needs))
        else:  # some credentials set, not all: say which is missing
            half = [
                f"{model.prefix()}{field.upper()}: required with the others"
                for field in settings.missing()
            ]
            states.append(ProviderState(name, None, tuple(half), needs))
    return states


def configured(env: Mapping[str, str] | None = None) -> dict[str, ProviderSettings]:
    """The enabled providers' settings: from the environment and .env, or only from `env`."""
    states = provider_states(env)
    problems = [problem for state in states for problem in state.problems]
    if problems:
        raise ConfigError(problems)
    return {state.name: state.settings for state in states if state.settings is not None}


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings with every enabled provider: from the environment and .env, or, for the demo
    and the tests, only from `env` (the sandbox's lines) and `overrides`."""
    try:
        if env is None:
            settings = Settings(**overrides)
        else:
            names = Settings.model_fields
            values = {k.lower(): v for k, v in env.items() if k.lower() in names and v.strip()}
            with given_values_only():
                settings = Settings(**(values | overrides))
    except ValidationError as exc:
        raise ConfigError(_problems(exc), _fields(exc)) from None
    if "providers" in overrides:
        return settings
    return settings.model_copy(update={"providers": configured(env)})


def build_providers(
    settings: Settings, client: httpx.AsyncClient, telegram: TelegramPayments | None = None
) -> Registry:
    """The adapters of the enabled providers, in the table's order."""
    deps = Deps(client, telegram, settings.callback_key_secret())
    return Registry(
        entry.build(settings.providers[name], deps)
        for name, entry in PROVIDERS.items()
        if name in settings.providers
    )


def setting_names() -> str:
    """'REDOYA_*, PAYTURE_*, ...' for the start-up error with no provider configured."""
    return ", ".join(f"{entry.settings.prefix()}*" for entry in PROVIDERS.values())
