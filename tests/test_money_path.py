"""The money path's loose ends: nothing stays half-made, nothing is made twice by a double press."""

from __future__ import annotations

from datetime import timedelta

import aiohttp

from bot.app import Parts
from money import Money
from sandbox.botuser import BotUser
from sandbox.redoya import RedoyaServer
from storage.base import NewOrder, OrderItem, OrderState
from tests.conftest import CUSTOMER, both_databases
from tests.flows import browse, order_product, pay


async def test_buy_now_pressed_twice_opens_one_order(app: Parts, user: BotUser) -> None:
    first = await order_product(user, "Coffee", "Cezve")
    await user.press(text="Buy now")
    second = await user.wait_message(
        predicate=lambda m: (
            m["message_id"] != first["message_id"] and (m.get("text") or "").startswith("Order #")
        )
    )
    assert second["text"].split("\n")[0] == first["text"].split("\n")[0]  # "Order #1 - ..."
    assert len(await app.checkout.orders_of(CUSTOMER, limit=5)) == 1


@both_databases
async def test_an_order_left_in_created_is_closed_by_the_sweep(app: Parts) -> None:
    """A checkout that never finished (the process died before the provider answered)."""
    stuck = await app.storage.create_order(
        NewOrder(
            user_id=CUSTOMER,
            chat_id=CUSTOMER,
            provider="redoya",
            total=Money(8500, "TRY"),
            token="stuck-token-abcdefghijkl",
            items=[OrderItem("cezve", "Cezve", 1, 8500)],
        )
    )
    await app.reconciler.run_once(now=stuck.created_at + timedelta(minutes=1))
    assert (await app.checkout.order(stuck.id)).state is OrderState.CREATED  # type: ignore[union-attr]
    await app.reconciler.run_once(now=stuck.created_at + timedelta(minutes=11))
    closed = await app.checkout.order(stuck.id)
    assert closed is not None
    assert closed.state is OrderState.FAILED
    assert (await app.checkout.audit(stuck.id))[-1].detail == "checkout did not finish"


async def test_check_payment_uses_the_return_stored_while_the_provider_was_down(
    app: Parts, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    """Redoya names its payment only on the return; a return that met an outage is stored,
    and the customer's "Check payment" must ask about that payment, not say "no payment yet"."""
    message = await order_product(user, "Coffee", "Cezve")
    redirect = await pay(http, redoya.url, message, "paid")
    redoya.verify_status_override = 500
    _, page = await browse(http, redirect)
    assert "Checking your payment" in page
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    assert order.provider_payment_id is None
    redoya.verify_status_override = None
    await user.press(text="Check payment", message_id=message["message_id"])
    assert (await user.answers())[-1]["text"] == "Paid. Thank you!"
    await user.wait_message("Payment received")
