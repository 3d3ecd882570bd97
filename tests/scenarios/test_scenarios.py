"""The shared scenario suite (DESIGN.md, "Adding a provider"): each scenario runs on every
provider through its driver, and checks the chat (customer, merchant, admins), the order's
state and its audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bot.app import BotApp, Parts
from bot.config import Settings
from sandbox.botuser import BotUser
from sandbox.telegram import TelegramServer
from storage.base import Order, OrderState
from tests.conftest import ADMIN, both_databases
from tests.flows import browse, eventually
from tests.scenarios.drivers import Driver, settled

S = OrderState
PAID_TEXT = "Payment received"


def texts(messages: list[dict]) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in messages]


async def count(user: BotUser, text: str) -> int:
    return sum(text in t for t in texts(await user.bot_messages()))


async def states(app: Parts, order: Order) -> list[OrderState]:
    return [entry.to_state for entry in await app.checkout.audit(order.id)]


async def told_once(app: Parts, user: BotUser, merchant: BotUser, order: Order) -> None:
    """Paid exactly once: one audit row, one message to the customer, one to the merchant."""
    await user.wait_message(f"{PAID_TEXT} for order #{order.id}")
    await merchant.wait_message(f"Order #{order.id} paid")
    await settled(app)
    assert (await app.checkout.order(order.id)).state is S.PAID
    assert (await states(app, order)).count(S.PAID) == 1
    assert await count(user, PAID_TEXT) == 1
    assert await count(merchant, f"Order #{order.id} paid") == 1


async def untouched(app: Parts, order: Order) -> None:
    """Still awaiting payment, and nothing moved it anywhere else."""
    await settled(app)
    assert (await app.checkout.order(order.id)).state is S.AWAITING_PAYMENT
    assert S.PAID not in await states(app, order)
    assert S.NEEDS_REVIEW not in await states(app, order)


@both_databases
async def test_happy_path(driver: Driver, app: Parts, user: BotUser, merchant: BotUser) -> None:
    message, order = await driver.order()
    [(status, page)] = await driver.deliver(order, await driver.pay(message, "paid"))
    assert (status, PAID_TEXT in page) == (200, True)
    await told_once(app, user, merchant, order)
    paid = await app.checkout.order(order.id)
    assert paid.paid == order.total
    assert paid.provider_payment_id is not None


async def test_failure(driver: Driver, app: Parts, user: BotUser, merchant: BotUser) -> None:
    message, order = await driver.order()
    [(status, page)] = await driver.deliver(order, await driver.pay(message, "failed"))
    assert (status, "not paid" in page) == (200, True)
    await user.wait_message("did not go through")
    await settled(app)
    assert (await app.checkout.order(order.id)).state is S.FAILED
    assert (await states(app, order)).count(S.FAILED) == 1
    assert await count(user, "did not go through") == 1
    assert await count(merchant, "paid") == 0


async def test_duplicate(driver: Driver, app: Parts, user: BotUser, merchant: BotUser) -> None:
    message, order = await driver.order()
    pages = await driver.deliver(order, await driver.pay(message, "paid"), times=2)
    assert all(status == 200 and PAID_TEXT in page for status, page in pages)
    await told_once(app, user, merchant, order)


@both_databases
async def test_concurrent(driver: Driver, app: Parts, user: BotUser, merchant: BotUser) -> None:
    message, order = await driver.order()
    redirect = await driver.pay(message, "paid")
    callbacks = [driver.deliver(order, redirect)] if driver.supports_callbacks else []
    results = await asyncio.gather(*(browse(driver.http, redirect) for _ in range(20)), *callbacks)
    assert all(status == 200 for status, _ in results[:20])
    await told_once(app, user, merchant, order)


async def test_forged(driver: Driver, app: Parts, user: BotUser) -> None:
    message, order = await driver.order()
    redirect = await driver.pay(message, "pending")  # the order is real but not paid
    status, page = await driver.come_back(driver.forged_return(order, redirect))
    assert (status, "Checking your payment" in page) == (200, True)
    forged = driver.forged_success(order)
    assert await driver.notify(order, forged, key="0" * 32) == 403
    assert await driver.notify(order, forged, key="") != 403  # the right key: a hint at most
    assert await driver.notify(order, forged, key=None) == driver.keyless_callback
    await untouched(app, order)
    assert (await app.checkout.order(order.id)).provider_payment_id == order.provider_payment_id
    assert await count(user, PAID_TEXT) == 0


async def test_provider_down_then_back(
    driver: Driver, app: Parts, user: BotUser, merchant: BotUser
) -> None:
    if not driver.status_api:
        pytest.skip("no status API to go down: the callback's retries are tested on their own")
    message, order = await driver.order()
    redirect = await driver.pay(message, "paid")
    driver.go_down()
    [(status, page)] = await driver.deliver(order, redirect)
    assert (status, "Checking your payment" in page) == (200, True)
    await untouched(app, order)

    driver.come_back_up()
    waiting = await app.checkout.order(order.id)
    assert waiting.next_check_at is not None
    await app.reconciler.run_once(now=waiting.next_check_at)
    await told_once(app, user, merchant, order)
    [moved] = [e for e in await app.checkout.audit(order.id) if e.to_state is S.PAID]
    assert moved.actor in ("sweep", "replay:return", "replay:callback")


async def test_amount_mismatch(
    driver: Driver, app: Parts, user: BotUser, telegram: TelegramServer
) -> None:
    message, order = await driver.order()
    driver.underpay(order)
    [(_, page)] = await driver.deliver(order, await driver.pay(message, "paid"))
    if driver.mismatch_refused:  # the truth must be about this order: refused, nothing moves
        assert "Checking your payment" in page
        await untouched(app, order)
        assert await count(user, PAID_TEXT) == 0
        return
    assert "checking this payment by hand" in page
    await user.wait_message("by hand")
    admin = BotUser(telegram.url, ADMIN, session=driver.http)
    assert "the provider says" in (await admin.wait_message("needs review"))["text"]
    await settled(app)
    assert (await app.checkout.order(order.id)).state is S.NEEDS_REVIEW
    assert S.PAID not in await states(app, order)
    assert await count(user, PAID_TEXT) == 0


async def test_restart_mid_confirm(
    bare_driver: Driver,
    make_settings: Callable[..., Settings],
    user: BotUser,
    merchant: BotUser,
) -> None:
    driver = bare_driver
    if not driver.status_api:
        pytest.skip("no provider call to be stopped in: test_ktwidget replays a stored callback")
    settings = make_settings()
    async with BotApp(settings) as app:
        driver.app = app
        message, order = await driver.order()
        redirect = await driver.pay(message, "paid")
        driver.slow_down(30)  # the confirm is waiting on the provider when the bot stops
        before = len(await app.storage.inbound_for_order(order.id))  # a bridge page's post
        back = asyncio.create_task(driver.come_back(redirect))

        async def return_stored() -> bool:
            return len(await app.storage.inbound_for_order(order.id)) > before

        await eventually(return_stored)  # stored...
    # ...and the bot stopped before confirming it
    driver.slow_down(0)
    await asyncio.gather(back, return_exceptions=True)  # its connection was cut by the stop

    async with BotApp(settings) as app:  # start-up replays the stored return
        driver.app = app
        waiting = await app.checkout.order(order.id)
        if waiting.check_attempts and waiting.next_check_at:
            # checked before the stop (Pocket: right after its invoice opened): the replay
            # waits for the order's next check rather than asking a provider again at once
            await app.reconciler.run_once(now=waiting.next_check_at)
        await told_once(app, user, merchant, order)
        assert any(e.actor == "replay:return" for e in await app.checkout.audit(order.id))
