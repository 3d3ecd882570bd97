"""The staff's reports (admins and support, IsStaff): /stats, /today, the chart and /export.
Every figure comes from one core query, so /stats, /today and the daily report agree."""

from __future__ import annotations

import tempfile
from contextlib import suppress
from datetime import datetime

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, CallbackQuery, FSInputFile, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from bot import report_texts, texts
from bot.chart import chart_png
from bot.config import Settings
from bot.core import CheckoutService
from bot.export import write_csv
from bot.handlers import numbers
from bot.handlers.roles import IsStaff
from bot.keyboards import StatsCb, stats_keyboard

DEFAULT_DAYS = 30
CHART_MAX_DAYS = 366  # a bar per day stays readable up to a year


def stats_args(args: str | None) -> tuple[int, bool] | None:
    """'/stats', '/stats 7', '/stats 30 chart' or '/stats chart' -> (days, chart); None for
    anything else."""
    words = (args or "").split()
    chart = bool(words) and words[-1].casefold() == "chart"
    if chart:
        words.pop()
    if not words:
        return DEFAULT_DAYS, chart
    days = numbers.days(words[0]) if len(words) == 1 else None
    if days is None or (chart and days > CHART_MAX_DAYS):
        return None
    return days, chart


async def stats(
    message: Message, command: CommandObject, checkout: CheckoutService, settings: Settings
) -> None:
    parsed = stats_args(command.args)
    if parsed is None:
        await message.answer(
            _(
                "Usage: /stats [days] [chart], days from 1 to {max}; a chart covers at most "
                "{chart_max} days. For example: /stats 7 or /stats 30 chart"
            ).format(max=numbers.MAX_DAYS, chart_max=CHART_MAX_DAYS)
        )
        return
    days, chart = parsed
    figures = await checkout.figures(days)
    title = report_texts.stats_title(days)
    names = report_texts.provider_names(checkout)
    markup = stats_keyboard(days) if days <= CHART_MAX_DAYS else None
    await message.answer(report_texts.figures_text(title, figures, names), reply_markup=markup)
    if chart:
        await send_chart(message, days, checkout, settings)


async def today(message: Message, checkout: CheckoutService, settings: Settings) -> None:
    """Today in the merchant's zone, from its midnight: in the merchant chat and, for the
    staff, in private."""
    day, figures = await checkout.figures_today(settings.zone)
    title = report_texts.today_title(day, settings.timezone)
    names = report_texts.provider_names(checkout)
    await message.answer(report_texts.figures_text(title, figures, names))


async def chart_pressed(
    query: CallbackQuery, callback_data: StatsCb, checkout: CheckoutService, settings: Settings
) -> None:
    days = callback_data.days
    if not 1 <= days <= CHART_MAX_DAYS or not isinstance(query.message, Message):
        await query.answer(_("This button is out of date. Please use /catalog or /orders."))
        return
    await query.answer()
    await send_chart(query.message, days, checkout, settings)


async def send_chart(
    message: Message, days: int, checkout: CheckoutService, settings: Settings
) -> None:
    per_day = await checkout.paid_per_day(days, settings.zone)
    if not per_day.amounts:
        await message.answer(
            ngettext(
                "Nothing was paid in the last {days} day: no chart to draw.",
                "Nothing was paid in the last {days} days: no chart to draw.",
                days,
            ).format(days=days)
        )
        return
    title = ngettext(
        "Paid per day, the last {days} day ({zone})",
        "Paid per day, the last {days} days ({zone})",
        days,
    ).format(days=days, zone=settings.timezone)
    png = await chart_png(per_day, title)
    await message.answer_photo(
        BufferedInputFile(png, f"paid-{days}d.png"), caption=texts.escape(title)
    )


async def export(
    message: Message,
    command: CommandObject,
    checkout: CheckoutService,
    settings: Settings,
    bot: Bot,
) -> None:
    """The orders of the last days as a CSV document, streamed through a temporary file (gone
    when it is sent, or when anything fails); a progress message is edited while it is
    written."""
    word = (command.args or "").strip()
    days = numbers.days(word) if word else DEFAULT_DAYS
    if days is None:
        await message.answer(
            _("Usage: /export [days], days from 1 to {max}. For example: /export 7").format(
                max=numbers.MAX_DAYS
            )
        )
        return
    progress = await message.answer(
        ngettext(
            "Exporting the orders of the last {days} day…",
            "Exporting the orders of the last {days} days…",
            days,
        ).format(days=days)
    )

    async def report(count: int) -> None:
        with suppress(TelegramBadRequest):  # a message deleted meanwhile
            await progress.edit_text(
                ngettext(
                    "Exporting the orders of the last {days} day… {count} so far",
                    "Exporting the orders of the last {days} days… {count} so far",
                    days,
                ).format(days=days, count=count)
            )

    # utf-8-sig: spreadsheets then read Cyrillic and Turkish letters right
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8-sig", newline="", prefix="orders-", suffix=".csv"
    ) as out:
        count = await write_csv(
            checkout.export_orders(days),
            out,
            settings.zone,
            report,
            semicolons=settings.csv_semicolons,
        )
        out.flush()
        if not count:
            await progress.edit_text(
                ngettext(
                    "No orders in the last {days} day.", "No orders in the last {days} days.", days
                ).format(days=days)
            )
            return
        stamp = datetime.now(settings.zone).strftime("%Y-%m-%d")
        await bot.send_document(
            message.chat.id,
            FSInputFile(out.name, filename=f"orders-{stamp}-{days}d.csv"),
            caption=ngettext(
                "Orders of the last {days} day: {count}",
                "Orders of the last {days} days: {count}",
                days,
            ).format(days=days, count=count),
        )
    with suppress(TelegramBadRequest):
        await progress.delete()


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(IsStaff())
    router.callback_query.filter(IsStaff())
    router.message.register(stats, Command("stats"))
    router.message.register(today, Command("today"))
    router.message.register(export, Command("export"))
    router.callback_query.register(chart_pressed, StatsCb.filter())
    return router
