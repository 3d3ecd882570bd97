"""The reconcile sweep reads only what is due: every query one pass runs, traced from the real
app against the emulators, is planned as an index lookup, never a read of a whole table (issue
26, target 6; the timings are bench/sweep.py's, never asserted here)."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.sweep import full_scans, one, plans, queries
from sandbox.base import FakeServer
from tests.conftest import both_databases

# every job of a pass asks at least these (a shape's start is enough to know it)
EXPECTED = (
    "SELECT e.* FROM inbound_events e LEFT JOIN orders o",  # replay_inbound
    "SELECT * FROM refunds WHERE state = ? AND updated_at < ?",  # finish_refunds
    "SELECT * FROM inbound_events WHERE order_id = ?",  # confirm: a Redoya order's returns
    "UPDATE orders SET next_check_at = ? WHERE id = ?",  # claim_check
    "UPDATE orders SET next_check_at = ?, check_attempts = ? WHERE id = ?",  # schedule_check
    "DELETE FROM inbound_events WHERE id IN",  # prune_inbox
)
WHERE_ORDERS = ("state = ? AND created_at < ?", "next_check_at <= ?", "provider = ? AND paid_at")


@both_databases
async def test_every_query_of_a_pass_uses_an_index(
    database_url: str,
    telegram: FakeServer,
    redoya: FakeServer,
    payture: FakeServer,
    ktwidget: FakeServer,
    pocket: FakeServer,
    erp: FakeServer,
) -> None:
    servers = {s.name: s for s in (telegram, redoya, payture, ktwidget, pocket, erp)}
    now = datetime.now(UTC)
    _, done = await one(servers, database_url, orders=400, due=40, trace=True, now=now)
    found = queries(done.seen)
    shapes = list(found)
    for start in EXPECTED:
        assert any(s.startswith(start) for s in shapes), (start, shapes)
    for where in WHERE_ORDERS:  # stale_created, due_for_check, paid_between (the ledger)
        assert any("FROM orders WHERE" in s and where in s for s in shapes), (where, shapes)
    scans = {
        sql: full_scans(plan)
        for sql, plan in (await plans(database_url, found, small=True)).items()
    }
    assert {sql: lines for sql, lines in scans.items() if lines} == {}
