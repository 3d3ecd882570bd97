"""The provider contract: value objects, the optional ports and the error tree.

Every adapter in this package implements `Provider`. Adapters are stateless and framework-free:
they turn our value objects into the provider's wire format and back, and never touch orders,
storage or chat. `bot/` builds `InboundRequest` from aiohttp and turns `Ack` into a response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from money import AmountFormat, Money


class Capability(StrEnum):
    CALLBACKS = "callbacks"  # the provider posts to /callbacks/{provider}?k={callback key}
    RETURN = "return"  # the customer's browser comes back to /return/{provider}/{token}
    STATUS_API = "status_api"  # fetch_status asks the provider: the truth
    STATUS_IN_CALLBACK = "status_in_callback"  # the authenticated callback body is the truth
    REFUND = "refund"  # refund() moves money back through the provider's API
    PARTIAL_REFUND = "partial_refund"
    SAVED_CARDS = "saved_cards"  # implements SavedCards
    BRIDGE_PAGE = "bridge_page"  # implements BridgePage: a page we host at /pay/{provider}/{token}
    IN_CHAT = "in_chat"  # implements InChat: paid inside Telegram (Stars)
    RECEIPT = "receipt"  # implements Receipts: a document for the customer once paid


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
class PaymentRef:
    """Which payment at the provider, and what a stateless adapter needs to ask about it later
    (the ERP's invoice number and bank, Payture's wallet flag, a Stars user id).

    `data` is opaque to the core: stored with the order as JSON and handed back to
    `fetch_status` and `refund`. A ref identifies; it proves nothing.
    """

    payment_id: str
    data: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", {str(k): str(v) for k, v in self.data.items()})


@dataclass(frozen=True, slots=True)
class CheckoutLine:
    """One line of the cart, for providers that take the order's lines (the Turkmen ERP
    re-checks each against its own stock). `sku` is the merchant's code of the product in the
    provider's system (the catalog's `sku`; the ERP's resource id), "" when it has none."""

    sku: str
    title: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """What an adapter needs to open a checkout for one order."""

    order_id: int
    amount: Money
    description: str
    return_url: str  # our /return/{provider}/{token}; adapters may add query parameters
    callback_url: str  # our /callbacks/{provider}?k={callback key}: authenticates a callback
    token: str  # the order's return token (customer-visible), already in return and bridge URL
    bridge_url: str = ""  # our /pay/{provider}/{token}, for BRIDGE_PAGE providers
    locale: str = "en"
    customer_ip: str = "127.0.0.1"
    customer_ref: str = ""  # a stable per-customer reference for wallets, never shown
    user_id: int = 0  # the customer's Telegram id (IN_CHAT providers)
    saved_card_id: str | None = None  # pay with a card the customer saved (SAVED_CARDS only)
    lines: tuple[CheckoutLine, ...] = ()  # the cart, where the order is placed


@dataclass(frozen=True, slots=True)
class Checkout:
    """The opened checkout: where to send the customer and how to ask about it later."""

    pay_url: str
    ref: PaymentRef | None  # None when the provider assigns it later (return, bridge page)
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentStatus:
    """The provider's answer about a payment: the source of truth for confirmation.

    It says explicitly what it reports: `paid` is what the customer paid, `remaining` what is
    left on the payment after refunds, each None when the provider does not say. `ref` is set
    when the provider changed the payment's reference (the ERP renames an invoice): the core
    stores it.
    """

    state: PaymentState
    paid: Money | None = None
    remaining: Money | None = None
    provider_status: str = ""  # the provider's own word, for the audit row
    detail: str = ""
    ref: PaymentRef | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """What an inbound request (callback, return, chat payment) is about.

    `ref` says which payment (None: the request names none, e.g. a return before the provider
    assigned one). `status` is set only where the inbound request itself is the truth: an
    authenticated callback body (STATUS_IN_CALLBACK, KTWidget) or a payment the Bot API reports
    in the chat (IN_CHAT, Stars). The core stores it with the event and `confirm` applies it.
    `event_key` dedupes the inbox; `hint` is what the request claimed, for the audit row only.
    """

    ref: PaymentRef | None
    status: PaymentStatus | None = None
    event_key: str | None = None
    hint: str = ""


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
    already: bool = False  # DONE because the provider had refunded it before: nothing moved now


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
    """What the provider (or the browser, for a bridge page) expects back from us."""

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


class LineRefusal(StrEnum):
    """Why a provider that keeps its own stock refused a line of the cart."""

    GONE = "gone"  # deleted
    INACTIVE = "inactive"  # not sold now
    SOLD_OUT = "sold_out"
    PRICE = "price"  # the provider's price is another
    UNKNOWN = "unknown"


class LinesRefused(ProviderRejected):
    """The provider re-checked the cart against its own stock and refused these lines:
    `(sku, why)` each. The order fails; the customer is told which products and why."""

    def __init__(
        self, message: str, refused: tuple[tuple[str, LineRefusal], ...], **kwargs: object
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.refused = refused


class BadCallback(ProviderError):
    """An inbound request we cannot authenticate or understand: answer 4xx, change nothing."""


# --- the contract -------------------------------------------------------------------------


@runtime_checkable
class Provider(Protocol):
    name: str
    display_name: str  # what the chat shows ("Bank card (Payture)")
    capabilities: frozenset[Capability]
    amount_format: AmountFormat
    confirm_window: timedelta  # how long after the deadline a final answer may still come

    async def create_checkout(self, request: CheckoutRequest) -> Checkout: ...

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        """Identify (and for STATUS_IN_CALLBACK, authenticate and read) a callback; BadCallback
        when it is not one of ours."""

    async def parse_return(self, request: InboundRequest) -> Inbound: ...

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        """Ask the provider (STATUS_API). Providers without one raise ProviderRejected."""

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult: ...

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


@runtime_checkable
class Receipts(Protocol):
    """Providers with Capability.RECEIPT: the payment's receipt as the provider renders it
    (KTWidget's PDF), sent to the customer beside the paid message."""

    async def receipt(self, ref: PaymentRef) -> bytes: ...


@dataclass(frozen=True, slots=True)
class BridgeResult:
    """What a bridge page answers: the page or reply to send back, and the payment it opened
    (None for a page that opened none, or a refused post). `problem` is an error the core acts
    on beyond the page (ProviderMisconfigured: the admins are told)."""

    ack: Ack
    ref: PaymentRef | None = None
    problem: ProviderError | None = None


@dataclass(frozen=True, slots=True)
class BridgeWords:
    """What a bridge page says, in the order's language: written by bot/ (gettext, Babel's
    money), placed by the adapter, which never words anything a customer reads itself."""

    lang: str  # the page's `lang` attribute
    title: str  # "Order #12: MNT 5,000.00"
    opening: str  # while the page asks the app for the customer's token
    opened: str  # the payment is open in the app: what the customer does next
    outside: str  # opened in an ordinary browser: how to open it in the app
    copy_link: str
    copied: str
    refused: str  # the app's token for the customer did not hold
    unavailable: str  # the provider could not open the payment now
    scan: str  # the QR code's caption
    open_app: str  # the button to the app's deeplink
    check: str  # the link that asks us whether it is paid


@runtime_checkable
class BridgePage(Protocol):
    """Providers with Capability.BRIDGE_PAGE (Pocket): the Pay button opens our page
    `/pay/{provider}/{token}`, whose browser step (the customer's token inside the Pocket app)
    creates the payment. The core stores the ref it returns and confirms as for any payment.

    `opened` is the payment a visit of this page opened before: an adapter shows it again and
    never opens a second one for the same order (both could be paid)."""

    async def bridge(
        self,
        request: InboundRequest,
        checkout: CheckoutRequest,
        words: BridgeWords,
        opened: PaymentRef | None,
    ) -> BridgeResult: ...


@runtime_checkable
class CallbackSetup(Protocol):
    """Providers whose callback URL is one per merchant, set through their own API (Pocket's
    pg/config) rather than sent with each checkout. The core hands over the URL, with a key of
    the provider's in it, at start-up; True when the provider had another one before."""

    async def set_callback_url(self, url: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class ChatPayment:
    """A payment Telegram reports in the chat (`successful_payment`, or its `refunded_payment`):
    authenticated by the Bot API itself."""

    user_id: int
    currency: str
    total_amount: int  # minor units, as Telegram writes them
    invoice_payload: str
    charge_id: str  # telegram_payment_charge_id: unique per payment
    provider_charge_id: str = ""
    at: datetime | None = None  # when Telegram took it (the message's date)


@dataclass(frozen=True, slots=True)
class StarTransaction:
    """One line of the bot's Stars ledger (`getStarTransactions`): a payment from a user, or
    its refund to the user, which carries the payment's id."""

    id: str
    amount: int  # whole stars
    at: datetime
    user_id: int | None  # None: not a user's (ads, Fragment withdrawals...)
    payload: str
    incoming: bool  # True: the user paid the bot; False: the bot paid the user back


@dataclass(frozen=True, slots=True)
class ListedPayment:
    """A payment as the provider's own ledger lists it, for reconciliation."""

    payment: ChatPayment
    refunded: bool = False


@runtime_checkable
class TelegramPayments(Protocol):
    """The Telegram side of in-chat payments, injected by bot/ (the adapter never sees aiogram).
    Errors come as ProviderUnavailable (retry) or ProviderRejected with Telegram's word as
    `code` (CHARGE_ALREADY_REFUNDED...)."""

    async def send_invoice(
        self,
        *,
        chat_id: int,
        order_id: int,
        locale: str,
        description: str,
        payload: str,
        amount: Money,
    ) -> None:
        """An invoice message in the chat, titled in the customer's language."""

    async def refund_star_payment(self, user_id: int, charge_id: str) -> None: ...

    async def star_transactions(self, offset: int, limit: int) -> list[StarTransaction]:
        """The ledger in chronological order (oldest first), `limit` at most 100."""


@runtime_checkable
class InChat(Protocol):
    """Providers with Capability.IN_CHAT: the payment arrives as a chat update, after a
    pre-checkout question answered from what storage knows."""

    def order_of(self, payload: str) -> int | None:
        """The order an invoice payload names; None when its signature does not hold."""

    def parse_chat_payment(self, payment: ChatPayment) -> Inbound: ...

    async def listed_payments(self, since: datetime) -> list[ListedPayment]:
        """The provider's own list of payments since then: a lost update shows up here."""
