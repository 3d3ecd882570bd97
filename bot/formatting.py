"""Money and dates for people, per locale, through Babel: never by hand."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal

from money import Money

STARS = "⭐"


def format_money(money: Money, locale: str) -> str:
    """'₺150,00' in tr, '1 234,50 ₽' in ru; Telegram Stars as '50 ⭐' (Babel has no XTR)."""
    if money.currency == "XTR":
        return f"{format_decimal(money.to_decimal(), locale=locale)} {STARS}"
    return format_currency(money.to_decimal(), money.currency, locale=locale)


def format_when(
    moment: datetime | None, locale: str, zone: tzinfo | None = None, *, named: bool = True
) -> str:
    """'02.12.2026, 09:30' in ru; with the merchant's `zone`, the moment in that zone and the
    zone named: '02.12.2026, 09:30 (Asia/Ashgabat)', so nobody wonders whose clock it is
    (`named=False` where a list names it once in its title)."""
    if moment is None:
        return "-"
    if zone is None:
        return format_datetime(moment, "short", tzinfo=moment.tzinfo, locale=locale)
    text = format_datetime(in_zone(moment, zone), "short", tzinfo=zone, locale=locale)
    return f"{text} ({zone_name(zone)})" if named else text


def in_zone(moment: datetime, zone: tzinfo) -> datetime:
    """The moment on the merchant's clock (a naive one is UTC, as storage writes it)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(zone)


def zone_name(zone: tzinfo) -> str:
    """'Asia/Ashgabat': the IANA name the merchant set, not an abbreviation like '+05'."""
    return zone.key if isinstance(zone, ZoneInfo) else str(zone)
