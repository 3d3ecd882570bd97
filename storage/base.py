"""The Storage protocol, its records and the order state machine.

Storage does the exactly-once work with unique constraints and compare-and-set transitions:
a state change, its audit row and the outbox rows it causes commit together or not at all.
Amounts are `Money` (integer minor units with an ISO currency code); storage never imports
providers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from money import Money


class OrderState(StrEnum):
    CREATED = "created"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    NEEDS_REVIEW = "needs_review"


S = OrderState

# Which transitions are legal. Any state may go to NEEDS_REVIEW (amount mismatch, success after
# expiry, an answer nobody understands); a person resolves NEEDS_REVIEW to paid or failed.
TRANSITIONS: Mapping[OrderState, frozenset[OrderState]] = {
    S.CREATED: frozenset({S.AWAITING_PAYMENT, S.FAILED, S.CANCELLED}),
    S.AWAITING_PAYMENT: frozenset({S.PAID, S.FAILED, S.CANCELLED, S.EXPIRED}),
    S.PAID: frozenset({S.REFUND_PENDING, S.REFUNDED, S.PARTIALLY_REFUNDED}),
    S.REFUND_PENDING: frozenset({S.REFUNDED, S.PARTIALLY_REFUNDED, S.PAID}),
    S.PARTIALLY_REFUNDED: frozenset({S.REFUND_PENDING, S.REFUNDED, S.PARTIALLY_REFUNDED}),
    S.REFUNDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.NEEDS_REVIEW: frozenset({S.PAID, S.FAILED, S.REFUNDED, S.REFUND_PENDING}),
}

# States in which the customer may still pay.
PAYABLE = frozenset({S.CREATED, S.AWAITING_PAYMENT})
FINAL = frozenset({S.REFUNDED, S.FAILED, S.CANCELLED, S.EXPIRED})


def can_transition(current: OrderState, target: OrderState) -> bool:
    if target is S.NEEDS_REVIEW:
        return current is not S.NEEDS_REVIEW
    return target in TRANSITIONS[current]


class IllegalTransition(ValueError):
    """The state table forbids this change (a bug in the caller, not a race)."""


def checked_states(
    expected: Sequence[OrderState] | OrderState, target: OrderState
) -> list[OrderState]:
    """The states a transition may start from; IllegalTransition if the table forbids any."""
    states = [expected] if isinstance(expected, OrderState) else list(expected)
    for state in states:
        if not can_transition(state, target):
            raise IllegalTransition(f"{state} -> {target} is not allowed")
    return states


class Fulfilment(StrEnum):
    """The merchant's side of an order, beside its payment state and never mixed into it."""

    NEW = "new"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"  # by the merchant; a paid order then goes down the refund path


F = Fulfilment

# The merchant's steps: shipped with an optional tracking note, or handed over at once;
# cancelled before or after shipping (returned). Delivered and cancelled are the end.
FULFILMENT_STEPS: Mapping[Fulfilment, frozenset[Fulfilment]] = {
    F.NEW: frozenset({F.SHIPPED, F.DELIVERED, F.CANCELLED}),
    F.SHIPPED: frozenset({F.DELIVERED, F.CANCELLED}),
    F.DELIVERED: frozenset(),
    F.CANCELLED: frozenset(),
}


def check_step(before: Fulfilment, after: Fulfilment) -> None:
    """IllegalTransition unless FULFILMENT_STEPS allows before -> after."""
    if after not in FULFILMENT_STEPS[before]:
        raise IllegalTransition(f"fulfilment {before} -> {after} is not allowed")


class DuplicatePayment(ValueError):
    """This provider payment id is already attached to another order."""


@dataclass(frozen=True, slots=True)
class OrderItem:
    sku: str
    title: str
    quantity: int
    unit_amount: int  # minor units, the order's currency


@dataclass(frozen=True, slots=True)
class Buyer:
    """Who placed the order, as Telegram names them (nobody checked it)."""

    name: str = ""
    username: str = ""  # without the '@'; empty when they have none


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a product that needs delivery goes: what the customer gave at checkout."""

    name: str
    phone: str  # as checked at checkout: '+' and digits
    address: str
    comment: str = ""


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """Which orders the staff's lists show; every field left empty matches all."""

    states: tuple[OrderState, ...] = ()
    fulfilment: tuple[Fulfilment, ...] = ()  # the merchant's side: shipped, delivered, ...
    provider: str | None = None
    user_id: int | None = None
    since: datetime | None = None  # created at or after
    text: str = ""  # an order id, a provider payment id, part of a name, @username or phone


def search_text(buyer: Buyer, delivery: Delivery | None) -> str:
    """What /find looks in: names, @username and phone digits, casefolded."""
    parts = [buyer.name, buyer.username]
    if delivery is not None:
        parts += [delivery.name, "".join(c for c in delivery.phone if c.isdigit())]
    return " ".join(p for p in parts if p).casefold()


@dataclass(frozen=True, slots=True)
class NewOrder:
    user_id: int
    chat_id: int
    provider: str
    total: Money
    token: str  # unguessable, goes into the return URL the customer sees; unique
    items: Sequence[OrderItem]
    locale: str = "en"
    description: str = ""
    buyer: Buyer = Buyer()
    delivery: Delivery | None = None


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    user_id: int
    chat_id: int
    provider: str
    total: Money
    state: OrderState
    token: str
    locale: str
    description: str
    created_at: datetime
    updated_at: datetime
    items: tuple[OrderItem, ...] = ()
    provider_payment_id: str | None = None
    payment_data: Mapping[str, str] = field(default_factory=dict)  # the adapter's, opaque here
    pay_url: str | None = None
    expires_at: datetime | None = None
    paid_at: datetime | None = None
    paid: Money | None = None
    refunded: Money | None = None  # None reads as nothing refunded, see `refunded_so_far`
    next_check_at: datetime | None = None
    check_attempts: int = 0
    message_id: int | None = None  # the chat message showing the order and its Pay button
    buyer: Buyer = Buyer()
    delivery: Delivery | None = None
    fulfilment: Fulfilment = Fulfilment.NEW
    tracking: str = ""  # the merchant's note when shipping (a tracking number, a courier)
    merchant_message_id: int | None = None  # the merchant chat's paid-order message

    @property
    def currency(self) -> str:
        return self.total.currency

    @property
    def refunded_so_far(self) -> Money:
        return self.refunded or Money.zero(self.total.currency)

    @property
    def left_to_refund(self) -> Money:
        """What may still be refunded: what was paid (the total when the provider did not
        say) less what was refunded already."""
        return (self.paid or self.total) - self.refunded_so_far


@dataclass(frozen=True, slots=True)
class OrderHead:
    """What taking a callback needs of its order (who it is, its state, its payment), read on
    every callback: a whole Order is 31 columns and the items, three times the cost."""

    id: int
    provider: str
    state: OrderState
    token: str
    total: Money
    provider_payment_id: str | None = None
    payment_data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewOutbox:
    """A message to deliver because of a transition; unique per (order_id, kind)."""

    kind: str
    chat_id: int
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    order_id: int | None
    kind: str
    chat_id: int
    payload: Mapping[str, Any]
    attempts: int
    next_attempt_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    order_id: int
    from_state: OrderState | None
    to_state: OrderState
    actor: str  # "return", "callback", "button", "sweep", "admin:<id>", ...
    detail: str  # the provider's answer in short, never secrets
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InboundEvent:
    id: int
    provider: str
    event_key: str
    order_id: int | None
    body: bytes
    received_at: datetime
    processed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Refund:
    id: int
    order_id: int
    amount: Money
    idempotency_key: str
    state: str  # "pending" | "done" | "rejected"
    actor: str
    provider_code: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UnexpectedPayment:
    """A payment we did not expect: kept once per provider payment until an admin acts."""

    id: int
    order_id: int
    provider: str
    payment_id: str
    payment_data: Mapping[str, str]
    amount: Money | None  # None when the provider did not say
    currency: str
    state: str  # "open" | "refunding" | "refunded"
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RefundEnd:
    """How a pending refund row ends, written together with the order's transition."""

    refund_id: int
    state: str  # "done" | "rejected"
    provider_code: str = ""


@dataclass(frozen=True, slots=True)
class SavedCard:
    """A card the customer saved with a provider's wallet: masked name and the provider's id
    only, never any other card data."""

    id: int
    user_id: int
    provider: str
    card_id: str
    card_name: str  # masked, e.g. "411111xxxxxx1111"
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Takings:
    """What one provider took in one currency over a window, counted one way everywhere:
    the orders paid in it (by `paid_at`, whatever their state now: a later refund does not
    make a sale vanish), what they paid, and the refunds done in it (API and manual alike)."""

    provider: str  # empty in a currency's total over every provider
    orders: int
    paid: Money
    refunded: Money

    @property
    def currency(self) -> str:
        return self.paid.currency

    @property
    def net(self) -> Money:
        """Paid less refunded; below zero when the window's refunds were of earlier sales."""
        return self.paid - self.refunded


@dataclass(frozen=True, slots=True)
class Figures:
    """Counts and sums over [since, until) for the staff's /stats and /today and the daily
    report: orders by state among those created in the window, and takings per currency and
    provider."""

    orders_by_state: Mapping[OrderState, int]
    takings: tuple[Takings, ...] = ()  # per (currency, provider), sorted by both
    undelivered_messages: int = 0  # outbox rows Telegram refused for good

    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted({t.currency for t in self.takings}))

    def total(self, currency: str) -> Takings:
        """One currency's takings over every provider."""
        rows = [t for t in self.takings if t.currency == currency]
        zero = Money.zero(currency)
        return Takings(
            "",
            sum(t.orders for t in rows),
            sum((t.paid for t in rows), zero),
            sum((t.refunded for t in rows), zero),
        )

    def by_provider(self, currency: str) -> tuple[Takings, ...]:
        return tuple(t for t in self.takings if t.currency == currency)


class Storage(Protocol):
    """Async storage. Every method is safe to call concurrently from one event loop."""

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the database answers (for /readyz)."""

    # orders
    async def create_order(self, new: NewOrder) -> Order: ...

    async def get_order(self, order_id: int) -> Order | None: ...

    async def get_order_by_token(self, token: str) -> Order | None: ...

    async def get_order_by_payment(
        self, provider: str, provider_payment_id: str
    ) -> Order | None: ...

    async def get_order_head(self, order_id: int) -> OrderHead | None: ...

    async def get_order_head_by_payment(
        self, provider: str, provider_payment_id: str
    ) -> OrderHead | None: ...

    async def orders_for_user(
        self, user_id: int, *, limit: int = 10, offset: int = 0
    ) -> list[Order]: ...

    async def search_orders(
        self, query: OrderQuery, *, limit: int = 10, offset: int = 0
    ) -> list[Order]:
        """The orders that match, newest first (the staff's /orders, /find, /review)."""

    async def set_checkout(
        self,
        order_id: int,
        *,
        pay_url: str,
        provider_payment_id: str | None,
        payment_data: Mapping[str, str] | None = None,
        expires_at: datetime | None,
        next_check_at: datetime | None,
    ) -> Order:
        """Record the opened checkout and move CREATED -> AWAITING_PAYMENT (with audit)."""

    async def attach_payment(
        self, order_id: int, provider_payment_id: str, payment_data: Mapping[str, str]
    ) -> Order:
        """Set the payment once (a return or a bridge page names it). The same id again is a
        no-op; a different id on an order that has one, or an id that belongs to another order,
        raises DuplicatePayment."""

    async def update_payment(
        self, order_id: int, provider_payment_id: str, payment_data: Mapping[str, str]
    ) -> Order:
        """Replace the payment's reference because the provider changed it (the ERP renames an
        invoice). DuplicatePayment when the new id belongs to another order."""

    async def transition(
        self,
        order_id: int,
        expected: Sequence[OrderState] | OrderState,
        target: OrderState,
        *,
        actor: str,
        detail: str = "",
        outbox: Sequence[NewOutbox] = (),
        paid: Money | None = None,
        refunded: Money | None = None,
        refund: RefundEnd | None = None,
    ) -> Order | None:
        """Compare-and-set: move the order to `target` only if its state is in `expected`.

        With `refund`, the refund row is finished in the same transaction (only while it is
        still pending), so an order and its refund never disagree after a crash.

        Writes the audit row and the outbox rows in the same transaction. Returns the updated
        order, or None if the state was not in `expected` (someone else won the race).
        Raises IllegalTransition when the state table forbids expected -> target.
        `paid_at` is set when target is PAID.
        """

    async def note(
        self, order_id: int, *, actor: str, detail: str, outbox: Sequence[NewOutbox] = ()
    ) -> Order | None:
        """An audit row without a change of state (a review note on a paid order), with its
        outbox rows in the same transaction. None when there is no such order."""

    async def set_fulfilment(
        self,
        order_id: int,
        expected: Fulfilment,
        target: Fulfilment,
        *,
        actor: str,
        tracking: str | None = None,
        outbox: Sequence[NewOutbox] = (),
        states: Collection[OrderState] | None = None,
    ) -> Order | None:
        """Compare-and-set of the fulfilment (the payment state is left as it is), with an
        audit row and the outbox rows in one transaction; `tracking` replaces the note when
        given. None when it was not `expected` (a second press), the order's payment state is
        not one of `states` (read in the same locked transaction: a refund that landed since
        the caller looked), or there is no such order.
        Raises IllegalTransition when FULFILMENT_STEPS forbids the step."""

    async def last_delivery(self, user_id: int) -> Delivery | None:
        """The delivery details of the customer's latest order that had some (offered again
        at the next checkout)."""

    async def schedule_check(
        self, order_id: int, next_check_at: datetime | None, attempts: int
    ) -> None: ...

    async def due_for_check(self, now: datetime, limit: int = 100) -> list[Order]:
        """Orders AWAITING_PAYMENT whose next_check_at <= now, oldest first."""

    async def paid_between(
        self, provider: str, since: datetime, until: datetime, limit: int = 1000
    ) -> list[Order]:
        """Orders of this provider paid in [since, until), oldest first (reconciliation)."""

    async def stale_created(self, before: datetime, limit: int = 100) -> list[Order]:
        """Orders still CREATED that were created before `before`: a checkout that never
        finished (the process died, or the adapter raised something unexpected)."""

    async def claim_check(self, order_id: int, now: datetime, until: datetime) -> bool:
        """Take a due order for one check by moving its next check to `until`; False when
        another sweep (a replica) took it first or it is no longer due."""

    async def audit_trail(self, order_id: int) -> list[AuditEntry]: ...

    # inbound events (callbacks), stored before we answer the provider
    async def record_inbound(
        self,
        provider: str,
        event_key: str,
        order_id: int | None,
        body: bytes,
        *,
        processed: bool = False,
    ) -> int | None:
        """Store an event once per (provider, event_key): its id if it was new, else None.
        `processed`: stored as done (it leaves nothing to confirm), so nothing replays it."""

    async def unprocessed_inbound(
        self, limit: int = 100, due_at: datetime | None = None, *, after: int = 0
    ) -> list[InboundEvent]:
        """Stored events not processed yet, oldest first, from the one after event `after`.
        With `due_at`, leave out those whose order is backing off after a failed check
        (checked before, next check later)."""

    async def mark_inbound_processed(self, event_id: int) -> None: ...

    async def prune_inbound(self, before: datetime, limit: int = 500) -> int:
        """Forget up to `limit` processed events received before `before`, oldest first; how
        many were. An event not processed yet is never forgotten."""

    async def inbound_for_order(self, order_id: int) -> list[InboundEvent]:
        """Every stored event of an order, oldest first (a STATUS_IN_CALLBACK provider's
        stored callbacks are the truth about its payment)."""

    # outbox
    async def enqueue(self, order_id: int | None, message: NewOutbox) -> bool:
        """Queue a message outside a transition (admin replies...). False if (order, kind)
        was queued before. Rows of no order (None) are not unique by kind, except the daily
        report's ('merchant_daily_report:<day>'), which is once per day."""

    async def due_outbox(
        self, now: datetime, limit: int = 50, busy: Collection[int] = ()
    ) -> list[OutboxMessage]:
        """The oldest `limit` rows due at `now`, none to a chat in `busy` (still in its flood
        gap): the rows of a busy group never fill the read ahead of free chats' rows."""

    async def claim_outbox(self, message_id: int, now: datetime, until: datetime) -> bool:
        """Take a due message for sending until `until`; False when another sender (a replica)
        took it first or it is no longer due. A sender that dies holding it frees it at
        `until`."""

    async def mark_sent(self, message_id: int) -> None: ...

    async def defer(
        self, message_id: int, until: datetime, error: str, *, attempt: bool = True
    ) -> None:
        """Try again at `until`; `attempt=False` when the send did not fail (a 429 said when
        to come back), so the row's attempts stay for real failures."""

    async def mark_failed(self, message_id: int, error: str) -> None:
        """Telegram will never take this message (bot blocked, chat gone, retries spent): keep
        the row with its reason, stop trying."""

    # refunds (idempotency_key unique)
    async def create_refund(
        self, order_id: int, amount: Money, idempotency_key: str, actor: str
    ) -> tuple[Refund, bool]:
        """Insert a pending refund, or return (created=False) the existing one with that key,
        or the order's refund still pending (one open refund per order: another key's)."""

    async def finish_refund(
        self, refund_id: int, state: str, provider_code: str = ""
    ) -> Refund: ...

    async def refunds_for_order(self, order_id: int) -> list[Refund]: ...

    async def unfinished_refunds(self, before: datetime, limit: int = 100) -> list[Refund]:
        """Refunds still pending that nobody touched since `before`: a crash or an outage
        between asking the provider and writing its answer. The longest untouched first (the
        pending refunds' index is by that time)."""

    async def claim_refund(self, refund_id: int, before: datetime, now: datetime) -> bool:
        """Take an unfinished refund for one check (touching it at `now`); False when another
        sweep (a replica) took it first or it was finished meanwhile."""

    # payments we did not expect, unique per (provider, payment_id)
    async def record_unexpected(
        self,
        order_id: int,
        provider: str,
        payment_id: str,
        payment_data: Mapping[str, str],
        amount: Money | None,
        currency: str,
        reason: str,
    ) -> tuple[UnexpectedPayment, bool]:
        """Keep it once: the row, and whether it is new (a repeated callback is not)."""

    async def get_unexpected(self, payment_row_id: int) -> UnexpectedPayment | None: ...

    async def find_unexpected(self, provider: str, payment_id: str) -> UnexpectedPayment | None:
        """The payment we did not expect kept under this provider payment id, if any."""

    async def unexpected_for_order(self, order_id: int) -> list[UnexpectedPayment]:
        """The payments we did not expect that name this order, oldest first (/review)."""

    async def move_unexpected(self, payment_row_id: int, expected: str, target: str) -> bool:
        """Compare-and-set of its state; False when it was not in `expected`."""

    async def set_order_message(self, order_id: int, message_id: int) -> None:
        """Remember the chat message that shows the order (the latest one wins)."""

    async def set_merchant_message(self, order_id: int, message_id: int) -> None:
        """Remember the merchant chat's paid-order message, edited as the order moves on."""

    # saved cards, unique per (user_id, provider, card_id)
    async def save_card(
        self, user_id: int, provider: str, card_id: str, card_name: str
    ) -> SavedCard: ...

    async def saved_cards(self, user_id: int, provider: str | None = None) -> list[SavedCard]: ...

    async def forget_card(self, user_id: int, saved_card_id: int) -> bool:
        """Delete the user's own card; False when it is not theirs or not there."""

    # per-user preferences
    async def get_user_locale(self, user_id: int) -> str | None: ...

    async def set_user_locale(self, user_id: int, locale: str) -> None: ...

    # figures and exports
    async def figures(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Figures:
        """The window [since, until); open ends reach the first and the latest order."""

    async def paid_slots(self, since: datetime, until: datetime) -> list[tuple[datetime, Money]]:
        """What orders paid in [since, until) per quarter hour (its UTC start) and currency,
        oldest first: every time zone's days are whole quarter hours, so a chart of days in
        the merchant's zone is summed from these without reading every order."""

    def export_orders(
        self, since: datetime | None = None, *, batch: int = 500
    ) -> AsyncIterator[list[Order]]:
        """The orders created at or after `since`, oldest first, in batches of `batch` read
        one after another by id (keyset): an export of any size holds one batch at a time."""
