"""The one checkout service: create order -> checkout -> confirm -> notify.

Every path that may change what we believe about a payment - the customer's return, a provider
callback, the "Check payment" button, the reconcile sweep - ends in `confirm()`, which asks the
provider, compares amount and currency with the order and moves the order with a compare-and-set
transition that writes its notifications into the outbox in the same transaction. Callbacks and
returns only say *which* payment to look at; they are stored first so a crash loses nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from providers.base import (
    Ack,
    AmountNotRepresentable,
    BadCallback,
    Capability,
    CheckoutRequest,
    InboundRequest,
    Money,
    PaymentRef,
    PaymentState,
    PaymentStatus,
    Provider,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RefundOutcome,
    RefundResult,
)
from providers.registry import Registry, UnknownProvider
from storage.base import (
    DuplicatePayment,
    InboundEvent,
    NewOrder,
    NewOutbox,
    Order,
    OrderItem,
    OrderState,
    Storage,
)

log = logging.getLogger("bot.checkout")

S = OrderState
# States in which a provider's answer still matters: awaiting, or closed by us while the
# customer may still have paid on an open provider page (that becomes needs_review).
CONFIRMABLE = frozenset({S.AWAITING_PAYMENT, S.EXPIRED, S.CANCELLED})
EXPIRY_GRACE = timedelta(minutes=5)  # a payment made in the last second may still settle


def utc_now() -> datetime:
    return datetime.now(UTC)


class CheckoutError(Exception):
    """A checkout the customer cannot make; `reason` is a key the chat turns into text."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RefundError(CheckoutError):
    """A refund we refuse before (or after) asking the provider."""


@dataclass(frozen=True, slots=True)
class CartLine:
    product_id: str
    title: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True, slots=True)
class Confirmation:
    order: Order
    answered: bool  # False: the provider could not be reached; a later check will retry


@dataclass(frozen=True, slots=True)
class CheckSchedule:
    """Growing gaps between re-checks of an order awaiting payment."""

    first: timedelta = timedelta(seconds=15)
    longest: timedelta = timedelta(minutes=10)

    def after(self, attempts: int) -> timedelta:
        return min(self.first * (2 ** min(attempts, 20)), self.longest)


class CheckoutService:
    def __init__(
        self,
        storage: Storage,
        providers: Registry,
        *,
        public_url: str,
        merchant_chat_id: int | None = None,
        admin_ids: Sequence[int] = (),
        schedule: CheckSchedule | None = None,
        clock: Callable[[], datetime] = utc_now,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.storage = storage
        self.providers = providers
        self.public_url = public_url.rstrip("/")
        self.merchant_chat_id = merchant_chat_id
        self.admin_ids = tuple(admin_ids)
        self.schedule = schedule or CheckSchedule()
        self.clock = clock
        self._on_outbox = on_outbox
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    # --- placing orders -----------------------------------------------------------------

    def providers_for(self, currency: str, allowed: Sequence[str] = ()) -> list[Provider]:
        """Providers that take this currency (and that the products allow, if they say)."""
        found = self.providers.for_currency(currency)
        return [p for p in found if not allowed or p.name in allowed]

    async def place_order(
        self,
        *,
        user_id: int,
        chat_id: int,
        lines: Sequence[CartLine],
        provider_name: str,
        locale: str = "en",
        saved_card_id: str | None = None,
    ) -> Order:
        """Create the order and open the provider's checkout; the order then awaits payment.

        Refused before anything is stored when the cart is empty, mixes currencies, or the
        provider cannot take the amount.
        """
        if not lines:
            raise CheckoutError("empty_cart")
        currencies = {line.unit_price.currency for line in lines}
        if len(currencies) != 1:
            raise CheckoutError("mixed_currencies")
        try:
            provider = self.providers.get(provider_name)
        except UnknownProvider:
            raise CheckoutError("unknown_provider", provider_name) from None
        total = sum(
            (line.unit_price * line.quantity for line in lines[1:]),
            lines[0].unit_price * lines[0].quantity,
        )
        try:
            provider.check_amount(total)
        except AmountNotRepresentable as exc:
            raise CheckoutError("amount_not_accepted", str(exc)) from None

        token = secrets.token_urlsafe(24)
        description = ", ".join(f"{line.title} x{line.quantity}" for line in lines)[:250]
        order = await self.storage.create_order(
            NewOrder(
                user_id=user_id,
                chat_id=chat_id,
                provider=provider.name,
                amount=total.amount,
                currency=total.currency,
                token=token,
                items=[
                    OrderItem(line.product_id, line.title, line.quantity, line.unit_price.amount)
                    for line in lines
                ],
                locale=locale,
                description=description,
            )
        )
        return await self._open_checkout(order, provider, saved_card_id)

    async def _open_checkout(
        self, order: Order, provider: Provider, saved_card_id: str | None
    ) -> Order:
        request = CheckoutRequest(
            order_id=order.id,
            amount=Money(order.amount, order.currency),
            description=order.description or f"Order {order.id}",
            return_url=f"{self.public_url}/return/{provider.name}/{order.token}",
            callback_url=f"{self.public_url}/callbacks/{provider.name}?t={order.token}",
            token=order.token,
            locale=order.locale,
            customer_ref=f"tg{order.user_id}",
            saved_card_id=saved_card_id,
        )
        try:
            checkout = await provider.create_checkout(request)
        except ProviderError as exc:
            log.warning("checkout for order %s failed: %s", order.id, exc)
            await self.storage.transition(
                order.id, S.CREATED, S.FAILED, actor="checkout", detail=str(exc)
            )
            reason = (
                "provider_unavailable"
                if isinstance(exc, ProviderUnavailable)
                else "provider_rejected"
            )
            raise CheckoutError(reason, str(exc)) from None
        now = self.clock()
        return await self.storage.set_checkout(
            order.id,
            pay_url=checkout.pay_url,
            provider_payment_id=checkout.provider_payment_id,
            expires_at=checkout.expires_at,
            next_check_at=now + self.schedule.first,
        )

    async def cancel(self, order_id: int, user_id: int) -> Order | None:
        """The customer gives up on an unpaid order. None when it is not theirs or not payable."""
        order = await self.storage.get_order(order_id)
        if order is None or order.user_id != user_id:
            return None
        return await self.storage.transition(
            order.id, [S.CREATED, S.AWAITING_PAYMENT], S.CANCELLED, actor=f"user:{user_id}"
        )

    # --- inbound: returns and callbacks -------------------------------------------------

    async def handle_return(
        self, provider_name: str, token: str, request: InboundRequest
    ) -> Order | None:
        """The customer's browser is back. None for an unknown token (the page answers 404)."""
        order = await self.storage.get_order_by_token(token)
        if order is None or order.provider != provider_name or provider_name not in self.providers:
            return None
        provider = self.providers.get(provider_name)
        ref = await provider.parse_return(request)  # BadCallback: the page answers 400
        event_id = await self._store_event("return", provider, order, ref, request)
        confirmation = await self.confirm(order.id, actor="return", ref=ref)
        if confirmation.answered and event_id is not None:
            await self.storage.mark_inbound_processed(event_id)
        return confirmation.order

    async def accept_callback(
        self, provider_name: str, request: InboundRequest
    ) -> tuple[Ack, Callable[[], Awaitable[None]] | None]:
        """Authenticate, identify and store a provider callback; answer only after it is stored.

        Returns the answer for the provider and the follow-up (confirm) to run off the request
        path, or None when there is nothing new to do.
        """
        try:
            provider = self.providers.get(provider_name)
        except UnknownProvider:
            raise BadCallback("unknown provider", provider=provider_name, http_status=404) from None
        ref = await provider.parse_callback(request)
        order = None
        token = request.query.get("t")
        if token:
            order = await self.storage.get_order_by_token(token)
        if order is None and ref.provider_payment_id:
            order = await self.storage.get_order_by_payment(provider.name, ref.provider_payment_id)
        if order is None or order.provider != provider.name:
            raise BadCallback("no such order", provider=provider.name, http_status=404)
        event_id = await self._store_event("callback", provider, order, ref, request)
        if event_id is None:
            return provider.ack(True), None

        async def follow_up() -> None:
            try:
                confirmation = await self.confirm(order.id, actor="callback", ref=ref)
            except Exception:  # runs detached: log it here, the stored event is replayed later
                log.exception("confirming order %s after a callback failed", order.id)
                return
            if confirmation.answered:
                await self.storage.mark_inbound_processed(event_id)

        return provider.ack(True), follow_up

    async def _store_event(
        self, kind: str, provider: Provider, order: Order, ref: PaymentRef, request: InboundRequest
    ) -> int | None:
        key = ref.event_key or f"{kind}:{ref.provider_payment_id or order.token}"
        return await self.storage.record_inbound(
            provider.name, key, order.id, _serialize(kind, request)
        )

    async def replay_inbound(self, limit: int = 100, now: datetime | None = None) -> int:
        """Confirm stored returns and callbacks that were not processed (crash, outage)."""
        now = now or self.clock()
        done = 0
        # an order backing off after a failed check waits for its next check, not the next sweep
        for event in await self.storage.unprocessed_inbound(limit, due_at=now):
            if await self._replay(event, now):
                await self.storage.mark_inbound_processed(event.id)
                done += 1
        return done

    async def _replay(self, event: InboundEvent, now: datetime) -> bool:
        if event.order_id is None or event.provider not in self.providers:
            return True
        provider = self.providers.get(event.provider)
        try:
            kind, request = _deserialize(event.body)
            parse = provider.parse_return if kind == "return" else provider.parse_callback
            ref = await parse(request)
        except (ValueError, KeyError, BadCallback) as exc:
            log.warning("dropping stored event %s: %s", event.id, exc)
            return True
        confirmation = await self.confirm(event.order_id, actor=f"replay:{kind}", ref=ref, now=now)
        return confirmation.answered

    # --- confirmation -------------------------------------------------------------------

    def _lock(self, order_id: int) -> asyncio.Lock:
        lock = self._locks.get(order_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[order_id] = lock
        return lock

    async def confirm(
        self,
        order_id: int,
        *,
        actor: str,
        ref: PaymentRef | None = None,
        now: datetime | None = None,
    ) -> Confirmation:
        """Ask the provider about this order and apply the answer. Safe to call any number of
        times from any path: concurrent calls for one order run one at a time, and a settled
        order is not asked about again."""
        async with self._lock(order_id):
            order = await self.storage.get_order(order_id)
            if order is None:
                raise KeyError(order_id)
            try:
                return await self._confirm(order, actor, ref, now or self.clock())
            except ProviderUnavailable as exc:
                log.warning("order %s: provider unavailable (%s), will retry", order.id, exc)
                await self._schedule_retry(order, now or self.clock())
                return Confirmation(order, answered=False)

    async def _confirm(
        self, order: Order, actor: str, ref: PaymentRef | None, now: datetime
    ) -> Confirmation:
        if order.state not in CONFIRMABLE:
            return Confirmation(order, answered=True)
        provider = self.providers.get(order.provider)
        claimed = ref.provider_payment_id if ref else None

        if claimed and claimed != order.provider_payment_id:
            status = await self._fetch(provider, order, claimed)
            if status is None:  # the provider does not know it: a forged or stale reference
                return Confirmation(order, answered=True)
            if order.provider_payment_id is None:
                try:
                    order = await self.storage.attach_payment_id(order.id, claimed)
                except DuplicatePayment:
                    log.warning("order %s: payment id belongs to another order", order.id)
                    return Confirmation(order, answered=True)
                return Confirmation(await self._apply(order, status, actor, now), answered=True)
            if status.state is PaymentState.PAID:
                reason = f"a second payment {claimed} for an order already paying with another id"
                return Confirmation(await self._review(order, actor, reason), answered=True)

        if order.provider_payment_id is None:  # nothing to ask about yet (Redoya before return)
            if order.state is S.AWAITING_PAYMENT:
                await self._expire_or_wait(order, now, actor, "no payment started")
            return Confirmation(order, answered=True)
        status = await self._fetch(provider, order, order.provider_payment_id)
        if status is None:
            if order.state is S.AWAITING_PAYMENT:
                await self._expire_or_wait(order, now, actor, "provider refused the query")
            return Confirmation(order, answered=True)
        return Confirmation(await self._apply(order, status, actor, now), answered=True)

    async def _fetch(
        self, provider: Provider, order: Order, payment_id: str
    ) -> PaymentStatus | None:
        try:
            return await provider.fetch_status(
                PaymentRef(payment_id), Money(order.amount, order.currency)
            )
        except ProviderRejected as exc:
            log.warning("order %s: provider refused the status query: %s", order.id, exc)
            return None

    async def _apply(self, order: Order, status: PaymentStatus, actor: str, now: datetime) -> Order:
        detail = " ".join(p for p in (status.provider_status, status.detail) if p)
        expected = Money(order.amount, order.currency)
        state = status.state
        if state is PaymentState.PAID:
            if status.amount != expected:
                said = str(status.amount) if status.amount else "no amount"
                return await self._review(
                    order, actor, f"amount mismatch: provider says {said}, order is {expected}"
                )
            if order.state is not S.AWAITING_PAYMENT:
                return await self._review(order, actor, f"paid after the order was {order.state}")
            return await self._move(
                order,
                S.PAID,
                actor,
                detail or "paid",
                self._paid_messages(order),
                paid_amount=status.amount.amount,
            )
        if order.state is not S.AWAITING_PAYMENT:
            return order  # closed by us and not paid: nothing to do
        if state in (PaymentState.FAILED, PaymentState.CANCELLED):
            return await self._move(
                order, S.FAILED, actor, detail or state.value, [self._customer(order, "failed")]
            )
        if state is PaymentState.EXPIRED:
            return await self._move(
                order, S.EXPIRED, actor, detail or "expired", [self._customer(order, "expired")]
            )
        if state in (PaymentState.NEEDS_REVIEW, PaymentState.REFUNDED):
            return await self._review(order, actor, f"provider says {state.value}: {detail}")
        await self._expire_or_wait(order, now, actor, detail or "pending")
        return order

    async def _expire_or_wait(self, order: Order, now: datetime, actor: str, detail: str) -> None:
        if order.expires_at is not None and now >= order.expires_at + EXPIRY_GRACE:
            await self._move(
                order,
                S.EXPIRED,
                actor,
                f"{detail}; past the payment deadline",
                [self._customer(order, "expired")],
            )
            return
        delay = self.schedule.after(order.check_attempts)
        await self.storage.schedule_check(order.id, now + delay, order.check_attempts + 1)

    async def _schedule_retry(self, order: Order, now: datetime) -> None:
        if order.state is S.AWAITING_PAYMENT:
            delay = self.schedule.after(order.check_attempts)
            await self.storage.schedule_check(order.id, now + delay, order.check_attempts + 1)

    async def _review(self, order: Order, actor: str, reason: str) -> Order:
        log.warning("order %s needs review: %s", order.id, reason)
        messages = [self._customer(order, "review")]
        messages += [NewOutbox(f"admin_review:{a}", a, {"reason": reason}) for a in self.admin_ids]
        if self.merchant_chat_id is not None:
            messages.append(NewOutbox("merchant_review", self.merchant_chat_id, {"reason": reason}))
        return await self._move(order, S.NEEDS_REVIEW, actor, reason, messages)

    async def _move(
        self,
        order: Order,
        target: OrderState,
        actor: str,
        detail: str,
        messages: Sequence[NewOutbox],
        **amounts: int,
    ) -> Order:
        moved = await self.storage.transition(
            order.id,
            order.state,
            target,
            actor=actor,
            detail=detail[:500],
            outbox=messages,
            **amounts,
        )
        if moved is None:  # someone else moved it first; they queued the messages
            return await self.storage.get_order(order.id) or order
        if messages:
            self._on_outbox()
        return moved

    def _customer(self, order: Order, kind: str) -> NewOutbox:
        return NewOutbox(kind, order.chat_id, {})

    def _paid_messages(self, order: Order) -> list[NewOutbox]:
        messages = [self._customer(order, "paid")]
        if self.merchant_chat_id is not None:
            messages.append(NewOutbox("merchant_paid", self.merchant_chat_id, {}))
        return messages

    # --- refunds ------------------------------------------------------------------------

    async def _refund_outcome_after_outage(
        self, order: Order, amount: int, left: int
    ) -> RefundResult | None:
        """The refund call failed in transit: ask the provider how much is left on the payment."""
        provider = self.providers.get(order.provider)
        try:
            status = await provider.fetch_status(
                PaymentRef(order.provider_payment_id), Money(order.amount, order.currency)
            )
        except ProviderError:
            return None
        now_left = status.amount.amount if status.amount else None
        if status.state is PaymentState.REFUNDED:
            now_left = 0
        if now_left == left - amount:
            return RefundResult(RefundOutcome.DONE, Money(amount, order.currency))
        if now_left == left:
            return RefundResult(
                RefundOutcome.REJECTED,
                Money(0, order.currency),
                None,
                "UNAVAILABLE",
                "the provider did not answer; nothing was refunded",
            )
        return None

    async def refund(
        self, order_id: int, amount: int | None, *, actor: str, key: str | None = None
    ) -> Order:
        """Refund all or part of a paid order through the provider's API.

        Refused by us, before the provider is asked, when the order is not paid, the provider
        cannot refund (or not partially), or the amount is more than what is left.
        """
        order = await self.storage.get_order(order_id)
        if order is None:
            raise RefundError("no_order")
        if order.state not in (S.PAID, S.PARTIALLY_REFUNDED):
            raise RefundError("not_refundable", f"the order is {order.state}")
        provider = self.providers.get(order.provider)
        if Capability.REFUND not in provider.capabilities or not order.provider_payment_id:
            raise RefundError("manual_refund", f"{provider.name} has no refund API")
        left = order.left_to_refund
        amount = left if amount is None else amount
        if amount <= 0:
            raise RefundError("bad_amount", "the amount must be above zero")
        if amount > left:
            raise RefundError(
                "beyond_paid", f"only {Money(left, order.currency)} is left to refund"
            )
        if amount < left and Capability.PARTIAL_REFUND not in provider.capabilities:
            raise RefundError("no_partial", f"{provider.name} refunds only the whole amount")
        key = key or f"{order.id}:{order.refunded_amount}:{amount}"
        refund, created = await self.storage.create_refund(
            order.id, amount, order.currency, key, actor
        )
        if not created:
            raise RefundError("duplicate_refund", f"refund {refund.id} is already {refund.state}")
        pending = await self.storage.transition(
            order.id, order.state, S.REFUND_PENDING, actor=actor, detail=f"refund {amount}"
        )
        if pending is None:
            await self.storage.finish_refund(refund.id, "rejected", "RACE")
            raise RefundError("busy", "the order changed meanwhile; try again")
        try:
            result = await provider.refund(
                order.provider_payment_id, Money(amount, order.currency), key
            )
        except ProviderUnavailable as exc:
            result = await self._refund_outcome_after_outage(order, amount, left)
            if result is None:  # cannot tell whether the money moved: a person must look
                await self._review(
                    pending, actor, f"refund of {amount} has an unknown outcome: {exc}"
                )
                raise RefundError(
                    "provider_error", f"{exc}; the order is left for review"
                ) from None
        except ProviderRejected as exc:
            result = RefundResult(
                RefundOutcome.REJECTED, Money(0, order.currency), None, exc.code, str(exc)
            )
        if result.outcome is not RefundOutcome.DONE:
            await self.storage.finish_refund(refund.id, "rejected", result.provider_code)
            await self.storage.transition(
                order.id,
                S.REFUND_PENDING,
                order.state,
                actor=actor,
                detail=f"refund refused: {result.provider_code} {result.detail}",
            )
            raise RefundError("provider_refused", result.detail or result.provider_code)
        await self.storage.finish_refund(refund.id, "done", result.provider_code)
        total = order.refunded_amount + amount
        target = S.REFUNDED if amount >= left else S.PARTIALLY_REFUNDED
        moved = await self.storage.transition(
            order.id,
            S.REFUND_PENDING,
            target,
            actor=actor,
            detail=f"refunded {Money(amount, order.currency)}",
            outbox=[NewOutbox(f"refunded:{refund.id}", order.chat_id, {"amount": amount})],
            refunded_amount=total,
        )
        self._on_outbox()
        return moved or order


def _serialize(kind: str, request: InboundRequest) -> bytes:
    return json.dumps(
        {
            "kind": kind,
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "body": base64.b64encode(request.body).decode(),
        }
    ).encode()


def _deserialize(raw: bytes) -> tuple[str, InboundRequest]:
    data = json.loads(raw)
    return data["kind"], InboundRequest(
        method=data["method"],
        path=data["path"],
        query=data["query"],
        headers=data["headers"],
        body=base64.b64decode(data["body"]),
    )
