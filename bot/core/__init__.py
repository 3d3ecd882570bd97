"""The one checkout service, split by job into rooms of its own:

- `checkout.py`: placing and cancelling orders, and the reads the chat shows;
- `inbound.py`: returns, callbacks, bridge pages, chat payments, replay;
- `confirm.py`: the one confirm;
- `refunds.py`: refunds;
- `ledger.py`: reconciliation with a provider's own ledger (Stars);
- `outbox.py`: the kinds of messages the notifier sends.

The chat, the web routes, the notifier and the sweep import from here, never from storage or
providers: the records they show are re-exported below.
"""

from __future__ import annotations

from bot.core.checkout import AmountLimit, CartLine, Ordering, PaymentChoice, amount_limit
from bot.core.confirm import Confirmation
from bot.core.context import CheckoutError, CheckSchedule, ReceiptError, RefundError
from bot.core.ledger import LedgerReport, Reconciling
from bot.core.outbox import Audience, OutboxKind
from bot.core.refunds import ALREADY as REFUNDED_ALREADY
from bot.core.refunds import RefundPlan
from money import AmountNotRepresentable, Money
from providers.base import Ack, BadCallback, BridgeWords, ChatPayment, InboundRequest, Provider
from storage.base import (
    FINAL,
    PAYABLE,
    AuditEntry,
    Figures,
    Order,
    OrderState,
    OutboxMessage,
    SavedCard,
    UnexpectedPayment,
)


class CheckoutService(Ordering, Reconciling):
    """Orders, confirmation, inbound requests, refunds and reconciliation: one service, one set
    of rules."""


__all__ = [
    "FINAL",
    "PAYABLE",
    "REFUNDED_ALREADY",
    "Ack",
    "AmountLimit",
    "AmountNotRepresentable",
    "Audience",
    "AuditEntry",
    "BadCallback",
    "BridgeWords",
    "CartLine",
    "ChatPayment",
    "CheckSchedule",
    "CheckoutError",
    "CheckoutService",
    "Confirmation",
    "Figures",
    "InboundRequest",
    "LedgerReport",
    "Money",
    "Order",
    "OrderState",
    "OutboxKind",
    "OutboxMessage",
    "PaymentChoice",
    "Provider",
    "ReceiptError",
    "RefundError",
    "RefundPlan",
    "SavedCard",
    "UnexpectedPayment",
    "amount_limit",
]
