"""The merchant's side of a paid order: shipped (with an optional tracking note), delivered, or
cancelled by the shop. A field beside the payment state, never mixed into it: each step is a
compare-and-set in storage with its audit row and the customer's message in one transaction,
so a second press (or a second person pressing) changes nothing and tells nobody twice."""

from __future__ import annotations

from bot.core.context import CoreContext
from bot.core.outbox import OutboxKind, message
from storage.base import FULFILMENT_STEPS, Fulfilment, Order, OrderState

S = OrderState
# The orders whose goods the merchant owes: paid, and not (or not all) given back.
FULFILLABLE = frozenset({S.PAID, S.PARTIALLY_REFUNDED, S.REFUND_PENDING})
TRACKING_LIMIT = 200  # characters of a tracking note
STEP_MESSAGES = {
    Fulfilment.SHIPPED: OutboxKind.SHIPPED,
    Fulfilment.DELIVERED: OutboxKind.DELIVERED,
    Fulfilment.CANCELLED: OutboxKind.SHOP_CANCELLED,
}


class FulfilmentError(Exception):
    """A step we refuse; `reason` is a key the chat turns into text, `order` what it is now."""

    def __init__(self, reason: str, order: Order | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # "no_order" | "not_paid" | "already" | "not_now"
        self.order = order


class Fulfilling(CoreContext):
    def next_steps(self, order: Order) -> list[Fulfilment]:
        """The steps the merchant may take now, in the order the buttons show them."""
        if order.state not in FULFILLABLE:
            return []
        allowed = FULFILMENT_STEPS[order.fulfilment]
        return [step for step in STEP_MESSAGES if step in allowed]

    async def may_fulfil(self, order_id: int, step: Fulfilment) -> Order:
        """The order, when the step may be taken now (asked before the tracking note is);
        FulfilmentError as `fulfil` would raise it."""
        if not 0 < order_id < 2**63:  # a forged button: no order of ours, nor storable
            raise FulfilmentError("no_order")
        order = await self.storage.get_order(order_id)
        if order is None:
            raise FulfilmentError("no_order")
        self._check(order, step)
        if await self._from_review(order):  # its money goes back before anyone accepted it
            raise FulfilmentError("not_paid", order)
        return order

    async def fulfil(
        self, order_id: int, step: Fulfilment, *, actor: str, tracking: str | None = None
    ) -> Order:
        """Take one step ("admin:<id>" or "merchant:<id>" as the actor); the customer is told
        in their language. FulfilmentError: no such order, not paid, or the step is no longer
        possible (`already` when the order is at that step: a stale button)."""
        order = await self.may_fulfil(order_id, step)
        note = (tracking or "").strip()[:TRACKING_LIMIT] or None
        payload = {"tracking": note} if note else {}
        moved = await self.storage.set_fulfilment(
            order.id,
            order.fulfilment,
            step,
            actor=actor,
            tracking=note,
            outbox=[message(STEP_MESSAGES[step], order.chat_id, payload), *self._card()],
            states=FULFILLABLE,  # checked again under the lock: a refund may have landed
        )
        if moved is None:  # someone else took a step first: say where it is now
            current = await self.storage.get_order(order.id) or order
            self._check(current, step)
            raise FulfilmentError("not_now", current)
        self._on_outbox()
        return moved

    def _check(self, order: Order, step: Fulfilment) -> None:
        if order.fulfilment is step:
            raise FulfilmentError("already", order)
        if order.state not in FULFILLABLE:
            raise FulfilmentError("not_paid", order)
        if step not in FULFILMENT_STEPS[order.fulfilment]:
            raise FulfilmentError("not_now", order)
