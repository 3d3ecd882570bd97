"""Figures as the staff read them, in the current gettext locale: /stats, /today and the daily
report show one layout, so the same window reads the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from babel.dates import format_date

from bot import texts
from bot.core import CheckoutService, Figures, OrderState, Takings


def provider_names(checkout: CheckoutService) -> Callable[[str], str]:
    """A provider's name as the chat shows it, in the current language."""
    return lambda name: texts.provider_name(checkout.display_name(name))


def day_name(day: date) -> str:
    return format_date(day, "long", locale=texts.locale())


def stats_title(days: int) -> str:
    return ngettext("Orders of the last {days} day", "Orders of the last {days} days", days).format(
        days=days
    )


def today_title(day: date, zone: str) -> str:
    return _("Today, {day} ({zone})").format(day=day_name(day), zone=texts.escape(zone))


def daily_title(day: date, zone: str) -> str:
    return _("📊 The day's report: {day} ({zone})").format(
        day=day_name(day), zone=texts.escape(zone)
    )


def takings_line(takings: Takings) -> str:
    return _("paid: {paid} (orders: {count}) · refunded: {refunded} · net: {net}").format(
        paid=texts.money(takings.paid),
        count=takings.orders,
        refunded=texts.money(takings.refunded),
        net=texts.money(takings.net),
    )


def figures_text(title: str, figures: Figures, provider_name: Callable[[str], str]) -> str:
    """Orders created in the window by state, then per currency its takings over every
    provider and each provider's; `provider_name` shows a provider as the chat calls it."""
    rows = [f"<b>{title}</b>"]
    counts = [
        f"{texts.state_name(state)}: {figures.orders_by_state[state]}"
        for state in OrderState
        if figures.orders_by_state.get(state)
    ]
    if counts:
        created = sum(figures.orders_by_state.values())
        rows.append(
            _("Orders created: {count} ({counts})").format(count=created, counts=" · ".join(counts))
        )
    else:
        rows.append(_("No orders were created in this period."))
    for currency in figures.currencies():
        rows.append(f"<b>{currency}</b>: {takings_line(figures.total(currency))}")
        rows += [
            f"  • {texts.escape(provider_name(t.provider))}: {takings_line(t)}"
            for t in figures.by_provider(currency)
        ]
    if not figures.takings:
        rows.append(_("No orders were paid or refunded in this period."))
    if figures.undelivered_messages:
        rows.append(
            _("Messages Telegram refused: {count}").format(count=figures.undelivered_messages)
        )
    return "\n".join(rows)
