"""What the staff read about the shop's money: figures for /stats, /today and the daily report,
paid amounts per day for the chart, and the orders an export streams. Every number comes from
storage's one `Figures` query, so the three never disagree over the same window.

Days are the merchant's (TIMEZONE): the caller passes the zone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.core.context import CoreContext
from bot.core.outbox import OutboxKind
from money import Money
from storage.base import Figures, NewOutbox, Order

EXPORT_BATCH = 500  # orders read at a time: what an export of any size holds in memory


def day_window(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """A local day as a UTC window [its midnight, the next midnight): 23 or 25 hours long on
    the days the clocks change."""
    since = datetime.combine(day, time(), tzinfo=zone)
    until = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
    return since.astimezone(UTC), until.astimezone(UTC)


def daily_report_key(day: date) -> str:
    """The report's outbox key: unique per day (storage holds it so for rows of no order)."""
    return f"{OutboxKind.MERCHANT_DAILY_REPORT.value}:{day.isoformat()}"


@dataclass(frozen=True, slots=True)
class PaidPerDay:
    """Paid amounts per local day and currency, every day of the window present (zero when
    nothing was paid), oldest first."""

    days: tuple[date, ...]
    amounts: Mapping[str, tuple[Money, ...]]  # per currency, one per day, currencies sorted


class Reporting(CoreContext):
    async def figures_today(self, zone: ZoneInfo) -> tuple[date, Figures]:
        """Today in the merchant's zone, from its midnight until now."""
        now = self.clock()
        today = now.astimezone(zone).date()
        since, _ = day_window(today, zone)
        return today, await self.storage.figures(since, now)

    async def figures_of_day(self, day: date, zone: ZoneInfo) -> Figures:
        return await self.storage.figures(*day_window(day, zone))

    async def paid_per_day(self, days: int, zone: ZoneInfo) -> PaidPerDay:
        """The last `days` local days, today included."""
        now = self.clock()
        today = now.astimezone(zone).date()
        first = today - timedelta(days=days - 1)
        since, _ = day_window(first, zone)
        every = tuple(first + timedelta(days=n) for n in range(days))
        sums: dict[str, dict[date, int]] = {}
        for slot, paid in await self.storage.paid_slots(since, now):
            per_day = sums.setdefault(paid.currency, {})
            day = slot.astimezone(zone).date()
            per_day[day] = per_day.get(day, 0) + paid.amount
        amounts = {
            currency: tuple(Money(sums[currency].get(d, 0), currency) for d in every)
            for currency in sorted(sums)
        }
        return PaidPerDay(every, amounts)

    def export_orders(self, days: int) -> AsyncIterator[list[Order]]:
        """The orders created in the last `days` days, oldest first, a batch at a time."""
        return self.storage.export_orders(self.clock() - timedelta(days=days), batch=EXPORT_BATCH)

    async def queue_daily_report(self, now: datetime, zone: ZoneInfo, at: time) -> date | None:
        """Yesterday's report to the merchant chat, once `at` has come today (local): queued
        once per day whichever replica asks and however often it restarted. Returns the day
        reported on once it is queued (by this call or before), None before the time."""
        if self.merchant_chat_id is None:
            return None
        local = now.astimezone(zone)
        if local.time().replace(tzinfo=None) < at.replace(tzinfo=None):
            return None
        day = local.date() - timedelta(days=1)
        row = NewOutbox(
            daily_report_key(day),
            self.merchant_chat_id,
            {"day": day.isoformat(), "zone": zone.key},
        )
        if await self.storage.enqueue(None, row):
            self._on_outbox()
        return day

    async def daily_report(self, payload: Mapping[str, object]) -> tuple[date, Figures]:
        """The figures of a queued report's day (what the notifier renders)."""
        day = date.fromisoformat(str(payload["day"]))
        return day, await self.figures_of_day(day, ZoneInfo(str(payload["zone"])))
