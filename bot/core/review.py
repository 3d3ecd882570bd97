"""Orders in needs_review, resolved by a person (/review): accepted as paid, refunded (the
refund machinery in refunds.py takes a needs_review order) or marked failed. Each resolution
is a compare-and-set from NEEDS_REVIEW with its audit row and messages in one transaction, so
a second press, or a second admin, changes nothing and tells nobody twice."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.outbox import OutboxKind, message
from bot.core.refunds import Refunding
from storage.base import AuditEntry, NewOutbox, Order, OrderQuery, OrderState, UnexpectedPayment

S = OrderState
NOTE = "review: "  # how a review noted on an order already in review starts (context._review)
ACCEPTED = "accepted"  # an unexpected payment kept as the order's own when its review is accepted


TWINS = 20  # how many of the customer's paid orders are compared with one in review


def _items(order: Order) -> list[tuple[str, int]]:
    return sorted((item.sku, item.quantity) for item in order.items)


class ReviewError(Exception):
    """The order is not (or no longer) in review; `order` is what it is now, if any."""

    def __init__(self, reason: str, order: Order | None = None) -> None:
        super().__init__(reason)
        self.reason = reason  # "no_order" | "not_in_review" | "refunding"
        self.order = order


@dataclass(frozen=True, slots=True)
class ReviewCase:
    """An order in review with what brought it there."""

    order: Order
    said: str  # the audit detail that moved it to review (the provider's answer, in short)
    unexpected: tuple[UnexpectedPayment, ...] = ()  # payments we did not expect, if any
    # the customer's other paid orders of the same items: accepting this one would charge
    # them twice for one thing (a cancelled order paid late after "Try again" was paid)
    twins: tuple[Order, ...] = ()

    @property
    def open_payments(self) -> tuple[UnexpectedPayment, ...]:
        """The payments we did not expect that are neither refunded nor accepted yet."""
        return tuple(p for p in self.unexpected if p.state not in ("refunded", ACCEPTED))


def review_reason(trail: list[AuditEntry]) -> str:
    """The newest audit detail that sent the order to review or noted a review on it."""
    for entry in reversed(trail):
        if entry.detail.startswith(NOTE):
            return entry.detail.removeprefix(NOTE)
        if entry.to_state is S.NEEDS_REVIEW and entry.from_state is not S.NEEDS_REVIEW:
            return entry.detail
    return ""


class Reviewing(Refunding):
    async def open_reviews(self, *, limit: int, offset: int = 0) -> list[ReviewCase]:
        """Orders in needs_review, newest first, each with what brought it there."""
        orders = await self.storage.search_orders(
            OrderQuery(states=(S.NEEDS_REVIEW,)), limit=limit, offset=offset
        )
        return [await self._case(order) for order in orders]

    async def review_case(self, order_id: int) -> ReviewCase | None:
        order = await self.storage.get_order(order_id)
        return await self._case(order) if order is not None else None

    async def _case(self, order: Order) -> ReviewCase:
        said = review_reason(await self.storage.audit_trail(order.id))
        unexpected = tuple(await self.storage.unexpected_for_order(order.id))
        return ReviewCase(order, said, unexpected, await self._twins(order))

    async def _twins(self, order: Order) -> tuple[Order, ...]:
        """The customer's other orders, paid and not refunded in full, with the same items
        (products and quantities): the newest few, enough to warn."""
        paid = await self.storage.search_orders(
            OrderQuery(states=(S.PAID, S.PARTIALLY_REFUNDED), user_id=order.user_id), limit=TWINS
        )
        return tuple(o for o in paid if o.id != order.id and _items(o) == _items(order))

    async def accept_review(self, order_id: int, *, actor: str) -> Order:
        """A person looked and accepts the payment: the order is paid, the customer told and
        the merchant chat gets the paid-order message (with its fulfilment buttons). The
        payments we did not expect that brought it here are kept as its own ("accepted"), so
        their one-tap refund is off; refused ("refunding") while one of them is being
        refunded."""
        order = await self._in_review(order_id)
        notices = [message(OutboxKind.REVIEW_PAID, order.chat_id)]
        if self.merchant_chat_id is not None:  # the paid message, or (sent before the review)
            notices.append(message(OutboxKind.MERCHANT_PAID, self.merchant_chat_id))
        notices += self._card()  # ... its card brought back to paid, with the steps
        kept = await self._keep_unexpected(order)
        try:
            return await self._resolve(
                order, S.PAID, actor, "accepted as paid", notices, paid=order.paid or order.total
            )
        except ReviewError:  # another admin resolved it first: the payments are open again
            for row_id in kept:
                await self.storage.move_unexpected(row_id, ACCEPTED, "open")
            raise

    async def _keep_unexpected(self, order: Order) -> list[int]:
        """Each open payment we did not expect moves to accepted (a compare-and-set against
        its one-tap refund); ReviewError("refunding") when a refund of one came first."""
        kept: list[int] = []
        for row in await self.storage.unexpected_for_order(order.id):
            if row.state in ("refunded", ACCEPTED):
                continue
            if row.state != "open" or not await self.storage.move_unexpected(
                row.id, "open", ACCEPTED
            ):
                for row_id in kept:
                    await self.storage.move_unexpected(row_id, ACCEPTED, "open")
                raise ReviewError("refunding", order)
            kept.append(row.id)
        return kept

    async def fail_review(self, order_id: int, *, actor: str) -> Order:
        """A person looked and refuses the payment: the order failed, the customer and the
        merchant chat (told of the review before) are told."""
        order = await self._in_review(order_id)
        notices = [message(OutboxKind.REVIEW_FAILED, order.chat_id)]
        if self.merchant_chat_id is not None:
            notices.append(message(OutboxKind.MERCHANT_REVIEW_FAILED, self.merchant_chat_id))
        notices += self._card()  # a card sent before the review (paid, then doubted)
        return await self._resolve(order, S.FAILED, actor, "marked failed", notices)

    async def _in_review(self, order_id: int) -> Order:
        order = await self.storage.get_order(order_id)
        if order is None:
            raise ReviewError("no_order")
        if order.state is not S.NEEDS_REVIEW:
            raise ReviewError("not_in_review", order)
        return order

    async def _resolve(
        self,
        order: Order,
        target: OrderState,
        actor: str,
        detail: str,
        notices: list[NewOutbox],
        **amounts: object,
    ) -> Order:
        moved = await self.storage.transition(
            order.id,
            S.NEEDS_REVIEW,
            target,
            actor=actor,
            detail=detail,
            outbox=notices,
            **amounts,  # type: ignore[arg-type]
        )
        if moved is None:  # another admin resolved it first
            raise ReviewError("not_in_review", await self.storage.get_order(order.id))
        self._on_outbox()
        return moved
