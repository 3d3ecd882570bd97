"""Money and dates for people, per locale, through Babel: never by hand."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal, get_currency_symbol

from money import Money

STARS = "⭐"


# Where each currency is at home: its own sign ("₺", "₽") is shown in every language, placed
# the reader's way ("₺150.00" in en, "150,00 ₺" in ru), so one amount reads one way everywhere.
HOME = {"TRY": "tr_TR", "RUB": "ru_RU", "KZT": "kk_KZ", "MNT": "mn_MN", "TMT": "tk_TM"}
WHEN = "dd.MM.yyyy, HH:mm"  # one style in every language: day first, 24 hours, four-digit year


def format_money(money: Money, locale: str) -> str:
    """'₺150,00' in tr, '₺150.00' in en, '1 234,50 ₽' in ru; Telegram Stars as '50 ⭐' (Babel
    has no XTR). The sign is the currency's own (`HOME`), the pattern the reader's."""
    if money.currency == "XTR":
        return f"{format_decimal(money.to_decimal(), locale=locale)} {STARS}"
    home = HOME.get(money.currency)
    if home is None:
        return format_currency(money.to_decimal(), money.currency, locale=locale)
    sign = get_currency_symbol(money.currency, home).replace("'", "")
    pattern = Locale.parse(locale).currency_formats["standard"].pattern
    shown = pattern.replace("¤", f"'{sign}'")
    return format_currency(money.to_decimal(), money.currency, format=shown, locale=locale)


def format_when(moment: datetime | None, zone: tzinfo, *, named: bool = True) -> str:
    """Every time the bot shows, customer or staff: '02.12.2026, 09:30 (Asia/Ashgabat)', on the
    merchant's clock with the zone named, so nobody wonders whose clock it is (`named=False`
    where a list names it once in its title)."""
    if moment is None:
        return "-"
    text = format_datetime(in_zone(moment, zone), WHEN, tzinfo=zone)
    return f"{text} ({zone_name(zone)})" if named else text


def in_zone(moment: datetime, zone: tzinfo) -> datetime:
    """The moment on the merchant's clock (a naive one is UTC, as storage writes it)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(zone)


def zone_name(zone: tzinfo) -> str:
    """'Asia/Ashgabat': the IANA name the merchant set, not an abbreviation like '+05'."""
    return zone.key if isinstance(zone, ZoneInfo) else str(zone)
