"""Database faults: PostgreSQL restarted mid-run, SQLite locked by another process or its
disk full. Part of `python -m bench.reliability.faults` (see there); the suite runs the small
sizes from tests/test_reliability_faults.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping

import aiohttp

from bench.reliability.faults import KZT_TEA, Row, settings, until
from bot.app import BotApp
from bot.core import Order, OrderState
from sandbox.base import FakeServer
from sandbox.ktwidget import KtwidgetServer


async def sqlite_fault(
    servers: Mapping[str, FakeServer], directory: str, *, fault: str, orders: int = 2
) -> Row:
    """KTWidget (the callback is the truth) posts its callbacks while the SQLite file is
    locked by another process's BEGIN EXCLUSIVE (`fault="locked"`) or its file system is full
    (`fault="full"`, `directory` a small tmpfs): no callback is answered ok, KTWidget retries,
    and once the fault is gone every order ends paid with nothing half-written."""
    ktwidget = servers["ktwidget"]
    assert isinstance(ktwidget, KtwidgetServer)
    path = f"{directory}/bot.db"
    async with BotApp(settings(servers, f"sqlite:///{path}"), background=False) as app:
        placed = [
            await app.checkout.place_order(
                user_id=73_000 + n, chat_id=73_000 + n, lines=[KZT_TEA], provider_name="ktwidget"
            )
            for n in range(orders)
        ]
        lock = sqlite3.connect(path, isolation_level=None, timeout=0)
        filler = f"{directory}/filler"
        if fault == "locked":
            lock.execute("BEGIN EXCLUSIVE")
        else:
            fill(filler)
        try:
            async with aiohttp.ClientSession() as http:
                for order in placed:
                    async with http.post(
                        f"{ktwidget.url}/sandbox/pay",
                        json={"url": order.pay_url, "outcome": "completed"},
                    ) as answer:
                        assert answer.status == 200, await answer.text()
            keys = [o.provider_payment_id or "" for o in placed]
            await until(
                lambda: all(
                    any(d.http_status for d in ktwidget.deliveries.get(k, [])) for k in keys
                ),
                within=30 + 10 * orders,  # locked: each write waits out the 5 s busy timeout
            )
            refused = [d for k in keys for d in ktwidget.deliveries[k] if not d.accepted]
            during = [await app.checkout.order(o.id) for o in placed]
        finally:
            if fault == "locked":
                lock.execute("ROLLBACK")
            else:
                os.remove(filler)
            lock.close()
        await ktwidget.settle()
        await app.reconciler.run_once()
        states = [await app.checkout.order(o.id) for o in placed]
        lost = sum(o is None or o.state is not OrderState.PAID for o in states)
        accepted = sum(d.accepted for k in keys for d in ktwidget.deliveries[k])
    wrong = consistent(path)
    return Row(
        f"sqlite {fault}",
        f"{orders} KTWidget callbacks",
        f"{'BEGIN EXCLUSIVE held' if fault == 'locked' else 'tmpfs full'}: "
        f"{len(refused)} answered not ok",
        lost + len(wrong),
        max(0, accepted - orders),
        "; ".join(wrong)
        or f"states during the fault: {sorted({o.state.value for o in during if o})}",
    )


RESTART = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"


async def postgres_restart(
    servers: Mapping[str, FakeServer], database_url: str, *, orders: int = 2
) -> Row:
    """The machine's PostgreSQL restarted while KTWidget callbacks come in: /readyz answers 503
    meanwhile, the callbacks are answered not ok and retried, the bot reconnects by itself, and
    every order (one paid before the restart too) ends paid."""
    ktwidget = servers["ktwidget"]
    assert isinstance(ktwidget, KtwidgetServer)
    async with BotApp(settings(servers, database_url), background=False) as app:
        placed = [
            await app.checkout.place_order(
                user_id=74_000 + n, chat_id=74_000 + n, lines=[KZT_TEA], provider_name="ktwidget"
            )
            for n in range(orders + 1)
        ]
        ready: list[int] = []
        async with aiohttp.ClientSession() as http:

            async def kt_pay(order: Order) -> None:
                url = f"{ktwidget.url}/sandbox/pay"
                body = {"url": order.pay_url, "outcome": "completed"}
                async with http.post(url, json=body) as answer:
                    assert answer.status == 200, await answer.text()

            await kt_pay(placed[0])  # paid before the restart
            await ktwidget.settle()

            async def poll() -> None:
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"{app.web_url}/readyz") as answer:
                            ready.append(answer.status)
                    await asyncio.sleep(0.05)

            poller = asyncio.create_task(poll())
            restart = await asyncio.create_subprocess_shell(
                RESTART, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            await until(lambda: 503 in ready, within=20)
            for order in placed[1:]:
                await kt_pay(order)
            _, err = await restart.communicate()
            assert restart.returncode == 0, err.decode()
            await until(lambda: ready[-1] == 200, within=30)
            poller.cancel()
            await ktwidget.settle()
        await app.reconciler.run_once()
        states = [await app.checkout.order(o.id) for o in placed]
        lost = sum(o is None or o.state is not OrderState.PAID for o in states)
        keys = [o.provider_payment_id or "" for o in placed]
        refused = sum(not d.accepted for k in keys for d in ktwidget.deliveries[k])
        accepted = sum(d.accepted for k in keys for d in ktwidget.deliveries[k])
    return Row(
        "postgres restart",
        f"{orders + 1} KTWidget orders (1 paid before)",
        f"cluster restarted: /readyz 503 x{ready.count(503)}, {refused} callbacks not ok",
        lost,
        max(0, accepted - len(placed)),
        f"/readyz answers {sorted(set(ready))} in {len(ready)} probes, 200 again after",
    )


@contextlib.contextmanager
def small_disk(path: str, size: str = "4m") -> Iterator[str]:
    """A small tmpfs mounted at `path` (needs root), unmounted after: a disk that fills."""
    os.makedirs(path, exist_ok=True)
    mount = [shutil.which("mount") or "/bin/mount", "-t", "tmpfs", "-o", f"size={size}"]
    subprocess.run([*mount, "tmpfs", path], check=True)  # noqa: S603 - fixed arguments
    try:
        yield path
    finally:
        umount = shutil.which("umount") or "/bin/umount"
        subprocess.run([umount, "-l", path], check=False)  # noqa: S603 - fixed arguments


def fill(path: str) -> None:
    """Take every free byte of the file system `path` is on."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def consistent(path: str) -> list[str]:
    """What a SQLite database holds half-written: an order whose state is not where its audit
    rows lead, or an outbox row about an order without the transition that queues it."""
    db = sqlite3.connect(path)
    try:
        wrong = []
        for order_id, state in db.execute("SELECT id, state FROM orders"):
            last = db.execute(
                "SELECT to_state FROM audit WHERE order_id = ? ORDER BY id DESC LIMIT 1",
                (order_id,),
            ).fetchone()
            if last is None or last[0] != state:
                wrong.append(f"order {order_id} is {state}, its audit says {last}")
        for order_id, kind in db.execute(
            "SELECT order_id, kind FROM outbox WHERE order_id IS NOT NULL AND kind = 'paid'"
        ):
            paid = db.execute(
                "SELECT 1 FROM audit WHERE order_id = ? AND to_state = 'paid'", (order_id,)
            ).fetchone()
            if paid is None:
                wrong.append(f"outbox {kind} for order {order_id} without its transition")
        return wrong
    finally:
        db.close()
