"""The Storage contract on both backends, a real SQLite file and the machine's PostgreSQL: state
table, compare-and-set, atomic outbox, exactly-once constraints, persistence across reopen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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
    OrderItem,
    OrderQuery,
    OrderState,
    RefundEnd,
    Storage,
)

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
        outbox=[NewOutbox("paid", 7), NewOutbox("merchant_paid", -1)],
        paid=Money(23500, "TRY"),
    )
    assert paid is not None
    assert paid.state is S.PAID
    assert paid.paid_at is not None
    assert paid.next_check_at is None
    assert await storage.transition(order_id, S.AWAITING_PAYMENT, S.PAID, actor="x") is None
    trail = await storage.audit_trail(order_id)
    assert [(e.from_state, e.to_state) for e in trail][-1] == (S.AWAITING_PAYMENT, S.PAID)
    due = await storage.due_outbox(datetime.now(UTC) + timedelta(seconds=1))
    assert sorted(m.kind for m in due) == ["merchant_paid", "paid"]


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
    await storage.mark_inbound_processed(first)
    await storage.mark_inbound_processed(later)  # type: ignore[arg-type]
    assert await storage.unprocessed_inbound() == []


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


async def test_figures(storage: Storage) -> None:
    order_id = await awaiting(storage)
    await storage.transition(
        order_id, S.AWAITING_PAYMENT, S.PAID, actor="x", paid=Money(23500, "TRY")
    )
    await awaiting(storage, 2)
    figures = await storage.figures(datetime.now(UTC) - timedelta(days=1))
    assert figures.orders_by_state == {"paid": 1, "awaiting_payment": 1}
    assert figures.paid == (Money(23500, "TRY"),)


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

    async def find(text: str) -> list[int]:
        return [o.id for o in await storage.search_orders(OrderQuery(text=text))]

    assert await find("şule") == [found.id]  # casefolded, not ASCII-only
    assert await find("@SULE_O") == [found.id]
    assert await find("5321234567") == [found.id]  # phone digits, spaces and dashes aside
    assert await find(str(ids[3])) == [ids[3]]
    assert await find("pay_100%_x") == [ids[0]]
    assert await find("%") == []  # a wildcard is a plain character
