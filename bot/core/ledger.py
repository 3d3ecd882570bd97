"""Reconciliation with a provider's own ledger (Stars: `getStarTransactions`).

A `successful_payment` update can be lost (Telegram gives up on a bot that was down long
enough); the ledger still lists the charge. A charge listed there that never reached us is
confirmed from the ledger, through the one confirm, and the admins are told. A paid order the
ledger does not list is told to the admins: a person looks at it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from bot.core.confirm import stored_ref
from bot.core.outbox import OutboxKind, message
from bot.core.refunds import Refunding
from providers.base import (
    InChat,
    ListedPayment,
    PaymentState,
    Provider,
    ProviderError,
    ProviderRejected,
)
from storage.base import Order, OrderState

log = logging.getLogger("bot.core.ledger")

# A payment's order is marked paid a moment after Telegram's charge time: orders paid this
# close to the window's edge are not compared (their charge may lie just outside it), nor
# orders paid this recently (the ledger may not list them yet).
EDGE = timedelta(minutes=10)
SETTLING = timedelta(minutes=2)
LOOKUPS = 20  # paid orders searched for alone in one pass, at most


# what the order of a recovered payment ended as when it was confirmed from the ledger
SETTLED_PAID = frozenset(
    {OrderState.PAID, OrderState.PARTIALLY_REFUNDED, OrderState.REFUNDED, OrderState.REFUND_PENDING}
)


class Recovery(Enum):
    CONFIRMED = "confirmed"  # the order is paid with it
    REVIEWED = "reviewed"  # kept as a payment we did not expect
    STRANGER = "stranger"  # names no order of ours


@dataclass(slots=True)
class LedgerReport:
    provider: str
    hours: int = 0  # how far back the ledger was compared
    listed: int = 0  # payments the ledger lists in the window
    recovered: list[int] = field(default_factory=list)  # orders confirmed from the ledger
    reviewed: list[int] = field(default_factory=list)  # found, but kept for review (closed, or
    # paid with another payment): the admins had the review with its one-tap refund
    unlisted: list[int] = field(default_factory=list)  # paid orders the ledger does not list
    strangers: int = 0  # listed payments naming no order of ours
    error: str = ""  # the ledger could not be read: nothing was compared


class Reconciling(Refunding):
    async def reconcile_ledgers(
        self, *, now: datetime | None = None, window: timedelta = timedelta(hours=48)
    ) -> list[LedgerReport]:
        """Compare every in-chat provider's ledger over the last `window` with what we
        stored. Safe to run often and on several replicas: each finding is told once."""
        now = now or self.clock()
        reports = []
        for provider in self.in_chat():
            try:
                reports.append(await self._reconcile(provider, now, window))
            except ProviderError as exc:
                log.warning("%s ledger not read: %s", provider.name, exc)
                reports.append(LedgerReport(provider.name, error=str(exc)))
        return reports

    async def _reconcile(
        self, provider: Provider, now: datetime, window: timedelta
    ) -> LedgerReport:
        assert isinstance(provider, InChat)
        since = now - window
        listed = await provider.listed_payments(since)
        hours = int(window.total_seconds() // 3600)
        report = LedgerReport(provider.name, hours, listed=len(listed))
        for line in listed:
            found = await self._recover(provider, line)
            if found is None:
                continue
            outcome, order_id = found
            if outcome is Recovery.STRANGER:
                report.strangers += 1
            elif outcome is Recovery.CONFIRMED:
                report.recovered.append(order_id)
            else:
                report.reviewed.append(order_id)
        charges = {line.payment.charge_id for line in listed}
        missing = [
            order
            for order in await self.storage.paid_between(
                provider.name, since + EDGE, now - SETTLING
            )
            if order.provider_payment_id not in charges
        ]
        if len(missing) > LOOKUPS:  # a ledger that lists nothing: not one search per order
            log.error(
                "%s ledger lacks %s paid orders; looking up %s this pass",
                provider.name,
                len(missing),
                LOOKUPS,
            )
        for order in missing[:LOOKUPS]:
            if await self._listed(provider, order):
                continue
            report.unlisted.append(order.id)
            await self._tell_admins(
                order.id,
                OutboxKind.ADMIN_LEDGER_UNLISTED,
                {"payment_id": order.provider_payment_id or ""},
            )
        if report.recovered or report.reviewed or report.unlisted or report.strangers:
            log.warning(
                "%s ledger: %s listed, recovered %s, kept for review %s, unlisted %s, "
                "%s naming no order",
                provider.name,
                len(listed),
                report.recovered,
                report.reviewed,
                report.unlisted,
                report.strangers,
            )
        return report

    async def _listed(self, provider: Provider, order: Order) -> bool:
        """Whether the ledger lists the order's payment when asked for it alone: it was
        confirmed long after the charge (a backlog, a recovered update), whose time lies
        before the window."""
        ref = stored_ref(order)
        if ref is None:
            return False
        try:
            status = await provider.fetch_status(ref)
        except ProviderRejected:  # not found where it should be
            return False
        return status.state in (PaymentState.PAID, PaymentState.REFUNDED)

    async def _recover(
        self, provider: Provider, line: ListedPayment
    ) -> tuple[Recovery, int] | None:
        """A listed payment that never reached us is received now, as if its update had come.
        None for one we have (or one refunded already: nothing is owed)."""
        assert isinstance(provider, InChat)
        payment = line.payment
        if await self.storage.get_order_by_payment(provider.name, payment.charge_id):
            return None
        order_id = provider.order_of(payment.invoice_payload)
        if order_id is not None:
            events = await self.storage.inbound_for_order(order_id)
            if any(
                e.provider == provider.name and e.event_key == payment.charge_id for e in events
            ):
                return None  # it reached us (a payment we did not expect is kept as one)
        if line.refunded:
            log.warning(
                "%s charge %s was refunded before it reached us", provider.name, payment.charge_id
            )
            return None
        order = await self.receive_chat_payment(provider.name, payment, actor="ledger")
        if order is None:  # names no order of ours: the admins are told once
            return Recovery.STRANGER, 0
        if order.provider_payment_id != payment.charge_id or order.state not in SETTLED_PAID:
            return Recovery.REVIEWED, order.id  # kept as a payment we did not expect
        await self._tell_admins(
            order.id, OutboxKind.ADMIN_LEDGER_RECOVERED, {"payment_id": payment.charge_id}
        )
        return Recovery.CONFIRMED, order.id

    async def _tell_admins(self, order_id: int, kind: OutboxKind, payload: dict[str, str]) -> None:
        told = False
        for admin in self.admin_ids:
            told |= await self.storage.enqueue(order_id, message(kind, admin, payload))
        if told:
            self._on_outbox()
