"""Group commit: writes that arrive while one batch is being written wait for the next, and
that whole batch is one statement in one transaction.

Under a burst of provider callbacks each one's own transaction queued behind the others' (one
writer at a time on SQLite, a pooled connection each on PostgreSQL); now a burst costs one
commit per batch, and a lone write still goes at once (no timer: it waits only for the batch in
flight). PostgreSQL reads the burst's order heads the same way: one round trip, not one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
# an inbox row as both backends write it: provider, event key, order id, body, received at,
# processed at (None: to be confirmed)
InboundRow = tuple[str, str, int | None, bytes, str | datetime, str | datetime | None]

LIMIT = 500  # rows a batch: SQLite takes 32,766 parameters a statement, these take 6 a row


class Batcher(Generic[Item, Result]):
    """Hands each caller the result of its own item, written together with whatever else
    was submitted meanwhile; an error fails the whole batch, so every caller hears of it."""

    def __init__(
        self, write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]], limit: int = LIMIT
    ) -> None:
        self._write = write
        self._limit = limit
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        # a caller that gives up (its request cancelled) cancels its own future only: its item
        # stays in the batch and is written all the same (the writer passes over a future that
        # is done), and the provider's retry finds it stored
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._limit]
                del self._pending[: self._limit]
                try:
                    results = await self._write([item for item, _ in batch])
                except Exception as exc:  # handed to every caller of the batch
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        except asyncio.CancelledError:  # shutting down: nobody waits for ever
            for _, future in batch + self._pending:
                if not future.done():
                    future.cancel()
            self._pending.clear()
            raise
        finally:
            self._writer = None

    async def close(self) -> None:
        """Wait for the batch in flight (storage closes after it)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


def new_event_ids(
    rows: Sequence[InboundRow], stored: dict[tuple[str, str], int]
) -> list[int | None]:
    """Each row's new event id, or None for one stored before (or twice in this batch: the
    first of the two is the new one)."""
    return [stored.pop((provider, key), None) for provider, key, *_ in rows]
