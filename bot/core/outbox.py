"""What the core queues for the notifier: one enum of message kinds and the builders.

A row's stored `kind` is its key: unique per order, so a transition raced by two callers
queues its messages once. A kind that can recur for one order (a second review, a second
refund) carries a suffix of its own, so the uniqueness never swallows it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from storage.base import NewOutbox


class Audience(StrEnum):
    CUSTOMER = "customer"  # in the order's language
    MERCHANT = "merchant"  # MERCHANT_LOCALE
    ADMIN = "admin"  # the admin's own language


class OutboxKind(StrEnum):
    PAID = "paid"
    RECEIPT = "receipt"  # the provider's receipt document, sent beside the paid message
    FAILED = "failed"
    EXPIRED = "expired"
    REVIEW = "review"
    REFUNDED = "refunded"
    MERCHANT_PAID = "merchant_paid"
    MERCHANT_REVIEW = "merchant_review"
    MERCHANT_REFUNDED = "merchant_refunded"
    MERCHANT_DAILY_REPORT = "merchant_daily_report"  # of no order; its key carries the day
    ADMIN_REVIEW = "admin_review"
    ADMIN_MISCONFIGURED = "admin_misconfigured"
    ADMIN_LEDGER_RECOVERED = "admin_ledger_recovered"  # a lost payment update, found
    ADMIN_LEDGER_UNLISTED = "admin_ledger_unlisted"  # a paid order the ledger does not list
    ADMIN_STRANGER_PAYMENT = "admin_stranger_payment"  # paid, naming no order of ours
    ADMIN_UNKNOWN_PAYMENT = "admin_unknown_payment"  # paid, to a payment no order has
    ADMIN_CALLBACK_REFUSED = "admin_callback_refused"  # the provider's truth, refused
    CARD_SAVED = "card_saved"
    CARD_FAILED = "card_failed"
    SHIPPED = "shipped"  # the merchant's fulfilment steps, each once per order
    DELIVERED = "delivered"
    SHOP_CANCELLED = "shop_cancelled"
    REVIEW_PAID = "review_paid"  # a person resolved the review: accepted as paid
    REVIEW_FAILED = "review_failed"  # ... or marked failed
    MERCHANT_REVIEW_FAILED = "merchant_review_failed"
    MERCHANT_CARD = "merchant_card"  # the paid-order message edited to the order as it is now

    @property
    def audience(self) -> Audience:
        if self.startswith("merchant_"):
            return Audience.MERCHANT
        if self.startswith("admin_"):
            return Audience.ADMIN
        return Audience.CUSTOMER

    @property
    def recurs(self) -> bool:
        """May be queued more than once for one order."""
        return self in RECURRING

    @classmethod
    def of(cls, key: str) -> OutboxKind | None:
        """The kind of a stored row's key ('review:3f9a' -> REVIEW); None for one we do not
        know (a row written by a newer version)."""
        try:
            return cls(key.partition(":")[0])
        except ValueError:
            return None


RECURRING = frozenset(
    {
        OutboxKind.REVIEW,
        OutboxKind.REFUNDED,
        OutboxKind.MERCHANT_REFUNDED,
        OutboxKind.MERCHANT_REVIEW,
        OutboxKind.ADMIN_REVIEW,
        OutboxKind.ADMIN_MISCONFIGURED,
        OutboxKind.CARD_SAVED,
        OutboxKind.CARD_FAILED,
        OutboxKind.REVIEW_PAID,  # an order may come to review again (a second payment)
        OutboxKind.REVIEW_FAILED,
        OutboxKind.MERCHANT_REVIEW_FAILED,
        OutboxKind.MERCHANT_CARD,
    }
)


def message(
    kind: OutboxKind, chat_id: int, payload: Mapping[str, Any] | None = None, *, tag: str = ""
) -> NewOutbox:
    """One outbox row. Rows of a recurring kind get `tag` (a refund id) or a fresh suffix;
    rows of other kinds are once per order (and per admin, for admin kinds)."""
    parts = [kind.value]
    if kind.audience is Audience.ADMIN:
        parts.append(str(chat_id))
    if kind.recurs:
        parts.append(tag or secrets.token_hex(4))
    return NewOutbox(":".join(parts), chat_id, dict(payload or {}))
