"""Orders as a CSV file for a spreadsheet, written as they stream from storage: one batch in
memory at a time, however many orders there are.

One row per order. Amounts are decimal strings in major units with the currency in a column of
its own; times are the merchant's (TIMEZONE), with their UTC offset. States and fulfilment stay
the stored words (a spreadsheet filters on them), headers are English for the same reason.
A free-text cell (names, address, comment, tracking note, item titles) that a spreadsheet
would read as a formula (= + - @, a tab or a carriage return first) gets a leading quote, so an
export never runs what a customer typed. The phone is left as it is: it was checked to be '+'
and digits when given, and a quote would spoil every one of them.

`semicolons`: ';' between cells and a decimal comma in amounts, as Excel reads a CSV where
the comma is the decimal mark (Turkish, Russian, Kazakh, Mongolian, Turkmen settings).
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from bot.core import Money, Order

COLUMNS = (
    "order_id",
    "created_at",
    "paid_at",
    "state",
    "fulfilment",
    "tracking",
    "provider",
    "provider_payment_id",
    "currency",
    "total",
    "paid",
    "refunded",
    "items",
    "user_id",
    "buyer_name",
    "buyer_username",
    "delivery_name",
    "delivery_phone",
    "delivery_address",
    "delivery_comment",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PROGRESS_EVERY = 5000  # rows between two progress reports


def safe(cell: str) -> str:
    """A cell no spreadsheet runs as a formula (OWASP's advice on CSV injection)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def amount(money: Money | None, comma: bool = False) -> str:
    text = "" if money is None else str(money.to_decimal())
    return text.replace(".", ",") if comma else text


def when(moment: datetime | None, zone: ZoneInfo) -> str:
    return "" if moment is None else moment.astimezone(zone).isoformat(sep=" ", timespec="seconds")


def items(order: Order, comma: bool = False) -> str:
    """'Turkish coffee x1 @ 150.00; Cezve x2 @ 85.00' in the order's currency."""
    return "; ".join(
        f"{i.title} x{i.quantity} @ {amount(Money(i.unit_amount, order.currency), comma)}"
        for i in order.items
    )


def row(order: Order, zone: ZoneInfo, comma: bool = False) -> list[str]:
    """One order's cells; `comma`: amounts with a decimal comma."""
    delivery = order.delivery
    return [
        str(order.id),
        when(order.created_at, zone),
        when(order.paid_at, zone),
        order.state.value,
        order.fulfilment.value,
        safe(order.tracking),
        order.provider,
        order.provider_payment_id or "",
        order.currency,
        amount(order.total, comma),
        amount((order.paid or order.total) if order.paid_at else None, comma),
        amount(order.refunded_so_far, comma),
        safe(items(order, comma)),
        str(order.user_id),
        safe(order.buyer.name),
        safe(order.buyer.username),
        safe(delivery.name) if delivery else "",
        delivery.phone if delivery else "",  # '+' and digits (bot/core/details.py)
        safe(delivery.address) if delivery else "",
        safe(delivery.comment) if delivery else "",
    ]


async def write_csv(
    batches: AsyncIterator[list[Order]],
    out: TextIO,
    zone: ZoneInfo,
    progress: Callable[[int], Awaitable[None]] | None = None,
    *,
    semicolons: bool = False,
) -> int:
    """Write the header and every order of `batches`; `progress` hears the count every
    PROGRESS_EVERY rows. Returns how many orders were written."""
    writer = csv.writer(out, delimiter=";" if semicolons else ",")
    writer.writerow(COLUMNS)
    written = 0
    async for batch in batches:
        writer.writerows(row(order, zone, semicolons) for order in batch)
        before, written = written, written + len(batch)
        if progress is not None and written // PROGRESS_EVERY > before // PROGRESS_EVERY:
            await progress(written)
    return written
