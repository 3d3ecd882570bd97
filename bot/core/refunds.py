"""Refunds, durable like the outbox: a refund row is written before the provider is asked,
and an answer cut off by a crash or an outage is finished by the sweep, which asks the provider
what is left on the payment instead of asking for the money again. Money never moves twice.

Each admin request has a key of its own (a second press of the same button is the same
request); a rejected or raced request may be followed by a new one. Providers without a refund
API get the manual flow: the admin confirms the refund was made in the provider's back office,
and the order and the customer are updated as for an API refund.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.confirm import SWEEP, Confirming, paid_of, stored_ref
from bot.core.context import RefundError
from bot.core.outbox import OutboxKind, message
from money import Money
from providers.base import (
    Capability,
    ChatPayment,
    PaymentRef,
    PaymentState,
    Provider,
    ProviderError,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
    RefundOutcome,
    RefundResult,
)
from storage.base import Order, OrderState, Refund, RefundEnd, UnexpectedPayment

log = logging.getLogger("bot.core.refunds")

S = OrderState
IN_FLIGHT = timedelta(minutes=2)  # a refund untouched this long was cut off: the sweep checks it
MANUAL = "MANUAL"  # provider_code of a refund made in the provider's back office
ALREADY = "the provider had refunded it already"  # the audit's word for RefundResult.already
FROM_REVIEW = " (from review)"  # the audit's word for a refund that began in needs_review


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """What a refund would do, checked, for the admin to confirm."""

    order: Order
    amount: Money
    left: Money
    by_api: bool  # False: the admin refunds in the provider's back office and confirms it


class Refunding(Confirming):
    async def plan_refund(self, order_id: int, amount: Money | None) -> RefundPlan:
        """The checks of a refund, before anything is written: RefundError when we would
        refuse it."""
        order = await self.storage.get_order(order_id)
        if order is None:
            raise RefundError("no_order")
        by_api = self.refunds_by_api(order)
        order, amount, left = await self._checked(order_id, amount, None, manual=not by_api)
        return RefundPlan(order, amount, left, by_api)

    def refunds_by_api(self, order: Order) -> bool:
        """True when the provider refunds through its API; False: the manual flow."""
        return self.can(order.provider, Capability.REFUND) and stored_ref(order) is not None

    async def refund(
        self,
        order_id: int,
        amount: Money | None,
        *,
        actor: str,
        request: str,
        expected_left: Money | None = None,
    ) -> Order:
        """Refund all or part of a paid order through the provider's API, once per `request`
        (the admin's confirmation: pressing it again is the same request).

        Refused by us, before the provider is asked, when the order is not paid, the provider
        cannot refund (or not partially), the amount is more than what is left, another
        refund of the order is under way, or (`stale`) what is left is no longer the
        `expected_left` the admin's question showed.
        """
        order, amount, left = await self._checked(order_id, amount, expected_left, manual=False)
        refund, pending = await self._begin(order, amount, actor, request)
        return await self._ask_provider(pending, refund, left)

    async def record_manual_refund(
        self,
        order_id: int,
        amount: Money | None,
        *,
        actor: str,
        request: str,
        expected_left: Money | None = None,
    ) -> Order:
        """The admin refunded in the provider's back office (no refund API): the order and the
        customer are updated as for an API refund, once per `request` (refused as `refund`)."""
        order, amount, left = await self._checked(order_id, amount, expected_left, manual=True)
        refund, pending = await self._begin(order, amount, actor, request)
        return await self._finish(pending, refund, left, MANUAL, "refunded in the back office")

    async def refunded_in_chat(self, provider_name: str, payment: ChatPayment) -> Order | None:
        """Telegram's `refunded_payment`: the charge is back with the payer. Our own refund
        (pending or done) changes nothing here: its answer or the sweep ends it. A refund we
        did not make (Telegram's support, another tool) is recorded once, and the customer and
        the merchant are told. None when it names no order's payment."""
        kept = await self.storage.find_unexpected(provider_name, payment.charge_id)
        if kept is not None:  # a payment we did not expect, refunded: its row is settled
            await self._refunded_unexpected(kept, "telegram")
            return await self.storage.get_order(kept.order_id)
        order = await self.storage.get_order_by_payment(provider_name, payment.charge_id)
        if order is None:
            log.info("%s refund of %s names no order's payment", provider_name, payment.charge_id)
            return None
        if order.state not in (S.PAID, S.PARTIALLY_REFUNDED):
            return order
        left = order.left_to_refund
        try:
            refund, pending = await self._begin(
                order, left, "telegram", f"refunded:{provider_name}:{payment.charge_id}"
            )
        except RefundError:  # recorded before, or an admin's refund began meanwhile
            return await self.storage.get_order(order.id)
        return await self._finish(pending, refund, left, "TELEGRAM", "reported by Telegram")

    async def _checked(
        self, order_id: int, amount: Money | None, expected_left: Money | None, *, manual: bool
    ) -> tuple[Order, Money, Money]:
        order = await self.storage.get_order(order_id)
        if order is None:
            raise RefundError("no_order")
        if order.state not in (S.PAID, S.PARTIALLY_REFUNDED, S.NEEDS_REVIEW):
            raise RefundError("not_refundable", f"the order is {order.state}")
        by_api = self.refunds_by_api(order)
        if by_api == manual:
            raise RefundError(
                "api_refund" if manual else "manual_refund",
                f"{order.provider} refunds {'through its API' if by_api else 'by hand'}",
            )
        left = order.left_to_refund
        if order.state is S.NEEDS_REVIEW:
            left = await self._review_left(order)
            if amount is not None and amount != left:
                raise RefundError("review_whole", f"an order in review is refunded in full: {left}")
        if expected_left is not None and left != expected_left:  # a question asked before
            raise RefundError("stale", f"{left} is left now, the question said {expected_left}")
        amount = left if amount is None else amount
        if amount.currency != order.currency:
            raise RefundError("bad_amount", f"the order is in {order.currency}")
        if amount.amount <= 0:
            raise RefundError("bad_amount", "the amount must be above zero")
        if left < amount:
            raise RefundError("beyond_paid", f"only {left} is left to refund")
        provider = self.providers.get(order.provider) if order.provider in self.providers else None
        partial_ok = manual or (
            provider is not None and Capability.PARTIAL_REFUND in provider.capabilities
        )
        if amount < left and not partial_ok:
            raise RefundError("no_partial", f"{order.provider} refunds only the whole amount")
        return order, amount, left

    async def _review_left(self, order: Order) -> Money:
        """What to give back for an order in review: what the provider says was paid where
        it can be asked (an amount mismatch is why many orders are here), else the total.
        Refused while the order's payment is kept as one we did not expect: that payment has
        its own one-tap refund, and the money must not go back twice."""
        kept = await self.storage.unexpected_for_order(order.id)
        if any(row.payment_id == order.provider_payment_id for row in kept):
            raise RefundError("unexpected_refund", "refund the payment with its own button")
        provider = self.providers.get(order.provider) if order.provider in self.providers else None
        ref = stored_ref(order)
        if provider is None or ref is None or Capability.STATUS_API not in provider.capabilities:
            return order.left_to_refund
        try:
            status = await provider.fetch_status(ref)
        except ProviderError as exc:
            raise RefundError("refund_unknown", str(exc)) from None
        paid = paid_of(status, order)
        if paid is None or paid.currency != order.currency or paid.amount <= 0:
            return order.left_to_refund
        return paid - order.refunded_so_far

    async def _begin(
        self, order: Order, amount: Money, actor: str, request: str
    ) -> tuple[Refund, Order]:
        """The durable row first, then the order in refund_pending (an order in review too,
        so nobody accepts or fails it while its money goes back; the audit says it came from
        review); refused for a request made before (a second press), while another refund of
        the order is open (storage keeps one open refund per order), or for an order that
        moved meanwhile."""
        refund, created = await self.storage.create_refund(order.id, amount, request, actor)
        if not created and refund.idempotency_key != request:
            raise RefundError("refund_open", f"refund {refund.id} of the order is {refund.state}")
        if not created:
            raise RefundError("duplicate_refund", f"refund {refund.id} is already {refund.state}")
        detail = f"refund {amount}" + (FROM_REVIEW if order.state is S.NEEDS_REVIEW else "")
        pending = await self.storage.transition(
            order.id, order.state, S.REFUND_PENDING, actor=actor, detail=detail
        )
        if pending is None or pending.left_to_refund < amount:  # another refund landed since
            await self.storage.finish_refund(refund.id, "rejected", "RACE")
            if pending is not None:
                await self.storage.transition(
                    order.id, S.REFUND_PENDING, order.state, actor=actor, detail="refund raced"
                )
            raise RefundError("busy", "the order changed meanwhile; try again")
        return refund, pending

    async def _ask_provider(self, order: Order, refund: Refund, left: Money) -> Order:
        provider = self.providers.get(order.provider)
        ref = stored_ref(order)
        assert ref is not None  # refunds_by_api checked it
        try:
            result = await provider.refund(ref, refund.amount, f"refund-{refund.id}")
        except ProviderUnavailable as exc:
            found = await self._outcome_from_status(provider, order, refund.amount, left)
            if found is None or found.outcome is not RefundOutcome.DONE:
                # cannot tell yet whether the money moved (a late refund may still land): the
                # sweep reads what is left once the refund had time to settle
                log.warning("refund %s: outcome unknown (%s); the sweep will check", refund.id, exc)
                raise RefundError(
                    "refund_unknown", f"{exc}; the refund is checked again shortly"
                ) from None
            result = found
        except ProviderRejected as exc:
            if isinstance(exc, ProviderMisconfigured):
                await self._misconfigured(order, exc)
            result = RefundResult(
                RefundOutcome.REJECTED, Money.zero(order.currency), None, exc.code, str(exc)
            )
        if result.outcome is RefundOutcome.PENDING:  # the provider is still working on it
            raise RefundError("refund_unknown", result.detail or "the refund is pending")
        if result.outcome is not RefundOutcome.DONE:
            await self._undo(order, refund, result.provider_code, result.detail)
            raise RefundError("provider_refused", result.detail or result.provider_code)
        how = ALREADY if result.already else ""
        return await self._finish(order, refund, left, result.provider_code, how)

    async def _finish(
        self, order: Order, refund: Refund, left: Money, code: str, how: str
    ) -> Order:
        reviewed = await self._from_review(order)
        target = S.REFUNDED if refund.amount == left or reviewed else S.PARTIALLY_REFUNDED
        refunded = order.refunded_so_far + refund.amount
        payload = {"amount": refund.amount.amount}
        notices = [message(OutboxKind.REFUNDED, order.chat_id, payload, tag=str(refund.id))]
        if self.merchant_chat_id is not None:  # who ships the goods must know
            notices.append(
                message(
                    OutboxKind.MERCHANT_REFUNDED, self.merchant_chat_id, payload, tag=str(refund.id)
                )
            )
        notices += self._card()
        moved = await self.storage.transition(
            order.id,
            S.REFUND_PENDING,
            target,
            actor=refund.actor,
            detail=f"refunded {refund.amount}" + (f" ({how})" if how else ""),
            outbox=notices,
            paid=refunded if reviewed else None,  # all that was taken went back
            refunded=refunded,
            refund=RefundEnd(refund.id, "done", code),
        )
        if moved is None:  # the money went back, yet the order is not where we left it
            await self.storage.finish_refund(refund.id, "done", code)
            current = await self.storage.get_order(order.id) or order
            why = f"refund {refund.amount} went through, but the order was {current.state}"
            await self._review(current, refund.actor, why, keep_state=True)
            raise RefundError("busy", why)
        self._on_outbox()
        return moved

    async def _undo(self, order: Order, refund: Refund, code: str, detail: str) -> None:
        """Nothing was refunded: the row is rejected, the order back where it was (in review,
        for one whose refund began there)."""
        before = S.PARTIALLY_REFUNDED if order.refunded_so_far.amount else S.PAID
        if await self._from_review(order):
            before = S.NEEDS_REVIEW
        await self.storage.transition(
            order.id,
            S.REFUND_PENDING,
            before,
            actor=refund.actor,
            detail=f"refund refused: {code} {detail}".strip(),
            refund=RefundEnd(refund.id, "rejected", code),
        )

    async def _outcome_from_status(
        self, provider: Provider, order: Order, amount: Money, left: Money
    ) -> RefundResult | None:
        """Whether a refund whose answer was lost went through, from what the provider says is
        left on the payment; None when it cannot say or cannot be asked now."""
        try:
            return await self._outcome_or_outage(provider, order, amount, left)
        except ProviderError:
            return None

    async def _outcome_or_outage(
        self, provider: Provider, order: Order, amount: Money, left: Money
    ) -> RefundResult | None:
        """As `_outcome_from_status`, but an outage is raised (ProviderError), not None: the
        sweep tells "cannot be asked now" from "answers and cannot say". Only an explicit
        `remaining` (or a refunded state) tells."""
        ref = stored_ref(order)
        if ref is None or Capability.STATUS_API not in provider.capabilities:
            return None
        status = await provider.fetch_status(ref)
        now_left = status.remaining
        if status.state is PaymentState.REFUNDED:
            now_left = Money.zero(order.currency)
        if now_left is None:
            return None
        if now_left == left - amount:
            return RefundResult(RefundOutcome.DONE, amount, now_left, "CHECKED")
        if now_left == left:
            return RefundResult(
                RefundOutcome.REJECTED,
                Money.zero(order.currency),
                now_left,
                "UNAVAILABLE",
                "the provider did not answer; nothing was refunded",
            )
        return None

    # --- payments we did not expect -------------------------------------------------------

    def refunds_unexpected_by_api(self, provider: str) -> bool:
        return self.can(provider, Capability.REFUND)

    async def refund_unexpected(self, payment_row_id: int, *, actor: str) -> UnexpectedPayment:
        """The admins' one tap on a payment we did not expect: refunded through the provider's
        API where it has one (taken once: a second tap finds it taken), else recorded as
        refunded in the back office. The order stays in review for a person to close."""
        row = await self.storage.get_unexpected(payment_row_id)
        if row is None:
            raise RefundError("no_order")
        if row.amount is None:
            raise RefundError("bad_amount", "the provider did not say how much was paid")
        by_api = self.refunds_unexpected_by_api(row.provider)
        if not await self.storage.move_unexpected(row.id, "open", "refunding"):
            fresh = await self.storage.get_unexpected(row.id) or row
            reason = {"refunding": "check_back_office", "accepted": "accepted"}.get(
                fresh.state, "duplicate_refund"
            )
            raise RefundError(reason, f"that payment is {fresh.state}")
        if by_api:
            provider = self.providers.get(row.provider)
            ref = PaymentRef(row.payment_id, row.payment_data)
            try:
                result = await provider.refund(ref, row.amount, f"unexpected-{row.id}")
            except ProviderUnavailable as exc:  # left "refunding": a person checks the back office
                raise RefundError("check_back_office", str(exc)) from None
            except ProviderRejected as exc:
                result = RefundResult(
                    RefundOutcome.REJECTED, Money.zero(row.currency), None, exc.code, str(exc)
                )
            if result.outcome is not RefundOutcome.DONE:
                await self.storage.move_unexpected(row.id, "refunding", "open")
                raise RefundError("provider_refused", result.detail or result.provider_code)
        await self._refunded_unexpected(row, actor, "refunding")
        return await self.storage.get_unexpected(row.id) or row

    async def _refunded_unexpected(
        self, row: UnexpectedPayment, actor: str, expected: str | None = None
    ) -> None:
        """The payment's row ends refunded (from `expected`, else from whatever open state it
        is in) and its payer is told, once."""
        for state in [expected] if expected else ["open", "refunding"]:
            if await self.storage.move_unexpected(row.id, state, "refunded"):
                break
        else:
            return  # refunded already: told then
        order = await self.storage.get_order(row.order_id)
        if order is not None and row.amount is not None:
            payload = {"amount": row.amount.amount, "extra": True}  # not the order's own payment
            notice = message(OutboxKind.REFUNDED, order.chat_id, payload, tag=f"u{row.id}")
            detail = f"refunded {row.amount}: {row.provider} payment {row.payment_id}, not expected"
            await self.storage.note(order.id, actor=actor, detail=detail[:500], outbox=[notice])
            self._on_outbox()
        log.info("unexpected payment %s refunded (%s)", row.id, actor)

    async def finish_refunds(self, now: datetime) -> int:
        """The sweep's part: refunds cut off by a crash or an outage are finished from what the
        provider says is left; one whose outcome nobody can tell goes to review. Never asks
        for the money again. Returns how many were settled."""
        settled = 0
        before = now - IN_FLIGHT
        for refund in await self.storage.unfinished_refunds(before):
            if not await self.storage.claim_refund(refund.id, before, now):
                continue  # another replica's sweep has it
            order = await self.storage.get_order(refund.order_id)
            if order is None or order.state is not S.REFUND_PENDING:
                await self.storage.finish_refund(refund.id, "rejected", "ORPHANED")
                continue
            try:
                settled += await self._settle(order, refund)
            except RefundError:  # done, but the order had moved: sent to review (_finish)
                settled += 1
        return settled

    async def _settle(self, order: Order, refund: Refund) -> bool:
        provider = self.providers.get(order.provider) if order.provider in self.providers else None
        # an order from review is refunded in full of what was taken: the refund is all of it
        left = refund.amount if await self._from_review(order) else order.left_to_refund
        found = None
        if provider is not None:
            try:
                found = await self._outcome_or_outage(provider, order, refund.amount, left)
            except ProviderUnavailable:
                return False  # still unreachable: try again next sweep
            except ProviderRejected as exc:  # it answers, and cannot find the payment
                log.warning("refund %s: %s cannot say (%s)", refund.id, provider.name, exc)
        if found is None:  # a provider that answers but cannot say: a person must look
            await self.storage.finish_refund(refund.id, "unknown", "UNKNOWN")
            await self._review(order, SWEEP, f"refund of {refund.amount} has an unknown outcome")
            return True
        if found.outcome is RefundOutcome.DONE:
            await self._finish(order, refund, left, found.provider_code, "checked after a cut-off")
        else:
            await self._undo(order, refund, found.provider_code, found.detail)
        return True
