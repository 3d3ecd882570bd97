"""The one checkout service, split by job into rooms of its own:

- `checkout.py`: placing and cancelling orders, and the reads the chat shows;
- `inbound.py`: returns, callbacks, bridge pages, chat payments, replay;
- `confirm.py`: the one confirm;
- `refunds.py`: refunds;
- `fulfilment.py`: the merchant's steps (shipped, delivered, cancelled by the shop);
- `review.py`: orders in needs_review resolved by a person;
- `ledger.py`: reconciliation with a provider's own ledger (Stars);
- `reports.py`: figures, paid per day and exports for the staff, the daily report;
- `outbox.py`: the kinds of messages the notifier sends;
- `details.py`: the customer's delivery details, checked.

The chat, the web routes, the notifier and the sweep import from here, never from storage or
providers: the records they show are re-exported below.
"""

from __future__ import annotations

from bot.core.checkout import AmountLimit, CartLine, Ordering, PaymentChoice, amount_limit
from bot.core.confirm import SWEEP, Confirmation
from bot.core.context import CheckoutError, CheckSchedule, ReceiptError, RefundError
from bot.core.fulfilment import FULFILLABLE, Fulfilling, FulfilmentError
from bot.core.ledger import LedgerReport, Reconciling
from bot.core.outbox import Audience, OutboxKind
from bot.core.refunds import ALREADY as REFUNDED_ALREADY
from bot.core.refunds import RefundPlan
from bot.core.reports import PaidPerDay, Reporting
from bot.core.review import ReviewCase, ReviewError, Reviewing
from money import AmountNotRepresentable, Money
from providers.base import Ack, BadCallback, BridgeWords, ChatPayment, InboundRequest, Provider
from storage.base import (
    FINAL,
    PAYABLE,
    AuditEntry,
    Buyer,
    Delivery,
    Figures,
    Fulfilment,
    Order,
    OrderItem,
    OrderQuery,
    OrderState,
    OutboxMessage,
    SavedCard,
    Takings,
    UnexpectedPayment,
)


class CheckoutService(Ordering, Reconciling, Reporting, Reviewing, Fulfilling):
    """Orders, confirmation, inbound requests, refunds, reconciliation, reports, reviews and
    fulfilment: one service, one set of rules."""


__all__ = [
    "FINAL",
    "FULFILLABLE",
    "PAYABLE",
    "REFUNDED_ALREADY",
    "SWEEP",
    "Ack",
    "AmountLimit",
    "AmountNotRepresentable",
    "Audience",
    "AuditEntry",
    "BadCallback",
    "BridgeWords",
    "Buyer",
    "CartLine",
    "ChatPayment",
    "CheckSchedule",
    "CheckoutError",
    "CheckoutService",
    "Confirmation",
    "Delivery",
    "Figures",
    "Fulfilment",
    "FulfilmentError",
    "InboundRequest",
    "LedgerReport",
    "Money",
    "Order",
    "OrderItem",
    "OrderQuery",
    "OrderState",
    "OutboxKind",
    "OutboxMessage",
    "PaidPerDay",
    "PaymentChoice",
    "Provider",
    "ReceiptError",
    "RefundError",
    "RefundPlan",
    "ReviewCase",
    "ReviewError",
    "SavedCard",
    "Takings",
    "UnexpectedPayment",
    "amount_limit",
]
