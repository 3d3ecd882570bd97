"""What every part of the checkout service shares: its dependencies, the per-order lock, the
callback key, and the one way an order moves (a compare-and-set with its messages)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.core.outbox import OutboxKind, message
from providers.base import Capability, InChat, Provider, ProviderMisconfigured
from providers.registry import Registry
from storage.base import NewOutbox, Order, OrderState, Storage

log = logging.getLogger("bot.core")


def utc_now() -> datetime:
    return datetime.now(UTC)


class CheckoutError(Exception):
    """A checkout the customer cannot make; `reason` is a key the chat turns into text."""

    def __init__(
        self, reason: str, detail: str = "", *, refused: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.refused = refused  # "lines_refused": (product title, why) for each line


class RefundError(CheckoutError):
    """A refund we refuse before (or after) asking the provider."""


class ReceiptError(Exception):
    """No receipt document now: `later` when the provider may have one on another try."""

    def __init__(self, detail: str, *, later: bool) -> None:
        super().__init__(detail)
        self.later = later


@dataclass(frozen=True, slots=True)
class CheckSchedule:
    """Growing gaps between re-checks of an order awaiting payment."""

    first: timedelta = timedelta(seconds=15)
    longest: timedelta = timedelta(minutes=10)

    def after(self, attempts: int) -> timedelta:
        return min(self.first * (2 ** min(attempts, 20)), self.longest)


class CoreContext:
    """The state the service's parts (ordering, confirm, inbound, refunds) share."""

    def __init__(
        self,
        storage: Storage,
        providers: Registry,
        *,
        public_url: str,
        callback_secret: str,
        merchant_chat_id: int | None = None,
        admin_ids: Sequence[int] = (),
        schedule: CheckSchedule | None = None,
        inbox_keep: timedelta | None = None,
        clock: Callable[[], datetime] = utc_now,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        if not callback_secret:
            raise ValueError("the callback secret must not be empty")
        self.storage = storage
        self.providers = providers
        self.public_url = public_url.rstrip("/")
        self.merchant_chat_id = merchant_chat_id
        self.admin_ids = tuple(admin_ids)
        self.schedule = schedule or CheckSchedule()
        self.inbox_keep = inbox_keep  # how long after it arrived a processed event is kept
        self.clock = clock
        self._on_outbox = on_outbox
        self._callback_secret = callback_secret.encode()
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._told_misconfigured: set[tuple[str, str]] = set()

    def can(self, provider: str, capability: Capability) -> bool:
        """Whether this enabled provider has the capability (False for one no longer enabled)."""
        return (
            provider in self.providers and capability in self.providers.get(provider).capabilities
        )

    def display_name(self, provider: str) -> str:
        """What the chat calls a provider; the bare name for one that is no longer enabled."""
        if provider in self.providers:
            return self.providers.get(provider).display_name
        return provider.title()

    def in_chat(self) -> list[Provider]:
        """The enabled providers whose payments arrive in the chat (Stars)."""
        return [
            p
            for p in self.providers
            if Capability.IN_CHAT in p.capabilities and isinstance(p, InChat)
        ]

    # --- callback keys --------------------------------------------------------------------

    def callback_key(self, provider: str, order_id: int) -> str:
        """The per-order key in callback URLs: HMAC of the server secret over provider and
        order id. The customer never sees it (unlike the return token)."""
        mac = hmac.new(self._callback_secret, f"{provider}:{order_id}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def callback_key_valid(self, provider: str, order_id: int, key: str) -> bool:
        return hmac.compare_digest(key.encode(), self.callback_key(provider, order_id).encode())

    def provider_key(self, provider: str) -> str:
        """The key in a callback URL that is one per merchant (Pocket's pg/config): it proves
        the request came to the URL we gave the provider, never which order it is about."""
        mac = hmac.new(self._callback_secret, f"{provider}:*".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def provider_callback_url(self, provider: str) -> str:
        return f"{self.public_url}/callbacks/{provider}?k={self.provider_key(provider)}"

    # --- moving orders --------------------------------------------------------------------

    def _card(self) -> list[NewOutbox]:
        """The merchant chat's paid-order message brought up to date with the order (queued
        with every later change of its payment or fulfilment, wherever it was made)."""
        if self.merchant_chat_id is None:
            return []
        return [message(OutboxKind.MERCHANT_CARD, self.merchant_chat_id)]

    def _lock(self, order_id: int) -> asyncio.Lock:
        lock = self._locks.get(order_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[order_id] = lock
        return lock

    async def _move(
        self,
        order: Order,
        target: OrderState,
        actor: str,
        detail: str,
        messages: Sequence[NewOutbox],
        **amounts: object,
    ) -> Order:
        moved = await self.storage.transition(
            order.id,
            order.state,
            target,
            actor=actor,
            detail=detail[:500],
            outbox=messages,
            **amounts,  # type: ignore[arg-type]
        )
        if moved is None:  # someone else moved it first; they queued the messages
            return await self.storage.get_order(order.id) or order
        if messages:
            self._on_outbox()
        return moved

    async def _from_review(self, order: Order) -> bool:
        """Whether the order's refund in flight began in review (the audit says so): it was
        never accepted as paid, so nothing of it ships and it goes back to review if refused."""
        if order.state is not OrderState.REFUND_PENDING:
            return False
        for entry in reversed(await self.storage.audit_trail(order.id)):
            if entry.to_state is OrderState.REFUND_PENDING and (
                entry.from_state is not OrderState.REFUND_PENDING
            ):
                return entry.from_state is OrderState.NEEDS_REVIEW
        return False

    async def _review(
        self,
        order: Order,
        actor: str,
        reason: str,
        *,
        unexpected: int | None = None,
        keep_state: bool = False,
    ) -> Order:
        """Needs a person: the customer, the admins and the merchant chat are told. With
        `unexpected` (a payment we did not expect), the admins get a one-tap refund of it.
        With `keep_state` (an order whose money was taken), or for an order already in review,
        the state stays and the review is a note on the order."""
        log.warning("order %s needs review: %s", order.id, reason)
        admin_payload: dict[str, object] = {"reason": reason}
        if unexpected is not None:
            admin_payload["unexpected"] = unexpected
        messages = [message(OutboxKind.REVIEW, order.chat_id)]
        messages += [
            message(OutboxKind.ADMIN_REVIEW, admin, admin_payload) for admin in self.admin_ids
        ]
        if self.merchant_chat_id is not None:
            messages.append(
                message(OutboxKind.MERCHANT_REVIEW, self.merchant_chat_id, {"reason": reason})
            )
        messages += self._card()  # a paid order in review: its steps are off
        if keep_state or order.state is OrderState.NEEDS_REVIEW:
            noted = await self.storage.note(
                order.id, actor=actor, detail=f"review: {reason}"[:500], outbox=messages
            )
            self._on_outbox()
            return noted or order
        return await self._move(order, OrderState.NEEDS_REVIEW, actor, reason, messages)

    async def _misconfigured(self, order: Order | None, exc: ProviderMisconfigured) -> None:
        """Tell the admins once per provider and cause (per process), never the customer."""
        provider = exc.provider or (order.provider if order else "")
        cause = (provider, exc.code or str(exc.http_status or ""))
        log.error("provider %s is misconfigured: %s", cause[0], exc)
        if cause in self._told_misconfigured:
            return
        self._told_misconfigured.add(cause)
        said = {"error": str(exc)[:300], "provider": self.display_name(provider)}
        for admin in self.admin_ids:
            await self.storage.enqueue(
                order.id if order else None,
                message(OutboxKind.ADMIN_MISCONFIGURED, admin, said),
            )
        self._on_outbox()
