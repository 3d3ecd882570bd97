"""The Storage contract on both backends, a real SQLite file and the machine's PostgreSQL: state
table, compare-and-set, atomic outbox, exactly-once constraints, persistence across reopen."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bench.sweep import traced
from money import Money
from storage import StorageUnavailable, storage_from_url
from storage.base import (
    Buyer,
    Delivery,
    DuplicatePayment,
    Fulfilment,
    IllegalTransition,
    NewOrder,
    NewOutbox,
    OrderHead,
    OrderItem,
    OrderQuery,
    OrderState,
    RefundEnd,
    Storage,
)
from storage.postgres import PostgresStorage
from storage.sqlite import SQLiteStorage

S = OrderState
F = Fulfilment


def new_order(n: int = 1, user_id: int = 7) -> NewOrder:
    return NewOrder(
        user_id=user_id,
        chat_id=user_id,
        provider="redoya",
        total=Money(23500, "TRY"),
        token=f"token-{n}",
        items=[
            OrderItem("turkish-coffee", "Turkish coffee", 1, 15000),
            OrderItem("cezve", "Cezve", 1, 8500),
        ],
    )


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    return f"sqlite:///{tmp_path}/deep/er/store.db"


@pytest.fixture
async def storage(url: str) -> AsyncIterator[Storage]:
    store = storage_from_url(url)
    await store.open()
    yield store
    await store.close()


async def awaiting(storage: Storage, n: int = 1, user_id: int = 7) -> int:
    order = await storage.create_order(new_order(n, user_id))
    await storage.set_checkout(
        order.id,
        pay_url="https://pay.example/x",
        provider_payment_id=None,
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
        next_check_at=datetime.now(UTC) + timedelta(seconds=15),
    )
    return order.id


async def test_orders_round_trip_with_items(storage: Storage) -> None:
    order = await storage.create_order(new_order())
    assert order.state is S.CREATED
    assert [i.sku for i in order.items] == ["turkish-coffee", "cezve"]
    assert order.created_at.tzinfo is not None
    assert await storage.get_order_by_token("token-1") == order
    assert await storage.get_order(999) is None


async def test_set_checkout_and_attach_payment(storage: Storage) -> None:
    order_id = await awaiting(storage)
    order = await storage.attach_payment(order_id, "P1", {"bank": "halk"})
    assert order.state is S.AWAITING_PAYMENT
    assert await storage.attach_payment(order_id, "P1", {"bank": "halk"}) == order  # idempotent
    with pytest.raises(DuplicatePayment):
        await storage.attach_payment(order_id, "P2", {})
    other = await awaiting(storage, 2)
    with pytest.raises(DuplicatePayment):
        await storage.attach_payment(other, "P1", {})
    assert (await storage.get_order_by_payment("redoya", "P1")).id == order_id  # type: ignore[union-attr]
    assert order.payment_data == {"bank": "halk"}


async def test_the_head_of_an_order_is_its_whole_order_in_short(storage: Storage) -> None:
    """A callback reads only the head (id, state, payment); it says what the order says."""
    order_id = await awaiting(storage)
    await storage.attach_payment(order_id, "P1", {"bank": "halk"})
    order = await storage.get_order(order_id)
    assert order is not None
    head = OrderHead(
        order.id, order.provider, order.state, order.token, order.total, "P1", {"bank": "halk"}
    )
    assert await storage.get_order_head(order_id) == head
    assert await storage.get_order_head_by_payment("redoya", "P1") == head
    assert await storage.get_order_head(order_id + 1) is None
    assert await storage.get_order_head_by_payment("payture", "P1") is None  # another provider's


async def test_heads_read_at_once_are_each_callers_own(storage: Storage) -> None:
    """A burst of callbacks reads its heads together (one statement on PostgreSQL): each
    caller gets its own order's head, or None, whatever else is read with it."""
    ids = [await awaiting(storage, n) for n in (1, 2, 3)]
    for n, order_id in enumerate(ids):
        await storage.attach_payment(order_id, f"P{n}", {})
    by_id = [ids[2], ids[0], ids[2] + 100, ids[0]]  # a repeated id and one no order has
    by_payment = [("redoya", "P1"), ("payture", "P1"), ("redoya", "P2"), ("redoya", "P1")]
    heads = await asyncio.gather(
        *(storage.get_order_head(i) for i in by_id),
        *(storage.get_order_head_by_payment(p, i) for p, i in by_payment),
    )
    found = [head.id if head else None for head in heads]
    assert found == [ids[2], ids[0], None, ids[0], ids[1], None, ids[2], ids[1]]
    assert heads[0] == await storage.get_order_head(ids[2])  # the same as one read alone


async def test_postgres_reads_a_burst_of_heads_in_one_statement(postgres_url: str) -> None:
    storage = PostgresStorage(postgres_url, min_size=2, max_size=2)  # the logger sees both
    await storage.open()
    try:
        ids = [await awaiting(storage, n) for n in (1, 2, 3)]
        async with traced(storage) as seen:
            await asyncio.gather(
                *(storage.get_order_head(i) for i in ids),
                *(storage.get_order_head_by_payment("redoya", f"P{n}") for n in range(3)),
            )
        assert sum(" orders o " in statement.sql for statement in seen) == 2  # one of each kind
    finally:
        await storage.close()


async def test_a_payment_reference_the_provider_renamed_is_stored(storage: Storage) -> None:
    order_id = await awaiting(storage)
    await storage.attach_payment(order_id, "INV-1", {"bank": "halk"})
    renamed = await storage.update_payment(order_id, "INV-2", {"bank": "halk", "renamed": "1"})
    assert (renamed.provider_payment_id, renamed.payment_data) == (
        "INV-2",
        {"bank": "halk", "renamed": "1"},
    )
    assert (await storage.get_order_by_payment("redoya", "INV-2")).id == order_id  # type: ignore[union-attr]
    other = await awaiting(storage, 2)
    with pytest.raises(DuplicatePayment):
        await storage.update_payment(other, "INV-2", {})


async def test_transition_is_compare_and_set_with_audit_and_outbox(storage: Storage) -> None:
    order_id = await awaiting(storage)
    paid = await storage.transition(
        order_id,
        S.AWAITING_PAYMENT,
        S.PAID,
        actor="return",
        detail="success",
        outbox=[NewOutbox("paid", 7, {"n": 1}), NewOutbox("merchant_paid", -1)],
        paid=Money(23500, "TRY"),
    )
    assert paid is not None
    assert paid.state is S.PAID
    assert paid.paid_at is not None
    assert paid.next_check_at is None
    assert paid == await storage.get_order(order_id)  # the order as it now is, items and all
    assert len(paid.items) == 2
    assert await storage.transition(order_id, S.AWAITING_PAYMENT, S.PAID, actor="x") is None
    trail = await storage.audit_trail(order_id)
    last = trail[-1]
    assert (last.from_state, last.to_state, last.actor, last.detail) == (
        S.AWAITING_PAYMENT,
        S.PAID,
        "return",
        "success",
    )
    due = await storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1))
    assert [(m.kind, m.chat_id) for m in due] == [("paid", 7), ("merchant_paid", -1)]  # in order
    assert dict(due[0].payload) == {"n": 1}


async def test_illegal_transitions_are_refused(storage: Storage) -> None:
    order_id = await awaiting(storage)
    with pytest.raises(IllegalTransition):
        await storage.transition(order_id, S.AWAITING_PAYMENT, S.REFUNDED, actor="x")
    for n, state in ((2, S.PAID), (3, S.EXPIRED)):
        other = await awaiting(storage, n)
        assert await storage.transition(other, S.AWAITING_PAYMENT, state, actor="x")
        assert await storage.transition(other, state, S.NEEDS_REVIEW, actor="x")


async def test_twenty_concurrent_transitions_have_one_winner(storage: Storage) -> None:
    order_id = await awaiting(storage)
    results = await asyncio.gather(
        *(
            storage.transition(
                order_id, S.AWAITING_PAYMENT, S.PAID, actor=f"r{n}", outbox=[NewOutbox("paid", 7)]
            )
            for n in range(20)
        )
    )
    assert sum(r is not None for r in results) == 1
    assert [e.to_state for e in await storage.audit_trail(order_id)].count(S.PAID) == 1
    outbox = await storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1))
    assert len(outbox) == 1


async def test_a_transition_that_waited_for_another_sees_the_state_it_left(
    storage: Storage,
) -> None:
    """Paid and cancelled at once: one wins, and every other one, though it waited for the
    winner's lock, finds the order no longer awaiting payment."""
    order_id = await awaiting(storage)
    results = await asyncio.gather(
        *(
            storage.transition(
                order_id,
                S.AWAITING_PAYMENT,
                S.PAID if n % 2 else S.CANCELLED,
                actor=f"r{n}",
                outbox=[NewOutbox(f"m{n}", 7)],
            )
            for n in range(20)
        )
    )
    (winner,) = [r for r in results if r is not None]
    assert (await storage.get_order(order_id)).state is winner.state  # type: ignore[union-attr]
    moves = [e for e in await storage.audit_trail(order_id) if e.from_state is S.AWAITING_PAYMENT]
    assert [e.to_state for e in moves] == [winner.state]
    assert len(await storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1))) == 1


async def test_outbox_defer_send_and_dedupe(storage: Storage) -> None:
    order_id = await awaiting(storage)
    assert await storage.enqueue(order_id, NewOutbox("note", 7, {"a": 1}))
    assert not await storage.enqueue(order_id, NewOutbox("note", 7))
    assert await storage.enqueue(None, NewOutbox("note", 7))
    assert await storage.enqueue(None, NewOutbox("note", 7))  # not tied to an order: no dedupe
    now = datetime.now(UTC) + timedelta(seconds=1)
    due = await storage.due_outbox(now)
    assert len(due) == 3
    assert due[0].payload == {"a": 1}
    await storage.defer(due[0].id, now + timedelta(minutes=1), "429")
    await storage.mark_sent(due[1].id)
    left = await storage.due_outbox(now)
    assert [m.id for m in left] == [due[2].id]
    later = await storage.due_outbox(now + timedelta(minutes=2))
    assert {m.id for m in later} == {due[0].id, due[2].id}
    assert next(m for m in later if m.id == due[0].id).attempts == 1
    await storage.mark_failed(due[2].id, "TelegramForbiddenError: bot was blocked by the user")
    assert [m.id for m in await storage.due_outbox(now + timedelta(minutes=2))] == [due[0].id]
    assert (await storage.figures()).undelivered_messages == 1


async def test_due_messages_leave_out_the_busy_chats(storage: Storage) -> None:
    for chat in (-100, -100, 7, 8, -100):
        assert await storage.enqueue(None, NewOutbox("note", chat))
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert [m.chat_id for m in await storage.due_outbox(now, 2, busy=[-100])] == [7, 8]
    assert [m.chat_id for m in await storage.due_outbox(now, busy=[-100, 7])] == [8]
    assert [m.chat_id for m in await storage.due_outbox(now, busy=[])] == [-100, -100, 7, 8, -100]


async def test_due_messages_are_read_from_the_queued_ones_only(tmp_path: Path) -> None:
    """With no statistics (a fresh SQLite file) the oldest due rows are still found through
    the index of rows to send, never a walk over every message ever sent."""
    store = SQLiteStorage(str(tmp_path / "plan.db"))
    await store.open()
    try:
        for chat in range(200):
            assert await store.enqueue(None, NewOutbox("note", chat))
        for message in await store.due_outbox(datetime.now(UTC) + timedelta(seconds=1), 150):
            await store.mark_sent(message.id)
        seen: list[str] = []
        await store._conn.set_trace_callback(seen.append)
        due = await store.due_outbox(datetime.now(UTC) + timedelta(seconds=1), busy=[160])
        assert len(due) == 49
        (query,) = [sql for sql in seen if "FROM outbox" in sql]
        with contextlib.closing(sqlite3.connect(tmp_path / "plan.db")) as db:
            plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}")]
    finally:
        await store.close()
    assert plan == ["SCAN outbox USING INDEX outbox_pending_order"]


async def test_a_message_is_claimed_by_one_sender(storage: Storage) -> None:
    assert await storage.enqueue(None, NewOutbox("note", 7))
    now = datetime.now(UTC) + timedelta(seconds=1)
    (message,) = await storage.due_outbox(now)
    lease = now + timedelta(minutes=1)
    claims = await asyncio.gather(
        *(storage.claim_outbox(message.id, now, lease) for _ in range(10))
    )
    assert claims.count(True) == 1
    assert await storage.due_outbox(now) == []  # held while its sender works
    assert [m.id for m in await storage.due_outbox(lease)] == [message.id]  # freed if it died
    await storage.mark_sent(message.id)
    assert not await storage.claim_outbox(message.id, lease, lease + timedelta(minutes=1))


async def test_inbound_events_are_stored_once(storage: Storage) -> None:
    order_id = await awaiting(storage)
    first = await storage.record_inbound("redoya", "return:X", order_id, b"body")
    assert first is not None
    assert await storage.record_inbound("redoya", "return:X", order_id, b"body") is None
    assert [e.id for e in await storage.unprocessed_inbound()] == [first]
    now = datetime.now(UTC)
    assert [e.id for e in await storage.unprocessed_inbound(due_at=now)] == [first]
    await storage.schedule_check(order_id, now + timedelta(minutes=1), attempts=1)  # backing off
    assert await storage.unprocessed_inbound(due_at=now) == []
    assert [e.id for e in await storage.unprocessed_inbound()] == [first]
    later = await storage.record_inbound("redoya", "callback:Y", None, b"body")  # no order
    due = [e.id for e in await storage.unprocessed_inbound(due_at=now + timedelta(minutes=1))]
    assert due == [first, later]
    assert [e.id for e in await storage.unprocessed_inbound(after=first)] == [later]
    await storage.mark_inbound_processed(first)
    await storage.mark_inbound_processed(later)  # type: ignore[arg-type]
    assert await storage.unprocessed_inbound() == []


async def test_the_inbox_forgets_processed_events_oldest_first(storage: Storage) -> None:
    """Only events processed and received before the cutoff go, oldest first, a batch at a
    time; an event still to be confirmed stays however old it is."""
    order_id = await awaiting(storage)
    before = datetime.now(UTC)
    old = [
        await storage.record_inbound("redoya", f"callback:{n}", order_id, b"b", processed=True)
        for n in range(3)
    ]
    pending = await storage.record_inbound("redoya", "callback:P", order_id, b"b")
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    assert await storage.prune_inbound(before, limit=10) == 0  # none arrived before
    assert await storage.prune_inbound(cutoff, limit=2) == 2
    kept = [e.id for e in await storage.inbound_for_order(order_id)]
    assert kept == [old[2], pending]
    assert await storage.prune_inbound(cutoff) == 1
    assert [e.id for e in await storage.inbound_for_order(order_id)] == [pending]
    assert await storage.record_inbound("redoya", "callback:0", order_id, b"b") is not None
    await storage.mark_inbound_processed(pending)  # type: ignore[arg-type]
    assert await storage.prune_inbound(cutoff) == 1  # processed now: it goes too


async def test_a_store_whose_caller_gave_up_is_written_all_the_same(storage: Storage) -> None:
    """A callback's request cancelled before its batch is written (the provider hung up): the
    event is stored all the same, the provider's retry finds it there, and the others in the
    batch get their answers (the writer passes over the given-up caller)."""
    order_id = await awaiting(storage)
    given_up = asyncio.ensure_future(storage.record_inbound("redoya", "callback:A", order_id, b"a"))
    kept = asyncio.ensure_future(storage.record_inbound("redoya", "callback:B", order_id, b"b"))
    await asyncio.sleep(0)  # both in the batch
    given_up.cancel()
    assert await asyncio.wait_for(kept, 10) is not None
    with pytest.raises(asyncio.CancelledError):
        await given_up
    assert await storage.record_inbound("redoya", "callback:A", order_id, b"a") is None
    stored = {e.event_key for e in await storage.inbound_for_order(order_id)}
    assert stored == {"callback:A", "callback:B"}


async def test_a_transition_that_waited_for_a_lock_reads_the_state_left(
    postgres_url: str,
) -> None:
    """PostgreSQL's one-statement transition locks the row before it reads the state: one that
    waited for another transaction's lock sees what that one left, never its own snapshot."""
    storage = PostgresStorage(postgres_url)
    await storage.open()
    side = await asyncpg.connect(postgres_url)  # its search_path from the URL, as the storage
    try:
        order_id = await awaiting(storage)
        cancel = side.transaction()
        await cancel.start()
        await side.execute("UPDATE orders SET state = 'cancelled' WHERE id = $1", order_id)
        paying = asyncio.ensure_future(
            storage.transition(order_id, S.AWAITING_PAYMENT, S.PAID, actor="callback")
        )
        await asyncio.sleep(0.3)
        assert not paying.done()  # waiting for the side's lock
        await cancel.commit()
        assert await asyncio.wait_for(paying, 10) is None
        assert (await storage.get_order(order_id)).state is S.CANCELLED  # type: ignore[union-attr]
    finally:
        await side.close()
        await storage.close()


async def test_a_pooled_connection_goes_back_without_a_reset_trip(postgres_url: str) -> None:
    """Each use of PostgreSQL's pool sends its own statements only, not asyncpg's reset script
    after them (a trip to the server on every release): this code leaves no session state."""
    storage = PostgresStorage(postgres_url, min_size=2, max_size=2)
    await storage.open()
    try:
        order_id = await awaiting(storage)
        async with traced(storage) as seen:
            await storage.get_order_head(order_id)
            await storage.record_inbound("redoya", "callback:A", order_id, b"a")
            await storage.get_order(order_id)
        sent = [statement.sql for statement in seen]
        assert sum(" orders " in sql for sql in sent) == 2  # the logger saw both reads
        assert not any("RESET ALL" in sql for sql in sent)
    finally:
        await storage.close()


async def test_refunds_are_idempotent_by_key(storage: Storage) -> None:
    order_id = await awaiting(storage)
    refund, created = await storage.create_refund(order_id, Money(500, "TRY"), "k1", "admin:1")
    again, created_again = await storage.create_refund(order_id, Money(500, "TRY"), "k1", "admin:1")
    assert created
    assert not created_again
    assert again.id == refund.id
    done = await storage.finish_refund(refund.id, "done", "OK")
    assert done.state == "done"
    assert [r.id for r in await storage.refunds_for_order(order_id)] == [refund.id]


async def test_one_open_refund_per_order(storage: Storage) -> None:
    """Two admin questions (two keys) for one order: only one refund may be in flight; once it
    ends (rejected here), a new attempt may begin."""
    order_id = await awaiting(storage)
    first, created = await storage.create_refund(order_id, Money(500, "TRY"), "q1", "admin:1")
    second, created_second = await storage.create_refund(
        order_id, Money(500, "TRY"), "q2", "admin:2"
    )
    assert created
    assert not created_second
    assert (second.id, second.idempotency_key) == (first.id, "q1")  # the open one, not q2
    both = await asyncio.gather(
        *(storage.create_refund(order_id, Money(500, "TRY"), f"c{n}", "admin:3") for n in range(5))
    )
    assert not any(created for _, created in both)
    await storage.finish_refund(first.id, "rejected", "NO")
    _, created_again = await storage.create_refund(order_id, Money(500, "TRY"), "q2", "a:1")
    assert created_again
    assert [r.idempotency_key for r in await storage.refunds_for_order(order_id)] == ["q1", "q2"]


async def test_saved_cards_and_locale(storage: Storage) -> None:
    card = await storage.save_card(7, "payture", "c-1", "411111xxxxxx1111")
    assert (await storage.save_card(7, "payture", "c-1", "411111xxxxxx1111")).id == card.id
    assert [c.card_name for c in await storage.saved_cards(7, "payture")] == ["411111xxxxxx1111"]
    assert not await storage.forget_card(8, card.id)  # not theirs
    assert await storage.forget_card(7, card.id)
    assert await storage.saved_cards(7) == []
    assert await storage.get_user_locale(7) is None
    await storage.set_user_locale(7, "ru")
    await storage.set_user_locale(7, "tr")
    assert await storage.get_user_locale(7) == "tr"


async def test_due_for_check_orders_and_paging(storage: Storage) -> None:
    ids = [await awaiting(storage, n, user_id=5) for n in range(1, 6)]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert [o.id for o in await storage.due_for_check(later, limit=3)] == ids[:3]
    assert await storage.due_for_check(datetime.now(UTC) - timedelta(minutes=1)) == []
    page = await storage.orders_for_user(5, limit=2, offset=1)
    assert [o.id for o in page] == [ids[3], ids[2]]


async def test_a_due_order_is_claimed_by_one_sweep(storage: Storage) -> None:
    order_id = await awaiting(storage)
    due = datetime.now(UTC) + timedelta(minutes=1)
    lease = due + timedelta(minutes=2)
    claims = await asyncio.gather(*(storage.claim_check(order_id, due, lease) for _ in range(10)))
    assert claims.count(True) == 1
    assert await storage.due_for_check(due) == []
    assert [o.id for o in await storage.due_for_check(lease)] == [order_id]
    await storage.transition(order_id, S.AWAITING_PAYMENT, S.PAID, actor="x")
    assert not await storage.claim_check(order_id, lease, lease + timedelta(minutes=2))


async def paid_order(
    storage: Storage, n: int, provider: str, total: Money, refunds: tuple[int, ...] = ()
) -> int:
    """An order paid now, with `refunds` (minor units) done one after another like
    bot/core/refunds.py does them: a pending row, refund_pending, then done with the order."""
    order = await storage.create_order(replace(new_order(n), provider=provider, total=total))
    await storage.set_checkout(
        order.id,
        pay_url="https://pay.example/x",
        provider_payment_id=f"p-{n}",
        expires_at=None,
        next_check_at=None,
    )
    await storage.transition(order.id, S.AWAITING_PAYMENT, S.PAID, actor="x", paid=total)
    refunded = 0
    for i, amount in enumerate(refunds):
        row, _ = await storage.create_refund(
            order.id, Money(amount, total.currency), f"r{n}-{i}", "x"
        )
        state = (await storage.get_order(order.id)).state  # type: ignore[union-attr]
        await storage.transition(order.id, state, S.REFUND_PENDING, actor="x")
        refunded += amount
        target = S.REFUNDED if refunded == total.amount else S.PARTIALLY_REFUNDED
        await storage.transition(
            order.id,
            S.REFUND_PENDING,
            target,
            actor="x",
            refunded=Money(refunded, total.currency),
            refund=RefundEnd(row.id, "done", "MANUAL" if i else ""),
        )
    return order.id


async def test_figures_per_currency_and_provider_keep_refunded_sales(storage: Storage) -> None:
    start = datetime.now(UTC)
    await paid_order(storage, 1, "redoya", Money(23500, "TRY"))
    await paid_order(storage, 2, "redoya", Money(10000, "TRY"), (4000,))  # partly refunded
    await paid_order(storage, 3, "payture", Money(45000, "RUB"), (45000,))  # refunded
    await paid_order(storage, 4, "payture", Money(20000, "TRY"), (5000, 15000))  # two refunds
    rejected = await paid_order(storage, 5, "payture", Money(1000, "RUB"))
    row, _ = await storage.create_refund(rejected, Money(1000, "RUB"), "rejected", "x")
    await storage.finish_refund(row.id, "rejected", "NO")  # never counted
    await awaiting(storage, 6)
    figures = await storage.figures(start - timedelta(seconds=1))
    assert figures.orders_by_state == {
        S.PAID: 2,
        S.PARTIALLY_REFUNDED: 1,
        S.REFUNDED: 2,
        S.AWAITING_PAYMENT: 1,
    }
    assert figures.currencies() == ("RUB", "TRY")
    rub = figures.total("RUB")
    assert (rub.orders, rub.paid, rub.refunded, rub.net) == (
        2,
        Money(46000, "RUB"),
        Money(45000, "RUB"),
        Money(1000, "RUB"),
    )
    try_ = figures.total("TRY")
    assert (try_.orders, try_.paid, try_.refunded, try_.net) == (
        3,
        Money(53500, "TRY"),
        Money(24000, "TRY"),
        Money(29500, "TRY"),
    )
    assert [(t.provider, t.orders, t.paid.amount, t.refunded.amount) for t in figures.takings] == [
        ("payture", 2, 46000, 45000),
        ("payture", 1, 20000, 20000),
        ("redoya", 2, 33500, 4000),
    ]
    assert await storage.figures(until=start - timedelta(seconds=1)) == replace(
        figures, orders_by_state={}, takings=()
    )


async def test_a_refund_counts_in_its_own_window(storage: Storage) -> None:
    """A sale in one window refunded in the next: paid in the first, refunded (net below zero)
    in the second, and the sale does not vanish from the first."""
    order_id = await paid_order(storage, 1, "redoya", Money(10000, "TRY"))
    cut = datetime.now(UTC)
    row, _ = await storage.create_refund(order_id, Money(10000, "TRY"), "k", "x")
    await storage.transition(order_id, S.PAID, S.REFUND_PENDING, actor="x")
    await storage.transition(
        order_id,
        S.REFUND_PENDING,
        S.REFUNDED,
        actor="x",
        refunded=Money(10000, "TRY"),
        refund=RefundEnd(row.id, "done", "MANUAL"),
    )
    before, after = await storage.figures(until=cut), await storage.figures(cut)
    assert before.total("TRY").paid == Money(10000, "TRY")
    assert before.total("TRY").refunded == Money(0, "TRY")
    assert before.orders_by_state == {S.REFUNDED: 1}  # created then, refunded now
    assert after.total("TRY").net == Money(-10000, "TRY")
    assert after.total("TRY").orders == 0
    assert after.orders_by_state == {}


async def test_paid_slots_are_quarter_hours_per_currency(storage: Storage) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    await paid_order(storage, 1, "redoya", Money(23500, "TRY"))
    await paid_order(storage, 2, "redoya", Money(10000, "TRY"), (10000,))
    await paid_order(storage, 3, "payture", Money(45000, "RUB"))
    slots = await storage.paid_slots(start, datetime.now(UTC) + timedelta(seconds=1))
    assert {m.currency for _, m in slots} == {"RUB", "TRY"}
    assert sum(m.amount for _, m in slots if m.currency == "TRY") == 33500  # refunded or not
    assert sum(m.amount for _, m in slots if m.currency == "RUB") == 45000
    for slot, _ in slots:
        assert slot.tzinfo is not None
        assert slot.utcoffset() == timedelta(0)
        assert (slot.minute % 15, slot.second, slot.microsecond) == (0, 0, 0)
        assert start - timedelta(minutes=15) < slot <= datetime.now(UTC)
    assert await storage.paid_slots(start - timedelta(days=1), start) == []


async def test_export_orders_in_keyset_batches(storage: Storage) -> None:
    first = await awaiting(storage, 1)
    cut = datetime.now(UTC)
    ids = [await awaiting(storage, n) for n in range(2, 9)]
    batches = [batch async for batch in storage.export_orders(cut, batch=3)]
    assert [[o.id for o in b] for b in batches] == [ids[:3], ids[3:6], ids[6:]]
    assert all(len(o.items) == 2 for b in batches for o in b)
    everything = [o.id async for b in storage.export_orders() for o in b]
    assert everything == [first, *ids]


async def test_the_daily_report_is_queued_once_per_day(storage: Storage) -> None:
    day = NewOutbox("merchant_daily_report:2026-12-01", -100, {"day": "2026-12-01"})
    queued = await asyncio.gather(*(storage.enqueue(None, day) for _ in range(5)))
    assert queued.count(True) == 1
    assert await storage.enqueue(None, replace(day, kind="merchant_daily_report:2026-12-02"))
    assert await storage.enqueue(None, NewOutbox("note", 7))  # other order-less rows as before
    assert await storage.enqueue(None, NewOutbox("note", 7))


async def test_data_and_migrations_survive_reopen(url: str) -> None:
    first = storage_from_url(url)
    await first.open()
    order = await first.create_order(new_order())
    await first.close()
    second = storage_from_url(url)
    await second.open()
    assert (await second.get_order(order.id)) == order
    assert await second.ping()
    await second.close()


def test_storage_urls_are_checked_without_leaking_passwords() -> None:
    with pytest.raises(ValueError, match="sqlite") as caught:
        storage_from_url("mysql://root:hunter2@db.example/shop")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValueError, match="sqlite:///"):
        storage_from_url("sqlite://relative.db")


async def test_an_unreachable_postgres_is_a_clear_error_without_the_password() -> None:
    store = storage_from_url("postgresql://shop:hunter2@127.0.0.1:1/shop")
    with pytest.raises(StorageUnavailable, match=r"127\.0\.0\.1:1/shop") as caught:
        await store.open()
    assert "hunter2" not in str(caught.value)
    assert not await store.ping()


async def test_replicas_opening_together_migrate_once(postgres_url: str) -> None:
    stores = [storage_from_url(postgres_url) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    order = await stores[0].create_order(new_order())
    assert await stores[3].get_order(order.id) == order
    for store in stores:
        await store.close()


async def test_postgres_behind_pgbouncer_can_turn_the_statement_cache_off(
    postgres_url: str,
) -> None:
    store = storage_from_url(f"{postgres_url}&statement_cache_size=0")
    await store.open()
    try:
        order = await store.create_order(new_order())
        assert await store.get_order(order.id) == order
    finally:
        await store.close()
    with pytest.raises(ValueError, match="whole number"):
        storage_from_url(f"{postgres_url}&statement_cache_size=lots")


async def test_a_fulfilment_step_rechecks_the_payment_state(storage: Storage) -> None:
    """The step and the payment state are read under one lock: a refund that landed after the
    caller looked keeps a refunded order from shipping."""
    order_id = await awaiting(storage)
    tl = Money(23500, "TRY")
    await storage.transition(order_id, S.AWAITING_PAYMENT, S.PAID, actor="x", paid=tl)
    fulfillable = (S.PAID, S.PARTIALLY_REFUNDED, S.REFUND_PENDING)
    await storage.transition(order_id, S.PAID, S.REFUNDED, actor="admin:1", refunded=tl)
    shipped = await storage.set_fulfilment(
        order_id, F.NEW, F.SHIPPED, actor="merchant:1", states=fulfillable
    )
    assert shipped is None
    order = await storage.get_order(order_id)
    assert order is not None
    assert (order.state, order.fulfilment) == (S.REFUNDED, F.NEW)
    assert not [e for e in await storage.audit_trail(order_id) if "fulfilment" in e.detail]
    other = await awaiting(storage, 2)
    await storage.transition(other, S.AWAITING_PAYMENT, S.PAID, actor="x", paid=tl)
    moved = await storage.set_fulfilment(
        other, F.NEW, F.SHIPPED, actor="merchant:1", states=fulfillable
    )
    assert moved is not None
    assert moved.fulfilment is F.SHIPPED


async def test_a_refund_row_ends_with_its_order_in_one_transaction(storage: Storage) -> None:
    order_id = await awaiting(storage)
    tl = Money(23500, "TRY")
    await storage.transition(order_id, S.AWAITING_PAYMENT, S.PAID, actor="x", paid=tl)
    refund, _ = await storage.create_refund(order_id, tl, "r1", "admin:1")
    await storage.transition(order_id, S.PAID, S.REFUND_PENDING, actor="admin:1")
    done = await storage.transition(
        order_id,
        S.REFUND_PENDING,
        S.REFUNDED,
        actor="admin:1",
        refunded=tl,
        refund=RefundEnd(refund.id, "done", "OK"),
    )
    assert done is not None
    assert done.refunded == tl
    (row,) = await storage.refunds_for_order(order_id)
    assert (row.state, row.provider_code) == ("done", "OK")
    # a lost compare-and-set leaves the row as it was
    refund2, _ = await storage.create_refund(order_id, tl, "r2", "admin:1")
    lost = await storage.transition(
        order_id, S.REFUND_PENDING, S.PAID, actor="x", refund=RefundEnd(refund2.id, "rejected")
    )
    assert lost is None
    assert [r.state for r in await storage.refunds_for_order(order_id)] == ["done", "pending"]


async def test_buyer_delivery_and_fulfilment_steps(storage: Storage) -> None:
    delivered = Delivery("Aylin Kaya", "+905321234567", "Moda Cd. 12, Kadıköy", "ring twice")
    new = replace(new_order(1), buyer=Buyer("Aylin", "aylin_k"), delivery=delivered)
    order = await storage.create_order(new)
    assert (order.buyer, order.delivery, order.fulfilment) == (new.buyer, delivered, F.NEW)
    assert (await storage.create_order(new_order(2))).delivery is None
    assert await storage.last_delivery(7) == delivered
    assert await storage.last_delivery(8) is None

    note = NewOutbox("shipped", 7, {"tracking": "TR-1"})
    shipped = await storage.set_fulfilment(
        order.id, F.NEW, F.SHIPPED, actor="admin:1", tracking="TR-1", outbox=[note]
    )
    assert shipped is not None
    assert (shipped.fulfilment, shipped.tracking) == (F.SHIPPED, "TR-1")
    assert shipped.state is order.state  # the payment state is left alone
    assert await storage.set_fulfilment(order.id, F.NEW, F.SHIPPED, actor="admin:2") is None
    done = await storage.set_fulfilment(order.id, F.SHIPPED, F.DELIVERED, actor="admin:1")
    assert done is not None
    assert done.tracking == "TR-1"
    with pytest.raises(IllegalTransition):
        await storage.set_fulfilment(order.id, F.DELIVERED, F.SHIPPED, actor="admin:1")
    trail = [e.detail for e in await storage.audit_trail(order.id)]
    assert trail[-2:] == ["fulfilment new -> shipped: TR-1", "fulfilment shipped -> delivered"]
    due = await storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1))
    assert [m.kind for m in due] == ["shipped"]


async def test_staff_search_filters_pages_and_finds(storage: Storage) -> None:
    ids = []
    for n in range(1, 6):
        ids.append(await awaiting(storage, n, user_id=7 if n % 2 else 8))
    aylin = replace(
        new_order(6, user_id=9),
        buyer=Buyer("Şule Öztürk", "sule_o"),
        delivery=Delivery("ŞULE ÖZTÜRK", "+90 532 123-45-67", "Moda 12"),
    )
    found = await storage.create_order(aylin)
    await storage.attach_payment(ids[0], "pay_100%_x", {})
    page = await storage.search_orders(OrderQuery(), limit=2)
    assert [o.id for o in page] == [found.id, ids[4]]
    assert [o.id for o in await storage.search_orders(OrderQuery(), limit=2, offset=4)] == [
        ids[1],
        ids[0],
    ]
    awaiting_7 = OrderQuery(states=(S.AWAITING_PAYMENT,), user_id=7, provider="redoya")
    assert [o.id for o in await storage.search_orders(awaiting_7)] == [ids[4], ids[2], ids[0]]
    later = OrderQuery(since=datetime.now(UTC) + timedelta(hours=1))
    assert await storage.search_orders(later) == []
    await storage.set_fulfilment(ids[1], Fulfilment.NEW, Fulfilment.SHIPPED, actor="test")
    shipped = OrderQuery(fulfilment=(Fulfilment.SHIPPED, Fulfilment.DELIVERED))
    assert [o.id for o in await storage.search_orders(shipped)] == [ids[1]]
    fresh = OrderQuery(fulfilment=(Fulfilment.NEW,), user_id=8)
    assert [o.id for o in await storage.search_orders(fresh)] == [ids[3]]

    async def find(text: str) -> list[int]:
        return [o.id for o in await storage.search_orders(OrderQuery(text=text))]

    assert await find("şule") == [found.id]  # casefolded, not ASCII-only
    assert await find("@SULE_O") == [found.id]
    assert await find("5321234567") == [found.id]  # phone digits, spaces and dashes aside
    assert await find(str(ids[3])) == [ids[3]]
    assert await find("pay_100%_x") == [ids[0]]
    assert await find("%") == []  # a wildcard is a plain character
