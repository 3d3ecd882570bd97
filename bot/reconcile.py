"""The reconcile sweep: re-asks providers about orders still awaiting payment, replays stored
events, forgets those processed long ago, finishes refunds cut off by a crash, closes checkouts
that never finished, queues the daily report to the merchant chat once its time has come and,
less often, compares in-chat providers' own ledgers (Stars) with what we stored.

Covers every lost signal: a customer who never came back, a callback that never arrived, a
provider that was down when the customer returned, a crash between "stored" and "confirmed".
Each order is re-checked on a growing interval (CheckSchedule) and expires after its deadline.
A sweep claims each order before asking about it, so replicas sharing a database do not ask a
provider twice about one order; a claim left by a replica that died runs out after CLAIM_FOR.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.core import SWEEP, CheckoutService

log = logging.getLogger("bot.reconcile")

CLAIM_FOR = timedelta(minutes=2)
ONE_DAY = timedelta(days=1)
UTC_ZONE = ZoneInfo("UTC")


class Reconciler:
    def __init__(
        self,
        checkout: CheckoutService,
        *,
        every: float = 5.0,
        batch: int = 100,
        parallel: int = 8,
        ledger_every: float = 600.0,
        ledger_window: timedelta = timedelta(hours=48),
        report_at: time | None = None,
        zone: ZoneInfo = UTC_ZONE,
    ) -> None:
        self.checkout = checkout
        self.every = every
        self.batch = batch
        self._parallel = asyncio.Semaphore(parallel)
        self.ledger_every = timedelta(seconds=ledger_every)
        self.ledger_window = ledger_window
        self._ledger_due: datetime | None = None  # the first sweep compares the ledgers
        self.report_at = report_at  # DAILY_REPORT_AT, in `zone` (TIMEZONE)
        self.zone = zone
        self._reported: date | None = None  # the last day this process saw queued

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("sweep failed; next one in %ss", self.every)
            await asyncio.sleep(self.every)

    async def _isolated(self, job: Callable[..., Awaitable[object]], now: datetime) -> None:
        """One job of the sweep; its failure is logged and the other jobs still run."""
        try:
            await job(now=now)
        except Exception as exc:
            log.error("sweep job %s failed: %s: %s", job.__name__, type(exc).__name__, exc)

    async def _ledgers(self, now: datetime) -> None:
        await self.checkout.reconcile_ledgers(now=now, window=self.ledger_window)

    async def _daily_report(self, now: datetime) -> None:
        """Yesterday's report, queued once its time has come today; the database keeps it to
        one per day across replicas and restarts, and this process stops asking once it saw
        the day queued."""
        if self.report_at is None or now.astimezone(self.zone).date() - ONE_DAY == self._reported:
            return
        day = await self.checkout.queue_daily_report(now, self.zone, self.report_at)
        self._reported = day or self._reported

    async def run_once(self, now: datetime | None = None) -> int:
        """One pass: replay stored events, then check every order that is due. Returns how
        many orders were checked."""
        now = now or self.checkout.clock()
        for job in (
            self.checkout.replay_inbound,
            self.checkout.close_stale,
            self.checkout.prune_inbox,
        ):
            await self._isolated(job, now)
        await self._isolated(self.checkout.finish_refunds, now)
        await self._isolated(self._daily_report, now)
        if self._ledger_due is None or now >= self._ledger_due:
            self._ledger_due = now + self.ledger_every
            await self._isolated(self._ledgers, now)
        due = await self.checkout.storage.due_for_check(now, self.batch)

        async def check(order_id: int) -> bool:
            async with self._parallel:
                if not await self.checkout.storage.claim_check(order_id, now, now + CLAIM_FOR):
                    return False  # another replica's sweep has it
                await self.checkout.confirm(order_id, actor=SWEEP, now=now)
                return True

        results = await asyncio.gather(*(check(o.id) for o in due), return_exceptions=True)
        for order, result in zip(due, results, strict=True):
            if isinstance(result, Exception):
                log.error("sweep of order %s failed: %r", order.id, result)
        return sum(result is True for result in results)
