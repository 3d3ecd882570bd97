"""The provider contract: value objects, the error tree and money conversion.

Every adapter in this package implements `Provider`. Adapters are stateless and framework-free:
they turn our value objects into the provider's wire format and back, and never touch orders,
storage or chat. `bot/` builds `InboundRequest` from aiohttp and turns `Ack` into a response.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable
from urllib.parse import quote

import httpx

# Minor units per major unit, by ISO 4217 code (XTR: Telegram Stars are whole).
MINOR_UNITS: Mapping[str, int] = {
    "TRY": 2,
    "MNT": 2,
    "KZT": 2,
    "RUB": 2,
    "TMT": 2,
    "USD": 2,
    "EUR": 2,
    "XTR": 0,
}


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units (kuruş, kopecks, tiyin) and an ISO 4217 code."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError(f"Money.amount must be int minor units, got {type(self.amount)!r}")
        if self.currency not in MINOR_UNITS:
            raise ValueError(f"unsupported currency {self.currency!r}")

    @property
    def exponent(self) -> int:
        return MINOR_UNITS[self.currency]

    def to_decimal(self) -> Decimal:
        """The amount in major units, exactly (1250 RUB minor -> Decimal('12.50'))."""
        return Decimal(self.amount).scaleb(-self.exponent)

    @classmethod
    def from_decimal(cls, value: Decimal | str | int, currency: str) -> Money:
        """Major units to Money; refuses values with more decimals than the currency has."""
        exponent = MINOR_UNITS[currency]
        minor = Decimal(value).scaleb(exponent)
        if minor != minor.to_integral_value():
            raise AmountNotRepresentable(f"{value} {currency} has more than {exponent} decimals")
        return cls(int(minor), currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, times: int) -> Money:
        return Money(self.amount * times, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot mix {self.currency} and {other.currency}")

    def __str__(self) -> str:
        return f"{self.to_decimal()} {self.currency}"


@dataclass(frozen=True, slots=True)
class AmountFormat:
    """How a provider writes amounts on the wire, declared once per adapter.

    `decimals` is how many decimals the provider accepts in major units (0 = whole units);
    `minimum`/`maximum` bound the amount in minor units.
    """

    currencies: frozenset[str]
    decimals: int
    minimum: int = 1
    maximum: int | None = None

    def check(self, money: Money) -> None:
        """Raise AmountNotRepresentable when the provider cannot take this amount."""
        if money.currency not in self.currencies:
            raise AmountNotRepresentable(f"currency {money.currency} is not accepted")
        if money.amount < self.minimum:
            raise AmountNotRepresentable(
                f"{money} is below the minimum {Money(self.minimum, money.currency)}"
            )
        if self.maximum is not None and money.amount > self.maximum:
            raise AmountNotRepresentable(
                f"{money} is above the maximum {Money(self.maximum, money.currency)}"
            )
        step = 10 ** (money.exponent - self.decimals)
        if step > 1 and money.amount % step:
            raise AmountNotRepresentable(
                f"{money} needs {money.exponent} decimals, the provider takes {self.decimals}"
            )

    def to_wire(self, money: Money) -> Decimal:
        """The amount in major units with the provider's decimals, checked first."""
        self.check(money)
        quantum = Decimal(1).scaleb(-self.decimals)
        return money.to_decimal().quantize(quantum, rounding=ROUND_DOWN)


class Capability(StrEnum):
    CALLBACKS = "callbacks"  # the provider posts to /callbacks/{provider}
    RETURN = "return"  # the customer's browser comes back to /return/{provider}/{token}
    POLLING = "polling"  # fetch_status works from what we stored at checkout
    REFUND = "refund"
    PARTIAL_REFUND = "partial_refund"
    SAVED_CARDS = "saved_cards"


class PaymentState(StrEnum):
    """What the provider says about one payment, in our words."""

    PENDING = "pending"  # not final yet; also every status we do not know
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    NEEDS_REVIEW = "needs_review"  # the provider's answer is one a person must look at


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """What an adapter needs to open a checkout for one order."""

    order_id: int
    amount: Money
    description: str
    return_url: str  # our /return/{provider}/{token}; adapters may add query parameters
    callback_url: str  # our /callbacks/{provider}?t={token}
    token: str  # the order's unguessable token, already inside both URLs
    locale: str = "en"
    customer_ip: str = "127.0.0.1"
    customer_ref: str = ""  # a stable per-customer reference for wallets, never shown
    saved_card_id: str | None = None  # pay with a card the customer saved (SAVED_CARDS only)


@dataclass(frozen=True, slots=True)
class Checkout:
    """The opened checkout: where to send the customer and how to ask about it later."""

    pay_url: str
    provider_payment_id: str | None  # None when the provider assigns it on the customer's return
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentRef:
    """Which payment an inbound request is about. Identifies only; proves nothing."""

    provider_payment_id: str | None
    event_key: str | None = None  # dedupe key for the inbox, when the request is an event
    hint: str = ""  # what the request claimed (e.g. "success"), for the audit row only


@dataclass(frozen=True, slots=True)
class PaymentStatus:
    """The provider's answer about a payment: the source of truth for confirmation."""

    state: PaymentState
    provider_payment_id: str
    amount: Money | None = None  # what the provider says was paid (None when it does not say)
    provider_status: str = ""  # the provider's own word, for the audit row
    detail: str = ""


class RefundOutcome(StrEnum):
    DONE = "done"
    PENDING = "pending"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class RefundResult:
    outcome: RefundOutcome
    refunded: Money
    remaining: Money | None = None  # what the provider says is left on the payment
    provider_code: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """An HTTP request as plain values, built by bot/web from aiohttp."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # keys lower-case
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class Ack:
    """What the provider expects back from our callback endpoint."""

    status: int = 200
    content_type: str = "text/plain"
    body: bytes = b"OK"


# --- errors -----------------------------------------------------------------------------------


class ProviderError(Exception):
    """Base of the error tree. Carries the provider, HTTP status and provider code, never bodies
    or credentials, so it is safe to log and to show to admins."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        http_status: int | None = None,
        code: str = "",
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.http_status = http_status
        self.code = code

    def __str__(self) -> str:
        parts = [self.args[0] if self.args else type(self).__name__]
        if self.provider:
            parts.insert(0, f"[{self.provider}]")
        if self.http_status is not None:
            parts.append(f"(HTTP {self.http_status})")
        if self.code:
            parts.append(f"code={self.code}")
        return " ".join(parts)


class ProviderUnavailable(ProviderError):
    """Transient: timeouts, 5xx, connection errors. Retry later; nothing is decided."""


class ProviderRejected(ProviderError):
    """Final: the provider refused the request (bad credentials, bad data, illegal state)."""


class ProviderMisconfigured(ProviderRejected):
    """Final until a person acts: credentials or settings are wrong. Admins are told once."""


class BadCallback(ProviderError):
    """An inbound request we cannot authenticate or understand: answer 4xx, change nothing."""


class AmountNotRepresentable(ValueError):
    """The provider cannot take this amount; refuse before an order is created."""


# --- the contract -------------------------------------------------------------------------


@runtime_checkable
class Provider(Protocol):
    name: str
    capabilities: frozenset[Capability]
    amount_format: AmountFormat

    def check_amount(self, amount: Money) -> None:
        """Raise AmountNotRepresentable before an order is created."""

    async def create_checkout(self, request: CheckoutRequest) -> Checkout: ...

    async def parse_callback(self, request: InboundRequest) -> PaymentRef: ...

    async def parse_return(self, request: InboundRequest) -> PaymentRef: ...

    async def fetch_status(self, ref: PaymentRef, expected: Money) -> PaymentStatus: ...

    async def refund(self, payment_id: str, amount: Money, key: str) -> RefundResult: ...

    def ack(self, ok: bool) -> Ack: ...


@dataclass(frozen=True, slots=True)
class SavedCardInfo:
    """All that leaves an adapter of a saved card: the provider's id and the masked number."""

    card_id: str
    card_name: str


@runtime_checkable
class SavedCards(Protocol):
    """Providers with Capability.SAVED_CARDS: a page where the customer adds a card, and the
    list of cards kept for a customer reference."""

    async def open_card_session(
        self, customer_ref: str, *, ip: str, return_url: str
    ) -> Checkout: ...

    async def list_cards(self, customer_ref: str) -> list[SavedCardInfo]: ...


# --- the shared send ----------------------------------------------------------------------

log = logging.getLogger("providers")


async def send(
    client: httpx.AsyncClient,
    provider: str,
    method: str,
    url: str,
    **kwargs: object,
) -> httpx.Response:
    """One HTTP call to a provider: transport errors and 5xx become ProviderUnavailable.

    4xx answers are returned, because several providers put meaningful answers there (Redoya's
    NOT_CONFIRMED_YET is a 400); the adapter decides what they mean.
    """
    try:
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable("timed out", provider=provider) from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(
            f"transport error: {type(exc).__name__}", provider=provider
        ) from exc
    if response.status_code >= 500:
        log.warning("%s answered HTTP %s", provider, response.status_code)
    return response


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and its URL-encoded form) replaced by '***', for logs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


def logging_hooks(secrets: Iterable[str]) -> dict[str, list[Callable[..., Awaitable[None]]]]:
    """httpx event hooks that log each provider call (method, redacted URL, status), never
    bodies or headers. Pass to `httpx.AsyncClient(event_hooks=...)`."""
    known = tuple(s for s in secrets if s)

    async def on_request(request: httpx.Request) -> None:
        log.debug("-> %s %s", request.method, redact(str(request.url), known))

    async def on_response(response: httpx.Response) -> None:
        request = response.request
        log.info(
            "<- %s %s %s", request.method, redact(str(request.url), known), response.status_code
        )

    return {"request": [on_request], "response": [on_response]}
