"""Refunds through the provider's API: checked by us first, a durable row written before the
provider is asked, and the outcome read back when the call is cut off."""

from __future__ import annotations

from bot.core.confirm import Confirming, stored_ref
from bot.core.context import RefundError
from bot.core.outbox import OutboxKind, message
from money import Money
from providers.base import (
    Capability,
    PaymentState,
    ProviderError,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
    RefundOutcome,
    RefundResult,
)
from storage.base import Order, OrderState

S = OrderState


class Refunding(Confirming):
    async def refund(
        self, order_id: int, amount: Money | None, *, actor: str, key: str | None = None
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
        ref = stored_ref(order)
        if Capability.REFUND not in provider.capabilities or ref is None:
            raise RefundError("manual_refund", f"{provider.name} has no refund API")
        left = order.left_to_refund
        amount = left if amount is None else amount
        if amount.currency != order.currency:
            raise RefundError("bad_amount", f"the order is in {order.currency}")
        if amount.amount <= 0:
            raise RefundError("bad_amount", "the amount must be above zero")
        if left < amount:
            raise RefundError("beyond_paid", f"only {left} is left to refund")
        if amount < left and Capability.PARTIAL_REFUND not in provider.capabilities:
            raise RefundError("no_partial", f"{provider.name} refunds only the whole amount")
        key = key or f"{order.id}:{order.refunded_so_far.amount}:{amount.amount}"
        refund, created = await self.storage.create_refund(order.id, amount, key, actor)
        if not created:
            raise RefundError("duplicate_refund", f"refund {refund.id} is already {refund.state}")
        pending = await self.storage.transition(
            order.id, order.state, S.REFUND_PENDING, actor=actor, detail=f"refund {amount}"
        )
        if pending is None:
            await self.storage.finish_refund(refund.id, "rejected", "RACE")
            raise RefundError("busy", "the order changed meanwhile; try again")
        try:
            result = await provider.refund(ref, amount, key)
        except ProviderUnavailable as exc:
            found = await self._refund_outcome_after_outage(order, amount, left)
            if found is None:  # cannot tell whether the money moved: a person must look
                await self._review(
                    pending, actor, f"refund of {amount} has an unknown outcome: {exc}"
                )
                raise RefundError(
                    "provider_error", f"{exc}; the order is left for review"
                ) from None
            result = found
        except ProviderRejected as exc:
            if isinstance(exc, ProviderMisconfigured):
                await self._misconfigured(order, exc)
            result = RefundResult(
                RefundOutcome.REJECTED, Money.zero(order.currency), None, exc.code, str(exc)
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
        target = S.REFUNDED if amount == left else S.PARTIALLY_REFUNDED
        notice = message(
            OutboxKind.REFUNDED, order.chat_id, {"amount": amount.amount}, tag=str(refund.id)
        )
        moved = await self.storage.transition(
            order.id,
            S.REFUND_PENDING,
            target,
            actor=actor,
            detail=f"refunded {amount}",
            outbox=[notice],
            refunded=order.refunded_so_far + amount,
        )
        self._on_outbox()
        return moved or order

    async def _refund_outcome_after_outage(
        self, order: Order, amount: Money, left: Money
    ) -> RefundResult | None:
        """The refund call failed in transit: ask the provider what is left on the payment.
        Only an explicit `remaining` (or a refunded state) tells; a provider that reports what
        was paid cannot say, and the order goes to review."""
        provider = self.providers.get(order.provider)
        ref = stored_ref(order)
        if ref is None:
            return None
        try:
            status = await provider.fetch_status(ref)
        except ProviderError:
            return None
        now_left = status.remaining
        if status.state is PaymentState.REFUNDED:
            now_left = Money.zero(order.currency)
        if now_left is None:
            return None
        if now_left == left - amount:
            return RefundResult(RefundOutcome.DONE, amount)
        if now_left == left:
            return RefundResult(
                RefundOutcome.REJECTED,
                Money.zero(order.currency),
                None,
                "UNAVAILABLE",
                "the provider did not answer; nothing was refunded",
            )
        return None
