"""Database rows to records, shared by the SQLite and PostgreSQL backends.

A row is anything indexable by column name (aiosqlite.Row, asyncpg.Record). `when` turns a
stored time into an aware datetime: SQLite keeps ISO text, PostgreSQL hands back timestamptz.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from money import Money
from storage.base import (
    AuditEntry,
    Buyer,
    Delivery,
    Fulfilment,
    InboundEvent,
    Order,
    OrderHead,
    OrderItem,
    OrderQuery,
    OrderState,
    OutboxMessage,
    Refund,
    SavedCard,
    Takings,
    UnexpectedPayment,
)

Row = Mapping[str, Any]
TimeReader = Callable[[Any], datetime | None]

ORDER_COLUMNS = (
    "id, user_id, chat_id, provider, amount, currency, state, token, locale, description, "
    "created_at, updated_at, provider_payment_id, payment_data, pay_url, expires_at, paid_at, "
    "paid_amount, refunded_amount, next_check_at, check_attempts, message_id, buyer_name, "
    "buyer_username, delivery_name, delivery_phone, delivery_address, delivery_comment, "
    "fulfilment, tracking, merchant_message_id"
)


# One order with its items in one query (one trip to the database, not two): the items as a
# JSON array of [sku, title, quantity, unit_amount], in their order.
ITEMS_SQLITE = (
    "(SELECT json_group_array(json_array(sku, title, quantity, unit_amount)) FROM "
    "(SELECT sku, title, quantity, unit_amount FROM order_items i WHERE i.order_id = orders.id "
    "ORDER BY position)) AS items_json"
)
ITEMS_POSTGRES = (
    "(SELECT coalesce(json_agg(json_build_array(sku, title, quantity, unit_amount) "
    "ORDER BY position), '[]') FROM order_items i WHERE i.order_id = orders.id)::text "
    "AS items_json"
)


def items_of(row: Row) -> tuple[OrderItem, ...]:
    return tuple(OrderItem(*item) for item in json.loads(row["items_json"]))


def to_item(row: Row) -> OrderItem:
    return OrderItem(row["sku"], row["title"], row["quantity"], row["unit_amount"])


def _money(amount: int | None, currency: str) -> Money | None:
    return None if amount is None else Money(amount, currency)


def to_order(row: Row, items: tuple[OrderItem, ...], when: TimeReader) -> Order:
    currency = row["currency"]
    return Order(
        id=row["id"],
        user_id=row["user_id"],
        chat_id=row["chat_id"],
        provider=row["provider"],
        total=Money(row["amount"], currency),
        state=OrderState(row["state"]),
        token=row["token"],
        locale=row["locale"],
        description=row["description"],
        created_at=when(row["created_at"]),  # type: ignore[arg-type]
        updated_at=when(row["updated_at"]),  # type: ignore[arg-type]
        items=items,
        provider_payment_id=row["provider_payment_id"],
        payment_data=json.loads(row["payment_data"] or "{}"),
        pay_url=row["pay_url"],
        expires_at=when(row["expires_at"]),
        paid_at=when(row["paid_at"]),
        paid=_money(row["paid_amount"], currency),
        refunded=_money(row["refunded_amount"], currency),
        next_check_at=when(row["next_check_at"]),
        check_attempts=row["check_attempts"],
        message_id=row["message_id"],
        buyer=Buyer(row["buyer_name"], row["buyer_username"]),
        delivery=to_delivery(row),
        fulfilment=Fulfilment(row["fulfilment"]),
        tracking=row["tracking"],
        merchant_message_id=row["merchant_message_id"],
    )


HEAD_COLUMNS = "id, provider, state, token, amount, currency, provider_payment_id, payment_data"


def to_head(row: Row) -> OrderHead:
    return OrderHead(
        id=row["id"],
        provider=row["provider"],
        state=OrderState(row["state"]),
        token=row["token"],
        total=Money(row["amount"], row["currency"]),
        provider_payment_id=row["provider_payment_id"],
        payment_data=json.loads(row["payment_data"] or "{}"),
    )


def to_delivery(row: Row) -> Delivery | None:
    if row["delivery_address"] is None:
        return None
    return Delivery(
        row["delivery_name"] or "",
        row["delivery_phone"] or "",
        row["delivery_address"],
        row["delivery_comment"] or "",
    )


def delivery_values(delivery: Delivery | None) -> tuple[str | None, ...]:
    """The four delivery columns of a new order (all None without delivery)."""
    if delivery is None:
        return (None, None, None, None)
    return (delivery.name, delivery.phone, delivery.address, delivery.comment)


PHONE_DIGITS_FOUND = 5  # fewer digits are an order id, not part of a phone


def query_where(
    query: OrderQuery, mark: Callable[[], str], stamp: Callable[[datetime], Any]
) -> tuple[str, list[Any]]:
    """The WHERE clause of a search and its parameters; `mark` gives the next placeholder
    ('?' for SQLite, '$n' for PostgreSQL), `stamp` a time as the dialect stores it."""
    clauses: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return mark()

    if query.states:
        clauses.append(f"state IN ({','.join(param(s.value) for s in query.states)})")
    if query.fulfilment:
        marks = ",".join(param(f.value) for f in query.fulfilment)
        clauses.append(f"fulfilment IN ({marks})")
    if query.provider:
        clauses.append(f"provider = {param(query.provider)}")
    if query.user_id is not None:
        clauses.append(f"user_id = {param(query.user_id)}")
    if query.since is not None:
        clauses.append(f"created_at >= {param(stamp(query.since))}")
    text = query.text.strip()
    if text:
        either = [f"provider_payment_id = {param(text)}"]
        if text.isascii() and text.isdigit() and len(text) <= 18:
            either.append(f"id = {param(int(text))}")
        needle = text.removeprefix("@").casefold()
        if needle.lstrip("+").isdigit():
            needle = needle.lstrip("+")
        if not needle.isdigit() or len(needle) >= PHONE_DIGITS_FOUND:  # '4' is order #4
            escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            either.append(f"search_text LIKE {param('%' + escaped + '%')} ESCAPE '\\'")
        clauses.append("(" + " OR ".join(either) + ")")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def fulfilment_detail(before: Fulfilment, after: Fulfilment, tracking: str | None) -> str:
    """The audit row of a fulfilment step."""
    detail = f"fulfilment {before} -> {after}"
    return f"{detail}: {tracking}" if tracking else detail


def to_audit(row: Row, when: TimeReader) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        order_id=row["order_id"],
        from_state=OrderState(row["from_state"]) if row["from_state"] else None,
        to_state=OrderState(row["to_state"]),
        actor=row["actor"],
        detail=row["detail"],
        created_at=when(row["created_at"]),  # type: ignore[arg-type]
    )


def to_inbound(row: Row, when: TimeReader) -> InboundEvent:
    return InboundEvent(
        id=row["id"],
        provider=row["provider"],
        event_key=row["event_key"],
        order_id=row["order_id"],
        body=bytes(row["body"]),
        received_at=when(row["received_at"]),  # type: ignore[arg-type]
        processed_at=when(row["processed_at"]),
    )


def to_outbox(row: Row, when: TimeReader) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"],
        order_id=row["order_id"],
        kind=row["kind"],
        chat_id=row["chat_id"],
        payload=json.loads(row["payload"]),
        attempts=row["attempts"],
        next_attempt_at=when(row["next_attempt_at"]),  # type: ignore[arg-type]
        created_at=when(row["created_at"]),  # type: ignore[arg-type]
    )


def to_refund(row: Row, when: TimeReader) -> Refund:
    return Refund(
        id=row["id"],
        order_id=row["order_id"],
        amount=Money(row["amount"], row["currency"]),
        idempotency_key=row["idempotency_key"],
        state=row["state"],
        actor=row["actor"],
        provider_code=row["provider_code"],
        created_at=when(row["created_at"]),  # type: ignore[arg-type]
        updated_at=when(row["updated_at"]),  # type: ignore[arg-type]
    )


def to_unexpected(row: Row, when: TimeReader) -> UnexpectedPayment:
    return UnexpectedPayment(
        id=row["id"],
        order_id=row["order_id"],
        provider=row["provider"],
        payment_id=row["payment_id"],
        payment_data=json.loads(row["payment_data"] or "{}"),
        amount=_money(row["amount"], row["currency"]),
        currency=row["currency"],
        state=row["state"],
        reason=row["reason"],
        created_at=when(row["created_at"]),  # type: ignore[arg-type]
    )


def to_card(row: Row, when: TimeReader) -> SavedCard:
    return SavedCard(
        id=row["id"],
        user_id=row["user_id"],
        provider=row["provider"],
        card_id=row["card_id"],
        card_name=row["card_name"],
        created_at=when(row["created_at"]),  # type: ignore[arg-type]
    )


def takings(
    paid: Iterable[Sequence[Any]], refunded: Iterable[Sequence[Any]]
) -> tuple[Takings, ...]:
    """Figures' takings from the rows of its two queries: (currency, provider, orders, paid)
    and (currency, provider, refunded)."""
    found: dict[tuple[str, str], list[int]] = {}
    for currency, provider, orders, amount in paid:
        found.setdefault((currency, provider), [0, 0, 0])[:2] = [int(orders), int(amount)]
    for currency, provider, amount in refunded:
        found.setdefault((currency, provider), [0, 0, 0])[2] = int(amount)
    return tuple(
        Takings(provider, n, Money(p, currency), Money(r, currency))
        for (currency, provider), (n, p, r) in sorted(found.items())
    )


def payment_json(data: Mapping[str, str] | None) -> str:
    return json.dumps(dict(data or {}), sort_keys=True)
