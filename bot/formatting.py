"""Money and dates for people, per locale, through Babel: never by hand."""

from __future__ import annotations

from datetime import datetime

from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal

from money import Money

STARS = "⭐"


def format_money(money: Money, locale: str) -> str:
    """'₺150,00' in tr, '1 234,50 ₽' in ru; Telegram Stars as '50 ⭐' (Babel has no XTR)."""
    if money.currency == "XTR":
        return f"{format_decimal(money.to_decimal(), locale=locale)} {STARS}"
    return format_currency(money.to_decimal(), money.currency, locale=locale)


def format_when(moment: datetime | None, locale: str) -> str:
    if moment is None:
        return "-"
    return format_datetime(moment, "short", tzinfo=moment.tzinfo, locale=locale)
