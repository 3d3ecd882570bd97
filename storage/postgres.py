"""PostgreSQL storage through asyncpg, for several bot replicas sharing one database.

The contract and schema are SQLite's. Concurrency is the database's here: a transition locks its
order row (`SELECT ... FOR UPDATE`), so of two replicas confirming one order only one finds the
expected state; unique constraints with `ON CONFLICT DO NOTHING` do the exactly-once inserts.
Migrations run under an advisory lock, so replicas starting together apply each file once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

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
from storage.migrations import migrations
from storage.rows import (
    HEAD_COLUMNS,
    ITEMS_POSTGRES,
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

# Key of the advisory lock held while migrating; any constant unique to this application.
MIGRATION_LOCK = 0x0C4EC0_0001

# The open ends of a figures window.
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
JOINED_HEAD = ", ".join(f"o.{name.strip()}" for name in HEAD_COLUMNS.split(","))  # of `orders o`

# What a broken connection or server raises; `ping` answers False on these.
# InternalClientError: a pooled connection the server closed under a query in flight
# ("cannot switch to state ..."), as a restart of PostgreSQL does
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def aware(moment: datetime | None) -> datetime | None:
    """Storage takes timezone-aware times only; a naive one is a bug in the caller."""
    if moment is not None and moment.tzinfo is None:
        raise ValueError("naive datetime: storage takes timezone-aware UTC times")
    return moment


def same(value: datetime | None) -> datetime | None:
    """timestamptz columns already arrive as aware datetimes."""
    return value


def describe(dsn: str) -> str:
    """host:port/database of a URL, for messages: never the user's password."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def _cache_size(dsn: str) -> tuple[str, int]:
    """Take `statement_cache_size` out of the URL (0 behind PgBouncer in transaction mode);
    asyncpg would send any other query parameter to the server as a setting."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    sizes = [value for key, value in query if key == "statement_cache_size"]
    if not sizes:
        return dsn, 100
    if not sizes[-1].isdigit():
        raise ValueError("DATABASE_URL: statement_cache_size must be a whole number")
    rest = urlencode([(key, value) for key, value in query if key != "statement_cache_size"])
    return urlunsplit(parts._replace(query=rest)), int(sizes[-1])


class _Connection(asyncpg.Connection):
    """A pooled connection given back without asyncpg's reset query (advisory unlock, CLOSE
    ALL, UNLISTEN, RESET ALL): a round trip to the server on every release, two on each
    callback. This code leaves no session state for it to clear: its one advisory lock is a
    transaction's, it opens no cursor, listens to nothing and sets nothing for the session.
    A transaction left open is still rolled back (asyncpg does that apart from the query).
    One thing the reset did undo: asyncpg turns `jit` off while it looks up a type new to the
    connection and back on after, so a call cancelled in between leaves that connection with
    the planner's JIT off, which short queries such as ours do not miss."""

    def get_reset_query(self) -> str:
        return ""


class PostgresStorage:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn, self.statement_cache_size = _cache_size(dsn)
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._marks: asyncpg.Pool | None = None  # one connection of its own for mark_sent
        self._inbox = Batcher(self._insert_inbound)
        self._processed = Batcher(self._mark_processed)
        # the heads callbacks read, by id or by payment: read together as the inbox is
        # written, one statement for the callbacks that arrive while one is read
        self._heads_by_id = Batcher(self._read_heads_by_id)
        self._heads_by_payment = Batcher(self._read_heads_by_payment)

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                command_timeout=30,
                statement_cache_size=self.statement_cache_size,
                connection_class=_Connection,
            )
        except (*CONNECTION_ERRORS, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            password = urlsplit(self.dsn).password
            if password:
                reason = reason.replace(password, "***")
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {describe(self.dsn)}: {reason}"
            ) from None
        try:
            await self._migrate()
            self._marks = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=1,
                command_timeout=30,
                statement_cache_size=self.statement_cache_size,
                connection_class=_Connection,
            )
        except asyncpg.PostgresError as exc:
            await self.close()
            raise StorageUnavailable(
                f"cannot migrate PostgreSQL at {describe(self.dsn)}: {type(exc).__name__}: {exc}"
            ) from None

    async def _migrate(self) -> None:
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
            )
            done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in migrations("postgres"):
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2)", version, datetime.now(UTC)
                )

    async def close(self) -> None:
        for batcher in (self._inbox, self._processed, self._heads_by_id, self._heads_by_payment):
            await batcher.close()
        for name in ("_marks", "_pool"):
            pool = getattr(self, name)
            if pool is None:
                continue
            setattr(self, name, None)
            try:
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(5):
                await self._db.fetchval("SELECT 1")
        except (*CONNECTION_ERRORS, StorageUnavailable):
            return False
        return True

    @property
    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageUnavailable("storage is not open")
        return self._pool

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._db.acquire() as conn, conn.transaction():
            yield conn

    # --- orders -------------------------------------------------------------------------

    async def create_order(self, new: NewOrder) -> Order:
        stamp = datetime.now(UTC)
        async with self._tx() as conn:
            order_id = await conn.fetchval(
                "INSERT INTO orders (user_id, chat_id, provider, amount, currency, state, token, "
                "locale, description, created_at, updated_at, buyer_name, buyer_username, "
                "delivery_name, delivery_phone, delivery_address, delivery_comment, search_text) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$10,$11,$12,$13,$14,$15,$16,$17) "
                "RETURNING id",
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
                new.buyer.name,
                new.buyer.username,
                *delivery_values(new.delivery),
                search_text(new.buyer, new.delivery),
            )
            await conn.executemany(
                "INSERT INTO order_items VALUES ($1,$2,$3,$4,$5,$6)",
                [
                    (order_id, i, it.sku, it.title, it.quantity, it.unit_amount)
                    for i, it in enumerate(new.items)
                ],
            )
            await _audit(conn, order_id, None, OrderState.CREATED, "checkout", "", stamp)
            return await _must_get(conn, order_id)

    async def get_order(self, order_id: int) -> Order | None:
        return await self._one("WHERE id = $1", order_id)

    async def get_order_by_token(self, token: str) -> Order | None:
        return await self._one("WHERE token = $1", token)

    async def get_order_by_payment(self, provider: str, provider_payment_id: str) -> Order | None:
        return await self._one(
            "WHERE provider = $1 AND provider_payment_id = $2", provider, provider_payment_id
        )

    async def get_order_head(self, order_id: int) -> OrderHead | None:
        return await self._heads_by_id.submit(order_id)

    async def get_order_head_by_payment(
        self, provider: str, provider_payment_id: str
    ) -> OrderHead | None:
        return await self._heads_by_payment.submit((provider, provider_payment_id))

    async def _read_heads_by_id(self, ids: Sequence[int]) -> list[OrderHead | None]:
        return await self._heads(
            "unnest($1::bigint[]) WITH ORDINALITY AS k(i, n) JOIN orders o ON o.id = k.i", ids
        )

    async def _read_heads_by_payment(
        self, keys: Sequence[tuple[str, str]]
    ) -> list[OrderHead | None]:
        return await self._heads(
            "unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(p, i, n) "
            "JOIN orders o ON o.provider = k.p AND o.provider_payment_id = k.i",
            *zip(*keys, strict=True),
        )

    async def _heads(self, joined: str, *arrays: Sequence[Any]) -> list[OrderHead | None]:
        """Each key's head, in the order of the keys (None for a key no order has): one round
        trip for a burst of callbacks, which would otherwise take one each."""
        found: list[OrderHead | None] = [None] * len(arrays[0])
        for row in await self._db.fetch(f"SELECT k.n, {JOINED_HEAD} FROM {joined}", *arrays):
            found[row["n"] - 1] = to_head(row)
        return found

    async def orders_for_user(
        self, user_id: int, *, limit: int = 10, offset: int = 0
    ) -> list[Order]:
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 "
                "ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
                user_id,
                limit,
                offset,
            )
            return await _with_items(conn, rows)

    async def search_orders(
        self, query: OrderQuery, *, limit: int = 10, offset: int = 0
    ) -> list[Order]:
        count = iter(range(1, 1000))
        where, params = query_where(query, lambda: f"${next(count)}", aware)
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {ORDER_COLUMNS} FROM orders {where} ORDER BY id DESC "
                f"LIMIT ${next(count)} OFFSET ${next(count)}",
                *params,
                limit,
                offset,
            )
            return await _with_items(conn, rows)

    async def _one(self, where: str, *params: Any) -> Order | None:
        async with self._db.acquire() as conn:
            return await _one(conn, where, *params)

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
        stamp = datetime.now(UTC)
        try:
            async with self._tx() as conn:
                updated = await conn.fetchval(
                    "UPDATE orders SET state = $1, pay_url = $2, provider_payment_id = $3, "
                    "expires_at = $4, next_check_at = $5, updated_at = $6, payment_data = $9 "
                    "WHERE id = $7 AND state = $8 RETURNING id",
                    OrderState.AWAITING_PAYMENT.value,
                    pay_url,
                    provider_payment_id,
                    aware(expires_at),
                    aware(next_check_at),
                    stamp,
                    order_id,
                    OrderState.CREATED.value,
                    payment_json(payment_data),
                )
                if updated is None:
                    raise IllegalTransition(f"order {order_id} is not in state created")
                await _audit(
                    conn,
                    order_id,
                    OrderState.CREATED,
                    OrderState.AWAITING_PAYMENT,
                    "checkout",
                    "",
                    stamp,
                )
                return await _must_get(conn, order_id)
        except asyncpg.UniqueViolationError:
            raise DuplicatePayment(
                f"payment id already belongs to another order (order {order_id})"
            ) from None

    async def attach_payment(
        self, order_id: int, provider_payment_id: str, payment_data: Mapping[str, str]
    ) -> Order:
        try:
            async with self._tx() as conn:
                row = await conn.fetchrow(
                    "SELECT provider_payment_id FROM orders WHERE id = $1 FOR UPDATE", order_id
                )
                if row is None:
                    raise KeyError(order_id)
                current = row[0]
                if current not in (None, provider_payment_id):
                    raise DuplicatePayment(f"order {order_id} already has another payment id")
                if current is None:
                    await conn.execute(
                        "UPDATE orders SET provider_payment_id = $1, payment_data = $2, "
                        "updated_at = $3 WHERE id = $4",
                        provider_payment_id,
                        payment_json(payment_data),
                        datetime.now(UTC),
                        order_id,
                    )
                return await _must_get(conn, order_id)
        except asyncpg.UniqueViolationError:
            raise DuplicatePayment("this payment id belongs to another order") from None

    async def update_payment(
        self, order_id: int, provider_payment_id: str, payment_data: Mapping[str, str]
    ) -> Order:
        try:
            async with self._tx() as conn:
                await conn.execute(
                    "UPDATE orders SET provider_payment_id = $1, payment_data = $2, "
                    "updated_at = $3 WHERE id = $4",
                    provider_payment_id,
                    payment_json(payment_data),
                    datetime.now(UTC),
                    order_id,
                )
                return await _must_get(conn, order_id)
        except asyncpg.UniqueViolationError:
            raise DuplicatePayment("this payment id belongs to another order") from None

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
        stamp = datetime.now(UTC)
        # state and updated_at first: the statement reads them as $11 and $12
        changes: dict[str, Any] = {"state": target.value, "updated_at": stamp}
        if target is OrderState.PAID:
            changes["paid_at"] = stamp
        if paid is not None:
            changes["paid_amount"] = paid.amount
        if refunded is not None:
            changes["refunded_amount"] = refunded.amount
        if target is not OrderState.AWAITING_PAYMENT:
            changes["next_check_at"] = None
        sets = ", ".join(f"{column} = ${n}" for n, column in enumerate(changes, start=11))
        # the compare-and-set, its audit row, its messages and the refund it ends: one
        # statement, so one trip to the server and atomic without a transaction of its own
        row = await self._db.fetchrow(
            MOVE.format(sets=sets, columns=ORDER_COLUMNS, items=ITEMS_POSTGRES),
            order_id,
            [state.value for state in states],
            actor,
            detail,
            [message.kind for message in outbox],
            [message.chat_id for message in outbox],
            [json.dumps(dict(message.payload)) for message in outbox],
            refund.refund_id if refund else None,
            refund.state if refund else None,
            refund.provider_code if refund else None,
            *changes.values(),
        )
        return to_order(row, items_of(row), same) if row is not None else None

    async def note(
        self, order_id: int, *, actor: str, detail: str, outbox: Sequence[NewOutbox] = ()
    ) -> Order | None:
        stamp = datetime.now(UTC)
        async with self._tx() as conn:
            current = await conn.fetchval(
                "SELECT state FROM orders WHERE id = $1 FOR UPDATE", order_id
            )
            if current is None:
                return None
            state = OrderState(current)
            await _audit(conn, order_id, state, state, actor, detail[:500], stamp)
            for message in outbox:
                await _enqueue(conn, order_id, message, stamp)
            return await _must_get(conn, order_id)

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
        stamp = datetime.now(UTC)
        async with self._tx() as conn:
            current = await conn.fetchval(
                "SELECT state FROM orders WHERE id = $1 AND fulfilment = $2 FOR UPDATE",
                order_id,
                expected.value,
            )
            if current is None or (wanted is not None and current not in wanted):
                return None
            state = OrderState(current)
            await conn.execute(
                "UPDATE orders SET fulfilment = $1, tracking = COALESCE($2, tracking), "
                "updated_at = $3 WHERE id = $4",
                target.value,
                tracking,
                stamp,
                order_id,
            )
            detail = fulfilment_detail(expected, target, tracking)
            await _audit(conn, order_id, state, state, actor, detail[:500], stamp)
            for message in outbox:
                await _enqueue(conn, order_id, message, stamp)
            return await _must_get(conn, order_id)

    async def last_delivery(self, user_id: int) -> Delivery | None:
        row = await self._db.fetchrow(
            "SELECT delivery_name, delivery_phone, delivery_address, delivery_comment "
            "FROM orders WHERE user_id = $1 AND delivery_address IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            user_id,
        )
        return to_delivery(row) if row else None

    async def schedule_check(
        self, order_id: int, next_check_at: datetime | None, attempts: int
    ) -> None:
        await self._db.execute(
            "UPDATE orders SET next_check_at = $1, check_attempts = $2 WHERE id = $3",
            aware(next_check_at),
            attempts,
            order_id,
        )

    async def due_for_check(self, now: datetime, limit: int = 100) -> list[Order]:
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE state = $1 "
                "AND next_check_at <= $2 ORDER BY next_check_at LIMIT $3",
                OrderState.AWAITING_PAYMENT.value,
                aware(now),
                limit,
            )
            return await _with_items(conn, rows)

    async def paid_between(
        self, provider: str, since: datetime, until: datetime, limit: int = 1000
    ) -> list[Order]:
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE provider = $1 AND paid_at >= $2 "
                "AND paid_at < $3 AND provider_payment_id IS NOT NULL ORDER BY paid_at LIMIT $4",
                provider,
                aware(since),
                aware(until),
                limit,
            )
            return await _with_items(conn, rows)

    async def stale_created(self, before: datetime, limit: int = 100) -> list[Order]:
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE state = $1 AND created_at < $2 "
                "ORDER BY id LIMIT $3",
                OrderState.CREATED.value,
                aware(before),
                limit,
            )
            return await _with_items(conn, rows)

    async def claim_check(self, order_id: int, now: datetime, until: datetime) -> bool:
        claimed = await self._db.fetchval(
            "UPDATE orders SET next_check_at = $1 WHERE id = $2 AND state = $3 "
            "AND next_check_at <= $4 RETURNING id",
            aware(until),
            order_id,
            OrderState.AWAITING_PAYMENT.value,
            aware(now),
        )
        return claimed is not None

    async def audit_trail(self, order_id: int) -> list[AuditEntry]:
        rows = await self._db.fetch("SELECT * FROM audit WHERE order_id = $1 ORDER BY id", order_id)
        return [to_audit(r, same) for r in rows]

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
        stamp = datetime.now(UTC)
        row = (provider, event_key, order_id, body, stamp, stamp if processed else None)
        return await self._inbox.submit(row)

    async def _insert_inbound(self, rows: Sequence[InboundRow]) -> list[int | None]:
        """One statement for the batch: one commit however many callbacks arrived together."""
        stored = await self._db.fetch(
            "INSERT INTO inbound_events "
            "(provider, event_key, order_id, body, received_at, processed_at) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[], "
            "$5::timestamptz[], $6::timestamptz[]) ON CONFLICT (provider, event_key) DO NOTHING "
            "RETURNING id, provider, event_key",
            *zip(*rows, strict=True),
        )
        return new_event_ids(rows, {(r["provider"], r["event_key"]): r["id"] for r in stored})

    async def unprocessed_inbound(
        self, limit: int = 100, due_at: datetime | None = None, *, after: int = 0
    ) -> list[InboundEvent]:
        rows = await self._db.fetch(
            "SELECT e.* FROM inbound_events e LEFT JOIN orders o ON o.id = e.order_id "
            "WHERE e.processed_at IS NULL AND e.id > $3 AND ($2::timestamptz IS NULL "
            "OR o.id IS NULL OR o.check_attempts = 0 OR o.next_check_at IS NULL "
            "OR o.next_check_at <= $2) ORDER BY e.id LIMIT $1",
            limit,
            aware(due_at),
            after,
        )
        return [to_inbound(r, same) for r in rows]

    async def mark_inbound_processed(self, event_id: int) -> None:
        await self._processed.submit(event_id)

    async def _mark_processed(self, event_ids: Sequence[int]) -> list[None]:
        await self._db.execute(
            "UPDATE inbound_events SET processed_at = $1 WHERE id = ANY($2::bigint[])",
            datetime.now(UTC),
            list(event_ids),
        )
        return [None] * len(event_ids)

    async def prune_inbound(self, before: datetime, limit: int = 500) -> int:
        status = await self._db.execute(
            "DELETE FROM inbound_events WHERE id IN (SELECT id FROM inbound_events "
            "WHERE processed_at IS NOT NULL AND received_at < $1 ORDER BY received_at LIMIT $2 "
            "FOR UPDATE SKIP LOCKED)",
            aware(before),
            limit,
        )
        return int(status.rpartition(" ")[2])

    async def inbound_for_order(self, order_id: int) -> list[InboundEvent]:
        rows = await self._db.fetch(
            "SELECT * FROM inbound_events WHERE order_id = $1 ORDER BY id", order_id
        )
        return [to_inbound(r, same) for r in rows]

    # --- outbox -------------------------------------------------------------------------

    async def enqueue(self, order_id: int | None, message: NewOutbox) -> bool:
        async with self._db.acquire() as conn:
            return await _enqueue(conn, order_id, message, datetime.now(UTC))

    async def due_outbox(
        self, now: datetime, limit: int = 50, busy: Collection[int] = ()
    ) -> list[OutboxMessage]:
        rows = await self._db.fetch(
            "SELECT * FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL "
            "AND next_attempt_at <= $1 AND chat_id <> ALL($3::bigint[]) ORDER BY id LIMIT $2",
            aware(now),
            limit,
            [int(c) for c in busy],
        )
        return [to_outbox(r, same) for r in rows]

    async def claim_outbox(self, message_id: int, now: datetime, until: datetime) -> bool:
        claimed = await self._db.fetchval(
            "UPDATE outbox SET next_attempt_at = $1 WHERE id = $2 AND sent_at IS NULL "
            "AND failed_at IS NULL AND next_attempt_at <= $3 RETURNING id",
            aware(until),
            message_id,
            aware(now),
        )
        return claimed is not None

    async def mark_sent(self, message_id: int) -> None:
        # on a connection of its own, never waiting for the pool behind inbound traffic:
        # Telegram took the message, and until this commits a crash would send it again
        await (self._marks or self._db).execute(
            "UPDATE outbox SET sent_at = $1 WHERE id = $2", datetime.now(UTC), message_id
        )

    async def defer(
        self, message_id: int, until: datetime, error: str, *, attempt: bool = True
    ) -> None:
        await self._db.execute(
            "UPDATE outbox SET attempts = attempts + $4, next_attempt_at = $1, last_error = $2 "
            "WHERE id = $3",
            aware(until),
            error[:500],
            message_id,
            int(attempt),
        )

    async def mark_failed(self, message_id: int, error: str) -> None:
        await self._db.execute(
            "UPDATE outbox SET failed_at = $1, last_error = $2 WHERE id = $3",
            datetime.now(UTC),
            error[:500],
            message_id,
        )

    # --- refunds ------------------------------------------------------------------------

    async def create_refund(
        self, order_id: int, amount: Money, idempotency_key: str, actor: str
    ) -> tuple[Refund, bool]:
        stamp = datetime.now(UTC)
        async with self._tx() as conn:
            row = await conn.fetchrow(
                "INSERT INTO refunds (order_id, amount, currency, idempotency_key, state, actor, "
                "created_at, updated_at) VALUES ($1,$2,$3,$4,'pending',$5,$6,$6) "
                "ON CONFLICT DO NOTHING RETURNING *",
                order_id,
                amount.amount,
                amount.currency,
                idempotency_key,
                actor,
                stamp,
            )
            if row is not None:
                return to_refund(row, same), True
            row = await conn.fetchrow(
                "SELECT * FROM refunds WHERE idempotency_key = $1", idempotency_key
            ) or await conn.fetchrow(  # the order's open refund took its place
                "SELECT * FROM refunds WHERE order_id = $1 "
                "ORDER BY state = 'pending' DESC, id DESC LIMIT 1",
                order_id,
            )
            return to_refund(row, same), False

    async def finish_refund(self, refund_id: int, state: str, provider_code: str = "") -> Refund:
        row = await self._db.fetchrow(
            "UPDATE refunds SET state = $1, provider_code = $2, updated_at = $3 WHERE id = $4 "
            "RETURNING *",
            state,
            provider_code,
            datetime.now(UTC),
            refund_id,
        )
        if row is None:
            raise KeyError(refund_id)
        return to_refund(row, same)

    async def refunds_for_order(self, order_id: int) -> list[Refund]:
        rows = await self._db.fetch(
            "SELECT * FROM refunds WHERE order_id = $1 ORDER BY id", order_id
        )
        return [to_refund(r, same) for r in rows]

    async def unfinished_refunds(self, before: datetime, limit: int = 100) -> list[Refund]:
        rows = await self._db.fetch(
            "SELECT * FROM refunds WHERE state = 'pending' AND updated_at < $1 "
            "ORDER BY updated_at, id LIMIT $2",
            aware(before),
            limit,
        )
        return [to_refund(r, same) for r in rows]

    async def claim_refund(self, refund_id: int, before: datetime, now: datetime) -> bool:
        claimed = await self._db.fetchval(
            "UPDATE refunds SET updated_at = $1 WHERE id = $2 AND state = 'pending' "
            "AND updated_at < $3 RETURNING id",
            aware(now),
            refund_id,
            aware(before),
        )
        return claimed is not None

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
        stamp = datetime.now(UTC)
        async with self._tx() as conn:
            row = await conn.fetchrow(
                "INSERT INTO unexpected_payments (order_id, provider, payment_id, payment_data, "
                "amount, currency, state, reason, created_at, updated_at) "
                "VALUES ($1,$2,$3,$4,$5,$6,'open',$7,$8,$8) "
                "ON CONFLICT (provider, payment_id) DO NOTHING RETURNING *",
                order_id,
                provider,
                payment_id,
                payment_json(payment_data),
                amount.amount if amount else None,
                currency,
                reason[:500],
                stamp,
            )
            if row is not None:
                return to_unexpected(row, same), True
            row = await conn.fetchrow(
                "SELECT * FROM unexpected_payments WHERE provider = $1 AND payment_id = $2",
                provider,
                payment_id,
            )
            return to_unexpected(row, same), False

    async def get_unexpected(self, payment_row_id: int) -> UnexpectedPayment | None:
        row = await self._db.fetchrow(
            "SELECT * FROM unexpected_payments WHERE id = $1", payment_row_id
        )
        return to_unexpected(row, same) if row else None

    async def find_unexpected(self, provider: str, payment_id: str) -> UnexpectedPayment | None:
        row = await self._db.fetchrow(
            "SELECT * FROM unexpected_payments WHERE provider = $1 AND payment_id = $2",
            provider,
            payment_id,
        )
        return to_unexpected(row, same) if row else None

    async def unexpected_for_order(self, order_id: int) -> list[UnexpectedPayment]:
        rows = await self._db.fetch(
            "SELECT * FROM unexpected_payments WHERE order_id = $1 ORDER BY id", order_id
        )
        return [to_unexpected(row, same) for row in rows]

    async def move_unexpected(self, payment_row_id: int, expected: str, target: str) -> bool:
        moved = await self._db.fetchval(
            "UPDATE unexpected_payments SET state = $1, updated_at = $2 "
            "WHERE id = $3 AND state = $4 RETURNING id",
            target,
            datetime.now(UTC),
            payment_row_id,
            expected,
        )
        return moved is not None

    async def set_order_message(self, order_id: int, message_id: int) -> None:
        await self._db.execute(
            "UPDATE orders SET message_id = $1 WHERE id = $2", message_id, order_id
        )

    async def set_merchant_message(self, order_id: int, message_id: int) -> None:
        await self._db.execute(
            "UPDATE orders SET merchant_message_id = $1 WHERE id = $2", message_id, order_id
        )

    # --- saved cards and preferences ----------------------------------------------------

    async def save_card(
        self, user_id: int, provider: str, card_id: str, card_name: str
    ) -> SavedCard:
        row = await self._db.fetchrow(
            "INSERT INTO saved_cards (user_id, provider, card_id, card_name, created_at) "
            "VALUES ($1,$2,$3,$4,$5) ON CONFLICT (user_id, provider, card_id) "
            "DO UPDATE SET card_name = excluded.card_name RETURNING *",
            user_id,
            provider,
            card_id,
            card_name,
            datetime.now(UTC),
        )
        return to_card(row, same)

    async def saved_cards(self, user_id: int, provider: str | None = None) -> list[SavedCard]:
        rows = await self._db.fetch(
            "SELECT * FROM saved_cards WHERE user_id = $1 "
            "AND ($2::text IS NULL OR provider = $2) ORDER BY id",
            user_id,
            provider,
        )
        return [to_card(r, same) for r in rows]

    async def forget_card(self, user_id: int, saved_card_id: int) -> bool:
        deleted = await self._db.fetchval(
            "DELETE FROM saved_cards WHERE id = $1 AND user_id = $2 RETURNING id",
            saved_card_id,
            user_id,
        )
        return deleted is not None

    async def get_user_locale(self, user_id: int) -> str | None:
        return await self._db.fetchval("SELECT locale FROM user_prefs WHERE user_id = $1", user_id)

    async def set_user_locale(self, user_id: int, locale: str) -> None:
        await self._db.execute(
            "INSERT INTO user_prefs (user_id, locale) VALUES ($1, $2) "
            "ON CONFLICT (user_id) DO UPDATE SET locale = excluded.locale",
            user_id,
            locale,
        )

    # --- figures ------------------------------------------------------------------------

    async def figures(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Figures:
        window = (aware(since) or EARLIEST, aware(until) or LATEST)
        async with self._db.acquire() as conn:
            by_state = await conn.fetch(
                "SELECT state, COUNT(*) FROM orders WHERE created_at >= $1 AND created_at < $2 "
                "GROUP BY state",
                *window,
            )
            paid = await conn.fetch(
                "SELECT currency, provider, COUNT(*), SUM(COALESCE(paid_amount, amount))::bigint "
                "FROM orders WHERE paid_at >= $1 AND paid_at < $2 GROUP BY currency, provider",
                *window,
            )
            refunded = await conn.fetch(
                "SELECT r.currency, o.provider, SUM(r.amount)::bigint FROM refunds r "
                "JOIN orders o ON o.id = r.order_id WHERE r.state = 'done' "
                "AND r.updated_at >= $1 AND r.updated_at < $2 GROUP BY r.currency, o.provider",
                *window,
            )
            failed = await conn.fetchval(
                "SELECT COUNT(*) FROM outbox WHERE failed_at >= $1 AND failed_at < $2", *window
            )
        return Figures(
            orders_by_state={OrderState(r[0]): r[1] for r in by_state},
            takings=takings(paid, refunded),
            undelivered_messages=failed,
        )

    async def paid_slots(self, since: datetime, until: datetime) -> list[tuple[datetime, Money]]:
        # from the epoch, so the session's time zone plays no part
        rows = await self._db.fetch(
            "SELECT to_timestamp(floor(extract(epoch FROM paid_at) / 900) * 900) AS slot, "
            "currency, SUM(COALESCE(paid_amount, amount))::bigint FROM orders "
            "WHERE paid_at >= $1 AND paid_at < $2 GROUP BY slot, currency ORDER BY slot, currency",
            aware(since),
            aware(until),
        )
        return [(r[0], Money(int(r[2]), r[1])) for r in rows]

    async def export_orders(
        self, since: datetime | None = None, *, batch: int = 500
    ) -> AsyncIterator[list[Order]]:
        after = 0
        while True:
            async with self._db.acquire() as conn:
                rows = await conn.fetch(
                    f"SELECT {ORDER_COLUMNS} FROM orders WHERE id > $1 AND created_at >= $2 "
                    "ORDER BY id LIMIT $3",
                    after,
                    aware(since) or EARLIEST,
                    batch,
                )
                orders = await _with_items(conn, rows)
            if not orders:
                return
            yield orders
            after = orders[-1].id


# --- helpers that run on a given connection, inside or outside a transaction ----------------


async def _one(conn: asyncpg.Connection, where: str, *params: Any) -> Order | None:
    row = await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS}, {ITEMS_POSTGRES} FROM orders {where}", *params
    )
    return to_order(row, items_of(row), same) if row is not None else None


async def _must_get(conn: asyncpg.Connection, order_id: int) -> Order:
    order = await _one(conn, "WHERE id = $1", order_id)
    if order is None:
        raise KeyError(order_id)
    return order


async def _with_items(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[Order]:
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    items: dict[int, list[OrderItem]] = {i: [] for i in ids}
    for it in await conn.fetch(
        "SELECT order_id, sku, title, quantity, unit_amount FROM order_items "
        "WHERE order_id = ANY($1::bigint[]) ORDER BY order_id, position",
        ids,
    ):
        items[it["order_id"]].append(to_item(it))
    return [to_order(row, tuple(items[row["id"]]), same) for row in rows]


# A transition as one statement. The row is locked and its state read (`old`: a transition
# that waited for another's lock reads the state that one left), moved only from one of the
# expected states, and only then are its audit row, its messages (in their order) and the end
# of its refund written. $1 the order, $2 the expected states, $3 the actor, $4 the detail,
# $5-$7 the messages' kinds, chats and payloads, $8-$10 the refund's id, state and code, $11
# the new state, $12 the time, then the rest of the columns set.
MOVE = """
WITH old AS (SELECT id, state FROM orders WHERE id = $1 FOR UPDATE),
moved AS (
    UPDATE orders o SET {sets} FROM old WHERE o.id = old.id AND old.state = ANY($2::text[])
    RETURNING o.*, old.state AS before
),
logged AS (
    INSERT INTO audit (order_id, from_state, to_state, actor, detail, created_at)
    SELECT id, before, $11, $3, $4, $12 FROM moved
),
queued AS (
    INSERT INTO outbox (order_id, kind, chat_id, payload, next_attempt_at, created_at)
    SELECT m.id, q.kind, q.chat_id, q.payload::jsonb, $12, $12
    FROM moved m, unnest($5::text[], $6::bigint[], $7::text[]) WITH ORDINALITY
        AS q(kind, chat_id, payload, n)
    ORDER BY q.n
    ON CONFLICT DO NOTHING
),
ended AS (
    UPDATE refunds SET state = $9, provider_code = $10, updated_at = $12
    WHERE id = $8 AND state = 'pending' AND EXISTS (SELECT FROM moved)
)
SELECT {columns}, {items} FROM moved AS orders
"""


async def _audit(
    conn: asyncpg.Connection,
    order_id: int,
    before: OrderState | None,
    after: OrderState,
    actor: str,
    detail: str,
    stamp: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO audit (order_id, from_state, to_state, actor, detail, created_at) "
        "VALUES ($1,$2,$3,$4,$5,$6)",
        order_id,
        before.value if before else None,
        after.value,
        actor,
        detail,
        stamp,
    )


async def _enqueue(
    conn: asyncpg.Connection, order_id: int | None, message: NewOutbox, stamp: datetime
) -> bool:
    queued = await conn.fetchval(
        "INSERT INTO outbox (order_id, kind, chat_id, payload, next_attempt_at, created_at) "
        "VALUES ($1,$2,$3,$4::jsonb,$5,$5) ON CONFLICT DO NOTHING RETURNING id",
        order_id,
        message.kind,
        message.chat_id,
        json.dumps(dict(message.payload)),
        stamp,
    )
    return queued is not None
