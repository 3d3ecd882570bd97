"""SQLite storage through aiosqlite: one file, WAL, numbered SQL migrations applied at open.

One connection serves the event loop; an asyncio.Lock keeps write transactions
(`BEGIN IMMEDIATE`) from interleaving, which is what makes compare-and-set transitions and the
"state + audit + outbox in one transaction" rule hold under concurrency.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from money import Money
from storage.base import (
    AuditEntry,
    Delivery,
    DuplicatePayment,
    Figures,
    Fulfilment,
    IllegalTransition,
    InboundEvent,
    NewOrder,
    NewOutbox,
    Order,
    OrderHead,
    OrderItem,
    OrderQuery,
    OrderState,
    OutboxMessage,
    Refund,
    RefundEnd,
    SavedCard,
    UnexpectedPayment,
    check_step,
    checked_states,
    search_text,
)
from storage.batch import Batcher, InboundRow, new_event_ids
from storage.errors import StorageUnavailable
from storage.migrations import migrations, statements
from storage.rows import (
    HEAD_COLUMNS,
    ITEMS_SQLITE,
    ORDER_COLUMNS,
    delivery_values,
    fulfilment_detail,
    items_of,
    payment_json,
    query_where,
    takings,
    to_audit,
    to_card,
    to_delivery,
    to_head,
    to_inbound,
    to_item,
    to_order,
    to_outbox,
    to_refund,
    to_unexpected,
)


def ts(moment: datetime | None) -> str | None:
    """Fixed-width UTC text, so comparisons in SQL are plain string comparisons."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime: storage takes timezone-aware UTC times")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def now_ts() -> str:
    return ts(datetime.now(UTC))  # type: ignore[return-value]


T = TypeVar("T")
AUDIT = (
    "INSERT INTO audit (order_id, from_state, to_state, actor, detail, created_at) "
    "VALUES (?,?,?,?,?,?)"
)
ENQUEUE = (
    "INSERT INTO outbox (order_id, kind, chat_id, payload, next_attempt_at, created_at) "
    "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING"
)


def audit_row(
    order_id: int,
    before: OrderState | None,
    after: OrderState,
    actor: str,
    detail: str,
    stamp: str,
) -> tuple[Any, ...]:
    return (order_id, before.value if before else None, after.value, actor, detail, stamp)


def outbox_row(order_id: int | None, message: NewOutbox, stamp: str) -> tuple[Any, ...]:
    payload = json.dumps(dict(message.payload))
    return (order_id, message.kind, message.chat_id, payload, stamp, stamp)


class WriteLock:
    """One write transaction at a time, first come first served, except that an urgent one
    (marking an outbox row sent) goes before every writer still waiting."""

    def __init__(self) -> None:
        self._held = False
        self._urgent_waiting = 0
        self._free = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        async with self._free:
            if urgent:
                self._urgent_waiting += 1
                try:
                    await self._free.wait_for(lambda: not self._held)
                finally:
                    self._urgent_waiting -= 1
            else:
                await self._free.wait_for(lambda: not self._held and not self._urgent_waiting)
            self._held = True
        try:
            yield
        finally:
            async with self._free:
                self._held = False
                self._free.notify_all()


def _folder_exists(path: str) -> None:
    """A typo in DATABASE_URL must not start a new, empty database: the folder must be there."""
    folder = Path(path).absolute().parent
    if not folder.is_dir():
        raise StorageUnavailable(
            f"directory {folder} does not exist (create it, or correct the path)"
        )


def _reader(path: str) -> sqlite3.Connection:
    """A second connection for point reads: in WAL a reader neither waits for the writer nor
    holds it up, and sees every transaction committed before its statement begins."""
    reader = sqlite3.connect(path, isolation_level=None)
    reader.row_factory = sqlite3.Row
    reader.execute("PRAGMA query_only=ON")
    reader.execute("PRAGMA busy_timeout=0")  # never wait on the loop: the thread will
    return reader


class SQLiteStorage:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # point reads on the event loop
        self._lock = WriteLock()
        self._inbox = Batcher(self._insert_inbound)
        self._processed = Batcher(self._mark_processed)

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        if self.path != ":memory:":
            _folder_exists(self.path)
        try:
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"cannot open the SQLite file {self.path}: {exc}") from None
        db.row_factory = aiosqlite.Row
        self._db = db
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=5000",
        ):
            await db.execute(f"PRAGMA {pragma}")
        await self._migrate()
        if self.path != ":memory:":
            self._reader = _reader(self.path)

    async def _migrate(self) -> None:
        async with self._tx() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {
                row[0] for row in await db.execute_fetchall("SELECT version FROM schema_migrations")
            }
            for version, sql in migrations("sqlite"):
                if version in done:
                    continue
                for statement in statements(sql):
                    await db.execute(statement)
                await db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, now_ts()))

    async def close(self) -> None:
        await self._inbox.close()
        await self._processed.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        try:
            await self._conn.execute_fetchall("SELECT 1")
        except (sqlite3.Error, StorageUnavailable):
            return False
        return True

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageUnavailable("storage is not open")
        return self._db

    @asynccontextmanager
    async def _tx(self, *, urgent: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock.hold(urgent=urgent):
            db = self._conn
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def _write(self, sql: str, params: Sequence[Any] = (), *, urgent: bool = False) -> int:
        """A write of one statement: a transaction of its own in autocommit, one trip to the
        database thread instead of three (BEGIN, the statement, COMMIT). The rows it changed."""
        async with self._lock.hold(urgent=urgent):
            cursor = await self._conn.execute(sql, params)
            return cursor.rowcount

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """A whole transaction in one trip to the database thread: `work` runs there, between
        BEGIN IMMEDIATE and COMMIT, with the plain sqlite3 connection. Each statement awaited
        on its own would be a trip, and under load every trip waits for the loop to give up
        the GIL while the write lock is held."""

        def transaction(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        conn = self._conn
        async with self._lock.hold():
            # aiosqlite's own queue to its thread (the function it runs every statement with)
            return await conn._execute(transaction, conn._conn)

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def _point(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        """A read of a row or two by key, on the event loop: a few pages in the cache cost
        less than the trip to the database thread, whose every leg waits for the GIL while
        the loop is busy. Anything the reader cannot do at once goes by the thread."""
        if self._reader is not None:
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.OperationalError:  # busy (a checkpoint) or locked: not on the loop
                pass
        return await self._rows(sql, params)

    # --- orders -------------------------------------------------------------------------

    async def create_order(self, new: NewOrder) -> Order:
        stamp = now_ts()
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT INTO orders (user_id, chat_id, provider, amount, currency, state, token, "
                "locale, description, created_at, updated_at, buyer_name, buyer_username, "
                "delivery_name, delivery_phone, delivery_address, delivery_comment, search_text) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    new.user_id,
                    new.chat_id,
                    new.provider,
                    new.total.amount,
                    new.total.currency,
                    OrderState.CREATED.value,
                    new.token,
                    new.locale,
                    new.description,
                    stamp,
                    stamp,
                    new.buyer.name,
                    new.buyer.username,
                    *delivery_values(new.delivery),
                    search_text(new.buyer, new.delivery),
                ),
            )
            order_id = cursor.lastrowid
            await db.executemany(
                "INSERT INTO order_items VALUES (?,?,?,?,?,?)",
                [
                    (order_id, i, it.sku, it.title, it.quantity, it.unit_amount)
                    for i, it in enumerate(new.items)
                ],
            )
            await self._audit(db, order_id, None, OrderState.CREATED, "checkout", "", stamp)  # type: ignore[arg-type]
        return await self._must_get(order_id)  # type: ignore[arg-type]

    async def get_order(self, order_id: int) -> Order | None:
        return await self._one("WHERE id = ?", (order_id,))

    async def get_order_by_token(self, token: str) -> Order | None:
        return await self._one("WHERE token = ?", (token,))

    async def get_order_by_payment(self, provider: str, provider_payment_id: str) -> Order | None:
        return await self._one(
            "WHERE provider = ? AND provider_payment_id = ?", (provider, provider_payment_id)
        )

    async def get_order_head(self, order_id: int) -> OrderHead | None:
        return await self._head("WHERE id = ?", (order_id,))

    async def get_order_head_by_payment(
        self, provider: str, provider_payment_id: str
    ) -> OrderHead | None:
        return await self._head(
            "WHERE provider = ? AND provider_payment_id = ?", (provider, provider_payment_id)
        )

    async def _head(self, where: str, params: Sequence[Any]) -> OrderHead | None:
        rows = await self._point(f"SELECT {HEAD_COLUMNS} FROM orders {where}", params)
        return to_head(rows[0]) if rows else None

    async def orders_for_user(
        self, user_id: int, *, limit: int = 10, offset: int = 0
    ) -> list[Order]:
        rows = await self._rows(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ? "
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (user_id, limit, offset),
        )
        return await self._with_items(rows)

    async def search_orders(
        self, query: OrderQuery, *, limit: int = 10, offset: int = 0
    ) -> list[Order]:
        where, params = query_where(query, lambda: "?", ts)
        rows = await self._rows(
            f"SELECT {ORDER_COLUMNS} FROM orders {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return await self._with_items(rows)

    async def _one(self, where: str, params: Sequence[Any]) -> Order | None:
        rows = await self._point(
            f"SELECT {ORDER_COLUMNS}, {ITEMS_SQLITE} FROM orders {where}", params
        )
        return to_order(rows[0], items_of(rows[0]), parse_ts) if rows else None

    async def _must_get(self, order_id: int) -> Order:
        order = await self.get_order(order_id)
        if order is None:
            raise KeyError(order_id)
        return order

    async def _with_items(self, rows: list[aiosqlite.Row]) -> list[Order]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        marks = ",".join("?" * len(ids))
        items: dict[int, list[OrderItem]] = {i: [] for i in ids}
        for it in await self._rows(
            f"SELECT order_id, sku, title, quantity, unit_amount FROM order_items "
            f"WHERE order_id IN ({marks}) ORDER BY order_id, position",
            ids,
        ):
            items[it["order_id"]].append(to_item(it))
        return [to_order(row, tuple(items[row["id"]]), parse_ts) for row in rows]

    async def set_checkout(
        self,
        order_id: int,
        *,
        pay_url: str,
        provider_payment_id: str | None,
        payment_data: Mapping[str, str] | None = None,
        expires_at: datetime | None,
        next_check_at: datetime | None,
    ) -> Order:
        stamp = now_ts()
        try:
            async with self._tx() as db:
                cursor = await db.execute(
                    "UPDATE orders SET state = ?, pay_url = ?, provider_payment_id = ?, "
                    "payment_data = ?, expires_at = ?, "
                    "next_check_at = ?, updated_at = ? WHERE id = ? AND state = ?",
                    (
                        OrderState.AWAITING_PAYMENT.value,
                        pay_url,
                        provider_payment_id,
                        payment_json(payment_data),
                        ts(expires_at),
                        ts(next_check_at),
                        stamp,
                        order_id,
                        OrderState.CREATED.value,
                    ),
                )
                if cursor.rowcount != 1:
                    raise IllegalTransition(f"order {order_id} is not in state created")
                await self._audit(
                    db,
                    order_id,
                    OrderState.CREATED,
                    OrderState.AWAITING_PAYMENT,
                    "checkout",
                    "",
                    stamp,
                )
        except sqlite3.IntegrityError:
            raise DuplicatePayment(
                f"payment id already belongs to another order (order {order_id})"
            ) from None
        return await self._must_get(order_id)

    async def attach_payment(
        self, order_id: int, provider_payment_id: str, payment_data: Mapping[str, str]
    ) -> Order:
        try:
            async with self._tx() as db:
                rows = list(
                    await db.execute_fetchall(
                        "SELECT provider_payment_id FROM orders WHERE id = ?", (order_id,)
                    )
                )
                if not rows:
                    raise KeyError(order_id)
                current = rows[0][0]
                if current not in (None, provider_payment_id):
                    raise DuplicatePayment(f"order {order_id} already has another payment id")
                if current is None:
                    await db.execute(
                        "UPDATE orders SET provider_payment_id = ?, payment_data = ?, "
                        "updated_at = ? WHERE id = ?",
                        (provider_payment_id, payment_json(payment_data), now_ts(), order_id),
                    )
        except sqlite3.IntegrityError:
            raise DuplicatePayment("this payment id belongs to another order") from None
        return await self._must_get(order_id)

    async def update_payment(
        self, order_id: int, provider_payment_id: str, payment_data: Mapping[str, str]
    ) -> Order:
        try:
            async with self._tx() as db:
                await db.execute(
                    "UPDATE orders SET provider_payment_id = ?, payment_data = ?, updated_at = ? "
                    "WHERE id = ?",
                    (provider_payment_id, payment_json(payment_data), now_ts(), order_id),
                )
        except sqlite3.IntegrityError:
            raise DuplicatePayment("this payment id belongs to another order") from None
        return await self._must_get(order_id)

    async def transition(
        self,
        order_id: int,
        expected: Sequence[OrderState] | OrderState,
        target: OrderState,
        *,
        actor: str,
        detail: str = "",
        outbox: Sequence[NewOutbox] = (),
        paid: Money | None = None,
        refunded: Money | None = None,
        refund: RefundEnd | None = None,
    ) -> Order | None:
        states = checked_states(expected, target)
        stamp = now_ts()
        sets = ["state = ?", "updated_at = ?"]
        params: list[Any] = [target.value, stamp]
        if target is OrderState.PAID:
            sets.append("paid_at = ?")
            params.append(stamp)
        if paid is not None:
            sets.append("paid_amount = ?")
            params.append(paid.amount)
        if refunded is not None:
            sets.append("refunded_amount = ?")
            params.append(refunded.amount)
        if target is not OrderState.AWAITING_PAYMENT:
            sets.append("next_check_at = NULL")
        marks = ",".join("?" * len(states))

        def move(db: sqlite3.Connection) -> bool:
            row = db.execute(
                f"SELECT state FROM orders WHERE id = ? AND state IN ({marks})",
                (order_id, *[s.value for s in states]),
            ).fetchone()
            if row is None:
                return False
            db.execute(f"UPDATE orders SET {', '.join(sets)} WHERE id = ?", (*params, order_id))
            db.execute(AUDIT, audit_row(order_id, OrderState(row[0]), target, actor, detail, stamp))
            for message in outbox:
                db.execute(ENQUEUE, outbox_row(order_id, message, stamp))
            if refund is not None:
                db.execute(
                    "UPDATE refunds SET state = ?, provider_code = ?, updated_at = ? "
                    "WHERE id = ? AND state = 'pending'",
                    (refund.state, refund.provider_code, stamp, refund.refund_id),
                )
            return True

        if not await self._run(move):
            return None
        return await self._must_get(order_id)

    async def _audit(
        self,
        db: aiosqlite.Connection,
        order_id: int,
        before: OrderState | None,
        after: OrderState,
        actor: str,
        detail: str,
        stamp: str,
    ) -> None:
        await db.execute(AUDIT, audit_row(order_id, before, after, actor, detail, stamp))

    async def note(
        self, order_id: int, *, actor: str, detail: str, outbox: Sequence[NewOutbox] = ()
    ) -> Order | None:
        stamp = now_ts()
        async with self._tx() as db:
            rows = list(
                await db.execute_fetchall("SELECT state FROM orders WHERE id = ?", (order_id,))
            )
            if not rows:
                return None
            state = OrderState(rows[0][0])
            await self._audit(db, order_id, state, state, actor, detail[:500], stamp)
            for message in outbox:
                await self._enqueue(db, order_id, message, stamp)
        return await self._must_get(order_id)

    async def set_fulfilment(
        self,
        order_id: int,
        expected: Fulfilment,
        target: Fulfilment,
        *,
        actor: str,
        tracking: str | None = None,
        outbox: Sequence[NewOutbox] = (),
        states: Collection[OrderState] | None = None,
    ) -> Order | None:
        check_step(expected, target)
        wanted = [s.value for s in states] if states is not None else None
        stamp = now_ts()
        async with self._tx() as db:
            rows = list(
                await db.execute_fetchall(
                    "SELECT state FROM orders WHERE id = ? AND fulfilment = ?",
                    (order_id, expected.value),
                )
            )
            if not rows or (wanted is not None and rows[0][0] not in wanted):
                return None
            state = OrderState(rows[0][0])
            await db.execute(
                "UPDATE orders SET fulfilment = ?, tracking = COALESCE(?, tracking), "
                "updated_at = ? WHERE id = ?",
                (target.value, tracking, stamp, order_id),
            )
            detail = fulfilment_detail(expected, target, tracking)
            await self._audit(db, order_id, state, state, actor, detail[:500], stamp)
            for message in outbox:
                await self._enqueue(db, order_id, message, stamp)
        return await self._must_get(order_id)

    async def last_delivery(self, user_id: int) -> Delivery | None:
        rows = await self._rows(
            "SELECT delivery_name, delivery_phone, delivery_address, delivery_comment "
            "FROM orders WHERE user_id = ? AND delivery_address IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (user_id,),
        )
        return to_delivery(rows[0]) if rows else None

    async def schedule_check(
        self, order_id: int, next_check_at: datetime | None, attempts: int
    ) -> None:
        await self._write(
            "UPDATE orders SET next_check_at = ?, check_attempts = ? WHERE id = ?",
            (ts(next_check_at), attempts, order_id),
        )

    async def due_for_check(self, now: datetime, limit: int = 100) -> list[Order]:
        rows = await self._rows(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE state = ? AND next_check_at IS NOT NULL "
            "AND next_check_at <= ? ORDER BY next_check_at LIMIT ?",
            (OrderState.AWAITING_PAYMENT.value, ts(now), limit),
        )
        return await self._with_items(rows)

    async def paid_between(
        self, provider: str, since: datetime, until: datetime, limit: int = 1000
    ) -> list[Order]:
        rows = await self._rows(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE provider = ? AND paid_at >= ? "
            "AND paid_at < ? AND provider_payment_id IS NOT NULL ORDER BY paid_at LIMIT ?",
            (provider, ts(since), ts(until), limit),
        )
        return await self._with_items(rows)

    async def stale_created(self, before: datetime, limit: int = 100) -> list[Order]:
        rows = await self._rows(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE state = ? AND created_at < ? "
            "ORDER BY id LIMIT ?",
            (OrderState.CREATED.value, ts(before), limit),
        )
        return await self._with_items(rows)

    async def claim_check(self, order_id: int, now: datetime, until: datetime) -> bool:
        return (
            await self._write(
                "UPDATE orders SET next_check_at = ? WHERE id = ? AND state = ? "
                "AND next_check_at <= ?",
                (ts(until), order_id, OrderState.AWAITING_PAYMENT.value, ts(now)),
            )
            == 1
        )

    async def audit_trail(self, order_id: int) -> list[AuditEntry]:
        rows = await self._rows("SELECT * FROM audit WHERE order_id = ? ORDER BY id", (order_id,))
        return [to_audit(r, parse_ts) for r in rows]

    # --- inbound events -----------------------------------------------------------------

    async def record_inbound(
        self,
        provider: str,
        event_key: str,
        order_id: int | None,
        body: bytes,
        *,
        processed: bool = False,
    ) -> int | None:
        stamp = now_ts()
        row = (provider, event_key, order_id, body, stamp, stamp if processed else None)
        return await self._inbox.submit(row)

    async def _insert_inbound(self, rows: Sequence[InboundRow]) -> list[int | None]:
        """One statement for the batch, a transaction of its own (autocommit): one trip to
        the database thread however many callbacks arrived together."""
        values = ",".join(["(?,?,?,?,?,?)"] * len(rows))
        async with self._lock.hold():
            stored = await self._conn.execute_fetchall(
                "INSERT INTO inbound_events "
                "(provider, event_key, order_id, body, received_at, processed_at) "
                f"VALUES {values} ON CONFLICT (provider, event_key) DO NOTHING "
                "RETURNING id, provider, event_key",
                [value for row in rows for value in row],
            )
        return new_event_ids(rows, {(provider, key): id_ for id_, provider, key in stored})

    async def unprocessed_inbound(
        self, limit: int = 100, due_at: datetime | None = None, *, after: int = 0
    ) -> list[InboundEvent]:
        rows = await self._rows(
            "SELECT e.* FROM inbound_events e LEFT JOIN orders o ON o.id = e.order_id "
            "WHERE e.processed_at IS NULL AND e.id > ? AND (? IS NULL OR o.id IS NULL "
            "OR o.check_attempts = 0 OR o.next_check_at IS NULL OR o.next_check_at <= ?) "
            "ORDER BY e.id LIMIT ?",
            (after, ts(due_at), ts(due_at), limit),
        )
        return [to_inbound(r, parse_ts) for r in rows]

    async def mark_inbound_processed(self, event_id: int) -> None:
        await self._processed.submit(event_id)

    async def _mark_processed(self, event_ids: Sequence[int]) -> list[None]:
        marks = ",".join("?" * len(event_ids))
        async with self._lock.hold():
            await self._conn.execute(
                f"UPDATE inbound_events SET processed_at = ? WHERE id IN ({marks})",
                (now_ts(), *event_ids),
            )
        return [None] * len(event_ids)

    async def prune_inbound(self, before: datetime, limit: int = 500) -> int:
        return await self._write(
            "DELETE FROM inbound_events WHERE id IN (SELECT id FROM inbound_events "
            "WHERE processed_at IS NOT NULL AND received_at < ? ORDER BY received_at LIMIT ?)",
            (ts(before), limit),
        )

    async def inbound_for_order(self, order_id: int) -> list[InboundEvent]:
        rows = await self._rows(
            "SELECT * FROM inbound_events WHERE order_id = ? ORDER BY id", (order_id,)
        )
        return [to_inbound(r, parse_ts) for r in rows]

    # --- outbox -------------------------------------------------------------------------

    async def _enqueue(
        self, db: aiosqlite.Connection, order_id: int | None, message: NewOutbox, stamp: str
    ) -> bool:
        cursor = await db.execute(ENQUEUE, outbox_row(order_id, message, stamp))
        return cursor.rowcount == 1

    async def enqueue(self, order_id: int | None, message: NewOutbox) -> bool:
        async with self._tx() as db:
            return await self._enqueue(db, order_id, message, now_ts())

    async def due_outbox(
        self, now: datetime, limit: int = 50, busy: Collection[int] = ()
    ) -> list[OutboxMessage]:
        chats = [int(c) for c in busy]  # ints only: they become placeholders' values
        rows = await self._rows(
            "SELECT * FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL "
            f"AND next_attempt_at <= ? AND chat_id NOT IN ({','.join('?' * len(chats))}) "
            "ORDER BY id LIMIT ?",
            (ts(now), *chats, limit),
        )
        return [to_outbox(r, parse_ts) for r in rows]

    async def claim_outbox(self, message_id: int, now: datetime, until: datetime) -> bool:
        return (
            await self._write(
                "UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND sent_at IS NULL "
                "AND failed_at IS NULL AND next_attempt_at <= ?",
                (ts(until), message_id, ts(now)),
            )
            == 1
        )

    async def mark_sent(self, message_id: int) -> None:
        # ahead of every queued write: Telegram took the message, and until this commits a
        # crash would send it again
        await self._write(
            "UPDATE outbox SET sent_at = ? WHERE id = ?", (now_ts(), message_id), urgent=True
        )

    async def defer(
        self, message_id: int, until: datetime, error: str, *, attempt: bool = True
    ) -> None:
        await self._write(
            "UPDATE outbox SET attempts = attempts + ?, next_attempt_at = ?, last_error = ? "
            "WHERE id = ?",
            (int(attempt), ts(until), error[:500], message_id),
        )

    async def mark_failed(self, message_id: int, error: str) -> None:
        await self._write(
            "UPDATE outbox SET failed_at = ?, last_error = ? WHERE id = ?",
            (now_ts(), error[:500], message_id),
        )

    # --- refunds ------------------------------------------------------------------------

    async def create_refund(
        self, order_id: int, amount: Money, idempotency_key: str, actor: str
    ) -> tuple[Refund, bool]:
        stamp = now_ts()
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT INTO refunds (order_id, amount, currency, idempotency_key, state, actor, "
                "created_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (
                    order_id,
                    amount.amount,
                    amount.currency,
                    idempotency_key,
                    "pending",
                    actor,
                    stamp,
                    stamp,
                ),
            )
            created = cursor.rowcount == 1
        rows = await self._rows(
            "SELECT * FROM refunds WHERE idempotency_key = ?", (idempotency_key,)
        ) or await self._rows(  # the order's open refund took its place
            "SELECT * FROM refunds WHERE order_id = ? ORDER BY state = 'pending' DESC, id DESC "
            "LIMIT 1",
            (order_id,),
        )
        return to_refund(rows[0], parse_ts), created

    async def finish_refund(self, refund_id: int, state: str, provider_code: str = "") -> Refund:
        await self._write(
            "UPDATE refunds SET state = ?, provider_code = ?, updated_at = ? WHERE id = ?",
            (state, provider_code, now_ts(), refund_id),
        )
        return to_refund(
            (await self._rows("SELECT * FROM refunds WHERE id = ?", (refund_id,)))[0], parse_ts
        )

    async def refunds_for_order(self, order_id: int) -> list[Refund]:
        return [
            to_refund(r, parse_ts)
            for r in await self._rows(
                "SELECT * FROM refunds WHERE order_id = ? ORDER BY id", (order_id,)
            )
        ]

    async def unfinished_refunds(self, before: datetime, limit: int = 100) -> list[Refund]:
        rows = await self._rows(
            "SELECT * FROM refunds WHERE state = 'pending' AND updated_at < ? "
            "ORDER BY updated_at, id LIMIT ?",
            (ts(before), limit),
        )
        return [to_refund(r, parse_ts) for r in rows]

    async def claim_refund(self, refund_id: int, before: datetime, now: datetime) -> bool:
        return (
            await self._write(
                "UPDATE refunds SET updated_at = ? WHERE id = ? AND state = 'pending' "
                "AND updated_at < ?",
                (ts(now), refund_id, ts(before)),
            )
            == 1
        )

    # --- payments we did not expect --------------------------------------------------------

    async def record_unexpected(
        self,
        order_id: int,
        provider: str,
        payment_id: str,
        payment_data: Mapping[str, str],
        amount: Money | None,
        currency: str,
        reason: str,
    ) -> tuple[UnexpectedPayment, bool]:
        stamp = now_ts()
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT INTO unexpected_payments (order_id, provider, payment_id, payment_data, "
                "amount, currency, state, reason, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,'open',?,?,?) ON CONFLICT (provider, payment_id) DO NOTHING",
                (
                    order_id,
                    provider,
                    payment_id,
                    payment_json(payment_data),
                    amount.amount if amount else None,
                    currency,
                    reason[:500],
                    stamp,
                    stamp,
                ),
            )
            created = cursor.rowcount == 1
        rows = await self._rows(
            "SELECT * FROM unexpected_payments WHERE provider = ? AND payment_id = ?",
            (provider, payment_id),
        )
        return to_unexpected(rows[0], parse_ts), created

    async def get_unexpected(self, payment_row_id: int) -> UnexpectedPayment | None:
        rows = await self._rows("SELECT * FROM unexpected_payments WHERE id = ?", (payment_row_id,))
        return to_unexpected(rows[0], parse_ts) if rows else None

    async def find_unexpected(self, provider: str, payment_id: str) -> UnexpectedPayment | None:
        rows = await self._rows(
            "SELECT * FROM unexpected_payments WHERE provider = ? AND payment_id = ?",
            (provider, payment_id),
        )
        return to_unexpected(rows[0], parse_ts) if rows else None

    async def unexpected_for_order(self, order_id: int) -> list[UnexpectedPayment]:
        rows = await self._rows(
            "SELECT * FROM unexpected_payments WHERE order_id = ? ORDER BY id", (order_id,)
        )
        return [to_unexpected(row, parse_ts) for row in rows]

    async def move_unexpected(self, payment_row_id: int, expected: str, target: str) -> bool:
        return (
            await self._write(
                "UPDATE unexpected_payments SET state = ?, updated_at = ? "
                "WHERE id = ? AND state = ?",
                (target, now_ts(), payment_row_id, expected),
            )
            == 1
        )

    async def set_order_message(self, order_id: int, message_id: int) -> None:
        await self._write("UPDATE orders SET message_id = ? WHERE id = ?", (message_id, order_id))

    async def set_merchant_message(self, order_id: int, message_id: int) -> None:
        await self._write(
            "UPDATE orders SET merchant_message_id = ? WHERE id = ?", (message_id, order_id)
        )

    # --- saved cards and preferences ----------------------------------------------------

    async def save_card(
        self, user_id: int, provider: str, card_id: str, card_name: str
    ) -> SavedCard:
        await self._write(
            "INSERT INTO saved_cards (user_id, provider, card_id, card_name, created_at) "
            "VALUES (?,?,?,?,?) "
            "ON CONFLICT (user_id, provider, card_id) "
            "DO UPDATE SET card_name = excluded.card_name",
            (user_id, provider, card_id, card_name, now_ts()),
        )
        rows = await self._rows(
            "SELECT * FROM saved_cards WHERE user_id = ? AND provider = ? AND card_id = ?",
            (user_id, provider, card_id),
        )
        return to_card(rows[0], parse_ts)

    async def saved_cards(self, user_id: int, provider: str | None = None) -> list[SavedCard]:
        if provider is None:
            rows = await self._rows(
                "SELECT * FROM saved_cards WHERE user_id = ? ORDER BY id", (user_id,)
            )
        else:
            rows = await self._rows(
                "SELECT * FROM saved_cards WHERE user_id = ? AND provider = ? ORDER BY id",
                (user_id, provider),
            )
        return [to_card(r, parse_ts) for r in rows]

    async def forget_card(self, user_id: int, saved_card_id: int) -> bool:
        return (
            await self._write(
                "DELETE FROM saved_cards WHERE id = ? AND user_id = ?", (saved_card_id, user_id)
            )
            == 1
        )

    async def get_user_locale(self, user_id: int) -> str | None:
        rows = await self._point("SELECT locale FROM user_prefs WHERE user_id = ?", (user_id,))
        return rows[0][0] if rows else None

    async def set_user_locale(self, user_id: int, locale: str) -> None:
        await self._write(
            "INSERT INTO user_prefs (user_id, locale) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET locale = excluded.locale",
            (user_id, locale),
        )

    # --- figures ------------------------------------------------------------------------

    async def figures(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Figures:
        window = (ts(since) or "", ts(until) or "~")  # '~' sorts after every timestamp
        by_state = await self._rows(
            "SELECT state, COUNT(*) FROM orders WHERE created_at >= ? AND created_at < ? "
            "GROUP BY state",
            window,
        )
        paid = await self._rows(
            "SELECT currency, provider, COUNT(*), SUM(COALESCE(paid_amount, amount)) FROM orders "
            "WHERE paid_at >= ? AND paid_at < ? GROUP BY currency, provider",
            window,
        )
        refunded = await self._rows(
            "SELECT r.currency, o.provider, SUM(r.amount) FROM refunds r "
            "JOIN orders o ON o.id = r.order_id WHERE r.state = 'done' "
            "AND r.updated_at >= ? AND r.updated_at < ? GROUP BY r.currency, o.provider",
            window,
        )
        failed = await self._rows(
            "SELECT COUNT(*) FROM outbox WHERE failed_at >= ? AND failed_at < ?", window
        )
        return Figures(
            orders_by_state={OrderState(r[0]): r[1] for r in by_state},
            takings=takings(paid, refunded),
            undelivered_messages=failed[0][0],
        )

    async def paid_slots(self, since: datetime, until: datetime) -> list[tuple[datetime, Money]]:
        rows = await self._rows(
            "SELECT substr(paid_at, 1, 14) || printf('%02d', "
            "CAST(substr(paid_at, 15, 2) AS INTEGER) / 15 * 15) AS slot, currency, "
            "SUM(COALESCE(paid_amount, amount)) FROM orders WHERE paid_at >= ? AND paid_at < ? "
            "GROUP BY slot, currency ORDER BY slot, currency",
            (ts(since), ts(until)),
        )
        return [
            (datetime.fromisoformat(r[0]).replace(tzinfo=UTC), Money(int(r[2]), r[1])) for r in rows
        ]

    async def export_orders(
        self, since: datetime | None = None, *, batch: int = 500
    ) -> AsyncIterator[list[Order]]:
        after = 0
        while True:
            rows = await self._rows(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE id > ? AND created_at >= ? "
                "ORDER BY id LIMIT ?",
                (after, ts(since) or "", batch),
            )
            if not rows:
                return
            yield await self._with_items(rows)
            after = rows[-1]["id"]
