"""The one confirm: every path that may change what we believe about a payment ends here.

1. the truth: `fetch_status` from the provider, or for STATUS_IN_CALLBACK providers the
   authenticated status stored with the event;
2. amount and currency compared with the order (or with what the bank will hold, where the
   adapter declares it): a mismatch goes to needs_review, never paid;
3. a compare-and-set transition that writes its messages in the same transaction, so only the
   caller whose transition succeeded notifies.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from bot.core.context import CoreContext
from bot.core.outbox import OutboxKind, message
from bot.core.serial import STORED_ERRORS, parse_stored
from money import Money
from providers.base import (
    BadCallback,
    Capability,
    Inbound,
    PaymentRef,
    PaymentState,
    PaymentStatus,
    Provider,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
)
from storage.base import DuplicatePayment, NewOutbox, Order, OrderHead, OrderState

log = logging.getLogger("bot.core.confirm")

S = OrderState
SWEEP = "sweep"  # the actor of the background check, whose schedule backs off
# States in which a provider's answer still matters: awaiting, or closed while the customer may
# still have paid on an open provider page (a retry after a declined card, a cancel in the chat):
# a payment then is one we did not expect, and goes to review.
CONFIRMABLE = frozenset({S.AWAITING_PAYMENT, S.EXPIRED, S.CANCELLED, S.FAILED})
# States of an order whose money was taken: another payment for it is noted, the state kept.
PAID_FAMILY = frozenset(
    {S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED, S.REFUND_PENDING, S.NEEDS_REVIEW}
)
# Providers whose inbound status is the truth: an authenticated callback body (KTWidget), a
# payment Telegram reports in the chat (Stars; the Bot API authenticates it).
INBOUND_TRUTH = frozenset({Capability.STATUS_IN_CALLBACK, Capability.IN_CHAT})


@dataclass(frozen=True, slots=True)
class Confirmation:
    order: Order
    answered: bool  # False: the provider could not be reached; a later check will retry


def stored_ref(order: Order | OrderHead) -> PaymentRef | None:
    if order.provider_payment_id is None:
        return None
    return PaymentRef(order.provider_payment_id, order.payment_data)


def _carried(provider: Provider, inbound: Inbound | None) -> PaymentStatus | None:
    """The status an inbound request carries, where the request itself is the truth."""
    if inbound is None or not provider.capabilities & INBOUND_TRUTH:
        return None
    return inbound.status


def paid_of(status: PaymentStatus, order: Order) -> Money | None:
    """What the customer paid: said outright, or what is left plus what we refunded (a
    provider like Payture reports only what is left on the payment)."""
    if status.paid is not None:
        return status.paid
    if status.remaining is not None and status.remaining.currency == order.currency:
        return status.remaining + order.refunded_so_far
    return status.remaining


class Confirming(CoreContext):
    async def confirm(
        self,
        order_id: int,
        *,
        actor: str,
        inbound: Inbound | None = None,
        now: datetime | None = None,
    ) -> Confirmation:
        """Find out the truth about this order and apply it. Safe to call any number of times
        from any path: calls for one order run one at a time, and a settled order is not
        asked about again."""
        now = now or self.clock()
        async with self._lock(order_id):
            order = await self.storage.get_order(order_id)
            if order is None:
                raise KeyError(order_id)
            try:
                return await self._confirm(order, actor, inbound, now)
            except ProviderUnavailable as exc:
                log.warning("order %s: provider unavailable (%s), will retry", order.id, exc)
            except ProviderMisconfigured as exc:
                await self._misconfigured(order, exc)
            await self._schedule_retry(order, now)
            return Confirmation(order, answered=False)

    async def _confirm(
        self, order: Order, actor: str, inbound: Inbound | None, now: datetime
    ) -> Confirmation:
        provider = self.providers.get(order.provider)
        if order.state not in CONFIRMABLE:
            return await self._settled(order, provider, inbound, actor)
        if inbound is None and order.provider_payment_id is None:
            # the button or the sweep: a return stored while the provider was down may name
            # the payment (Redoya assigns its id only on the return)
            inbound = await self._stored_claim(order, provider)
        claimed = inbound.ref if inbound else None
        if claimed is not None and claimed.payment_id != order.provider_payment_id:
            return await self._claimed(order, provider, claimed, inbound, actor, now)
        status = await self._truth(order, provider, inbound)
        if status is None:
            if order.state is S.AWAITING_PAYMENT:
                await self._expire_or_wait(order, provider, now, actor, "no answer to apply")
            return Confirmation(order, answered=True)
        return Confirmation(await self._apply(order, status, actor, now), answered=True)

    async def _claimed(
        self,
        order: Order,
        provider: Provider,
        claimed: PaymentRef,
        inbound: Inbound | None,
        actor: str,
        now: datetime,
    ) -> Confirmation:
        """A return or callback names a payment the order does not have yet (Redoya assigns
        its id on the return) or another one than it has."""
        if await self._owned_elsewhere(order, provider, claimed):
            return Confirmation(order, answered=True)
        status = await self._status_of(provider, claimed, inbound)
        if status is None:  # the provider does not know it: a forged or stale reference
            return Confirmation(order, answered=True)
        if order.provider_payment_id is None:
            try:
                order = await self.storage.attach_payment(
                    order.id, claimed.payment_id, claimed.data
                )
            except DuplicatePayment:
                # another caller (a replica, a second tab's return) attached its payment first
                order = await self.storage.get_order(order.id) or order
                if await self._owned_elsewhere(order, provider, claimed):
                    return Confirmation(order, answered=True)
            else:
                return Confirmation(await self._apply(order, status, actor, now), answered=True)
        if status.state is PaymentState.PAID:
            why = "a second payment for an order already paying with another id"
            order = await self._unexpected(order, provider, claimed, status, actor, why)
        return Confirmation(order, answered=True)

    @staticmethod
    def nothing_to_confirm(order: Order | OrderHead, inbound: Inbound | None) -> bool:
        """An order past awaiting payment, and nothing naming another payment than its own:
        there is nothing to ask anyone (a late or repeated notification)."""
        claimed = inbound.ref if inbound else None
        return order.state not in CONFIRMABLE and (
            claimed is None or claimed.payment_id == order.provider_payment_id
        )

    async def _settled(
        self, order: Order, provider: Provider, inbound: Inbound | None, actor: str
    ) -> Confirmation:
        """An order past awaiting payment is not asked about again, unless a return or a
        callback names another payment: paid, that is a payment we did not expect (the
        customer paid the same Pay link twice), never dropped."""
        if self.nothing_to_confirm(order, inbound):
            return Confirmation(order, answered=True)
        claimed = inbound.ref if inbound else None
        assert claimed is not None
        if await self._owned_elsewhere(order, provider, claimed):
            return Confirmation(order, answered=True)
        status = await self._status_of(provider, claimed, inbound)
        if status is not None and status.state is PaymentState.PAID:
            why = f"a second payment for an order already {order.state}"
            order = await self._unexpected(order, provider, claimed, status, actor, why)
        return Confirmation(order, answered=True)

    async def _unexpected(
        self,
        order: Order,
        provider: Provider,
        ref: PaymentRef,
        status: PaymentStatus,
        actor: str,
        why: str,
        *,
        keep_state: bool = False,
    ) -> Order:
        """Keep the payment (once per provider payment id) and raise a review: the admins are
        told the amount and the payment id and offered a one-tap refund. An order whose money
        was taken keeps its state (the review is a note on it), as does one `keep_state` says
        (someone else paid it: its customer may still pay); a closed one goes to review."""
        paid = status.paid or status.remaining  # this payment's, not the order's refunds
        row, created = await self.storage.record_unexpected(
            order.id, provider.name, ref.payment_id, ref.data, paid, order.currency, why
        )
        if not created:  # the same payment again (a repeated return or callback): told already
            return order
        said = str(paid) if paid else "an amount the provider did not say"
        reason = f"{why}: {said} as {provider.name} payment {ref.payment_id}"
        return await self._review(
            order,
            actor,
            reason,
            unexpected=row.id,
            keep_state=keep_state or order.state in PAID_FAMILY,
        )

    async def foreign_payment(self, order_id: int, inbound: Inbound, *, actor: str) -> Order:
        """A payment of this order by someone other than its customer (a forwarded Stars
        invoice): one we did not expect, whatever the order's state; the refund goes to the
        payer."""
        async with self._lock(order_id):
            order = await self.storage.get_order(order_id)
            if order is None or inbound.ref is None or inbound.status is None:
                raise KeyError(order_id)
            provider = self.providers.get(order.provider)
            why = "paid by another Telegram user than the customer"
            return await self._unexpected(
                order, provider, inbound.ref, inbound.status, actor, why, keep_state=True
            )

    async def _owned_elsewhere(self, order: Order, provider: Provider, ref: PaymentRef) -> bool:
        """A payment id the customer named that is another order's (a return URL edited to
        point at a payment of theirs): never this order's business."""
        owner = await self.storage.get_order_by_payment(provider.name, ref.payment_id)
        if owner is not None and owner.id != order.id:
            log.warning("order %s: payment %s is order %s's", order.id, ref.payment_id, owner.id)
            return True
        return False

    async def _truth(
        self, order: Order, provider: Provider, inbound: Inbound | None
    ) -> PaymentStatus | None:
        carried = _carried(provider, inbound)
        if carried is not None:
            return carried
        if Capability.STATUS_IN_CALLBACK in provider.capabilities:
            return await self._stored_status(order, provider)
        ref = stored_ref(order)
        if ref is None:  # nothing to ask about yet (Redoya before the return)
            return None
        return await self._status_of(provider, ref, None)

    async def _status_of(
        self, provider: Provider, ref: PaymentRef, inbound: Inbound | None
    ) -> PaymentStatus | None:
        """The truth about one payment; None when the provider refuses to say."""
        carried = _carried(provider, inbound)
        if carried is not None or Capability.STATUS_IN_CALLBACK in provider.capabilities:
            return carried
        try:
            return await provider.fetch_status(ref)
        except ProviderMisconfigured:
            raise
        except ProviderRejected as exc:
            log.warning("%s refused the status query: %s", provider.name, exc)
            return None

    async def _stored(
        self, order: Order, provider: Provider, kinds: frozenset[str]
    ) -> AsyncIterator[Inbound]:
        """The order's stored events of these kinds, newest first, as the adapter reads them
        again; a row it cannot read is passed over."""
        for event in reversed(await self.storage.inbound_for_order(order.id)):
            try:
                kind, found = await parse_stored(provider, event.body)
            except (*STORED_ERRORS, BadCallback):
                continue
            if kind in kinds:
                yield found

    async def _stored_claim(self, order: Order, provider: Provider) -> Inbound | None:
        """The newest stored return or callback of this order that names a payment."""
        async for found in self._stored(order, provider, frozenset({"return", "callback"})):
            if found.ref is not None:
                return found
        return None

    async def _stored_status(self, order: Order, provider: Provider) -> PaymentStatus | None:
        """The newest authenticated status stored for this order (KTWidget: no status API,
        so the callback we stored is all the truth there is)."""
        async for found in self._stored(order, provider, frozenset({"callback"})):
            if found.status is not None:
                return found.status
        return None

    async def _apply(self, order: Order, status: PaymentStatus, actor: str, now: datetime) -> Order:
        provider = self.providers.get(order.provider)
        ref = status.ref or stored_ref(order)
        if order.state in PAID_FAMILY and ref and ref.payment_id == order.provider_payment_id:
            return order  # the order's own payment, applied by another caller (a replica) first
        if status.ref is not None and status.ref != stored_ref(order):
            try:
                order = await self.storage.update_payment(
                    order.id, status.ref.payment_id, status.ref.data
                )
            except DuplicatePayment:
                why = f"the provider renamed it to {status.ref.payment_id}, another order's"
                return await self._review(order, actor, why)
        detail = " ".join(p for p in (status.provider_status, status.detail) if p)
        state = status.state
        if state is PaymentState.PAID:
            paid = paid_of(status, order)
            held = provider.amount_format.held(order.total)
            if paid != order.total and paid != held:
                said = str(paid) if paid else "no amount"
                return await self._review(
                    order, actor, f"amount mismatch: provider says {said}, order is {order.total}"
                )
            if paid != order.total:
                detail = f"{detail}; the bank holds {held}, {order.total - held} less".strip("; ")
            if order.state is not S.AWAITING_PAYMENT:
                ref = status.ref or stored_ref(order)
                why = f"paid after the order was {order.state}"
                if ref is None:
                    return await self._review(order, actor, why)
                return await self._unexpected(order, provider, ref, status, actor, why)
            moved = await self._move(
                order, S.PAID, actor, detail or "paid", self._paid_messages(order), paid=paid
            )
            if moved.state not in PAID_FAMILY:  # a cancel or an expiry won the race: not dropped
                return await self._apply(moved, status, actor, now)
            return moved
        if order.state is not S.AWAITING_PAYMENT:
            return order  # closed by us and not paid: nothing to do
        if state in (PaymentState.FAILED, PaymentState.CANCELLED):
            return await self._move(
                order, S.FAILED, actor, detail or state.value, [self._to_customer(order, "failed")]
            )
        if state is PaymentState.EXPIRED:
            return await self._move(
                order, S.EXPIRED, actor, detail or "expired", [self._to_customer(order, "expired")]
            )
        if state in (PaymentState.NEEDS_REVIEW, PaymentState.REFUNDED):
            return await self._review(order, actor, f"provider says {state.value}: {detail}")
        await self._expire_or_wait(order, provider, now, actor, detail or "pending")
        return order

    async def _expire_or_wait(
        self, order: Order, provider: Provider, now: datetime, actor: str, detail: str
    ) -> None:
        if order.expires_at is not None and now >= order.expires_at + provider.confirm_window:
            await self._move(
                order,
                S.EXPIRED,
                actor,
                f"{detail}; past the payment deadline",
                [self._to_customer(order, "expired")],
            )
            return
        if actor != SWEEP:
            # a callback, a return or a button found it still pending: the sweep's schedule
            # stands, so a burst of them (a provider's retries, a forger) never postpones it
            return
        delay = self.schedule.after(order.check_attempts)
        await self.storage.schedule_check(order.id, now + delay, order.check_attempts + 1)

    async def _schedule_retry(self, order: Order, now: datetime) -> None:
        if order.state is S.AWAITING_PAYMENT:
            delay = self.schedule.after(order.check_attempts)
            await self.storage.schedule_check(order.id, now + delay, order.check_attempts + 1)

    def _to_customer(self, order: Order, kind: str) -> NewOutbox:
        return message(OutboxKind(kind), order.chat_id)

    def _paid_messages(self, order: Order) -> list[NewOutbox]:
        messages = [message(OutboxKind.PAID, order.chat_id)]
        provider = self.providers.get(order.provider)
        if Capability.RECEIPT in provider.capabilities:  # its own row: a slow receipt never
            messages.append(message(OutboxKind.RECEIPT, order.chat_id))  # holds up the paid one
        if self.merchant_chat_id is not None:
            messages.append(message(OutboxKind.MERCHANT_PAID, self.merchant_chat_id))
        return messages
