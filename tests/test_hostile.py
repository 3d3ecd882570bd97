"""Hostile and odd input, in chat and on the web routes: each gets a clear answer, changes
nothing, and leaves no traceback in the log and no generic apology in the chat."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import pytest

from bot.app import BotApp, Parts
from bot.config import Settings
from bot.core.context import utc_now
from bot.core.serial import load_request
from bot.handlers import numbers
from bot.handlers.staff_filter import parse
from bot.locale import build_i18n
from sandbox.botuser import BotUser
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage import storage_from_url
from storage.base import Order, OrderState
from tests.conftest import ADMIN, CUSTOMER, both_databases
from tests.flows import eventually, order_product, pay

APOLOGY = "Something went wrong on our side"


@pytest.mark.parametrize("word", ["", "²", "１２", "٥", "-3", "+3", "1.0", " 7", "1" * 19])
def test_one_reading_of_the_staffs_numbers_refuses_odd_words(word: str) -> None:
    assert numbers.number(word) is None
    assert numbers.days(word) is None
    assert numbers.order_id(word) is None or word.strip().isdigit()


def test_the_staffs_numbers_are_read_the_same_by_every_command() -> None:
    assert numbers.order_id("12 5.00") == 12  # /refund 12 5.00
    assert numbers.order_id(None) is None
    assert numbers.number("1" * 18) == int("1" * 18)
    assert [numbers.days(w) for w in ("1", "36600", "36601", "0", "000001")] == [
        1,
        36600,
        None,
        None,
        None,
    ]
    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("en"):
        assert parse("7d 1001", {}).days == 7  # /orders reads days as /stats and /export do
        assert parse("36600d", {}).days == numbers.MAX_DAYS
        for odd in ("36601d", "0d", "０d", "0"):
            with pytest.raises(ValueError, match=odd):
                parse(odd, {})


async def test_odd_numbers_in_chat_get_a_clear_answer(
    app: Parts, user: BotUser, telegram: TelegramServer, http, no_tracebacks
) -> None:
    await user.send("/start")
    await user.wait_message("Catalog")
    await user.press(text="Coffee")
    await user.wait_message(predicate=lambda m: "Coffee" in (m.get("text") or ""))
    await user.press(text="Turkish coffee")
    await user.wait_message("Turkish coffee")
    await user.press(text="Add to cart")
    await user.press(text="🛒 Cart")
    await user.wait_message("Your cart")
    await user.press(text="Turkish coffee 250 g ×1")
    for typed in ("²", "١٢", "１２", "99999999999999999999999"):
        await user.press(text="Turkish coffee 250 g ×1")
        await user.wait_message("How many of")
        await user.send(typed)
        await user.wait_message("Not a number from 0 to 99")

    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.send("/stats 99999999999")
    await admin.wait_message("Usage: /stats [days]")
    await admin.send("/order 99999999999999999999999")
    await admin.wait_message("No such order")
    for amount in ("inf", "NaN", "1e999999", "-Infinity"):
        await admin.send(f"/refund 1 {amount}")
        await admin.wait_message(predicate=lambda m: "No such order" in (m.get("text") or ""))
    order = await order_product(user, "Coffee", "Cezve")
    order_id = int(order["text"].split("#")[1].split()[0])
    for amount in ("inf", "NaN", "1e999999", "1,000", "1e1", "1_0", "٥", "-5"):
        await admin.send(f"/refund {order_id} {amount}")
        await admin.wait_message(f"{amount} is not a valid TRY amount")
    texts = [m.get("text") or "" for m in await user.messages() + await admin.messages()]
    assert not [t for t in texts if APOLOGY in t]


@both_databases
async def test_hostile_web_requests_are_4xx_and_change_nothing(
    app: Parts,
    user: BotUser,
    redoya: RedoyaServer,
    http: aiohttp.ClientSession,
    no_tracebacks,
) -> None:
    """A forged order reference of 23 digits (past SQLite's integers), NUL bytes (which
    PostgreSQL refuses in text), and garbage in every place a request carries an id."""
    message = await order_product(user, "Coffee", "Cezve")
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    base = app.web_url
    huge = "9" * 23
    attempts = [
        ("POST", f"/callbacks/payture?o={huge}&k=abc", b"Notification=EnginePaySuccess"),
        ("POST", "/callbacks/payture?o=1%00&k=abc", b""),
        ("POST", "/callbacks/payture", b"Notification=EnginePaySuccess&OrderId=tg-1%00x"),
        ("POST", "/callbacks/payture?k=%00", b"Notification=EnginePaySuccess&OrderId=x"),
        ("POST", "/callbacks/redoya", b"{}"),
        ("POST", "/callbacks/nobody", b"{}"),
        ("GET", f"/return/redoya/{order.token}%00", b""),
        ("GET", f"/return/redoya/{order.token}?order_id=AAAAAAAA%00AAAAAAA", b""),
        ("GET", f"/return/redoya/{'x' * 5000}", b""),
        ("GET", f"/pay/redoya/{order.token}%00", b""),
        ("GET", f"/cards/payture/{huge}-{huge}-00", b""),
    ]
    for method, path, body in attempts:
        async with http.request(method, base + path, data=body) as answer:
            assert 400 <= answer.status < 500, (path, answer.status, await answer.text())
    assert (await app.checkout.order(order.id)).state == order.state  # type: ignore[union-attr]
    assert message["text"].startswith("Order #")


async def test_stored_requests_keep_no_credentials(
    app: Parts, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    redirect = await pay(http, redoya.url, message, "paid")
    headers = {"Authorization": "Bearer s3cret", "Cookie": "session=s3cret", "X-Api-Key": "s3cret"}
    async with http.get(redirect, headers=headers) as page:
        assert page.status == 200
    order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
    events = await app.storage.inbound_for_order(order.id)
    assert events
    for event in events:
        assert b"s3cret" not in event.body
        _, request = load_request(event.body)
        assert set(request.headers) <= {"content-type", "user-agent", "x-forwarded-for"}


async def test_a_language_chosen_through_another_replica_holds(app: Parts, user: BotUser) -> None:
    await user.send("/help")
    await user.wait_message("browse products")
    await app.storage.set_user_locale(CUSTOMER, "tr")  # as another replica's /language would
    await user.send("/help")
    await user.wait_message("ürünlere göz at")


async def a_return_left_on_a_hung_provider(
    settings: Settings, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> Order:
    """A paid customer's return, stored by a bot that stops while the provider hangs (from
    here on, until the test sets `verify_delay` back): its follow-up never answered."""
    async with BotApp(settings) as app:
        message = await order_product(user, "Coffee", "Cezve")
        redirect = await pay(http, redoya.url, message, "paid")
        redoya.verify_delay = 30
        back = asyncio.create_task(http.get(redirect))
        order = (await app.checkout.orders_of(CUSTOMER, limit=1))[0]
        await eventually(lambda: app.storage.inbound_for_order(order.id))  # the return stored
    await asyncio.gather(back, return_exceptions=True)
    return order


async def test_start_up_does_not_wait_for_a_provider_that_is_down(
    make_settings, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    settings = make_settings()
    order = await a_return_left_on_a_hung_provider(settings, user, redoya, http)

    async with BotApp(settings) as app:  # the stored return waits on the hung provider...
        await user.send("/help")  # ...while the bot already answers
        await user.wait_message("browse products")
        (event,) = await app.storage.inbound_for_order(order.id)
        assert event.processed_at is None
        redoya.verify_delay = 0


async def test_a_return_stored_by_a_process_that_died_is_confirmed_at_start_up(
    make_settings, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    """Its order backs off after earlier checks; a sweep would leave the event to its next
    check minutes away, but the start-up replay looks at every stored event once."""
    settings = make_settings()
    order = await a_return_left_on_a_hung_provider(settings, user, redoya, http)
    redoya.verify_delay = 0
    storage = storage_from_url(settings.database_url)  # the backoff of earlier failed checks
    await storage.open()
    await storage.schedule_check(order.id, utc_now() + timedelta(minutes=10), attempts=4)
    await storage.close()

    async with BotApp(settings) as app:
        await user.wait_message("Payment received")
        assert (await app.storage.get_order(order.id)).state is OrderState.PAID

        async def processed() -> bool:
            (event,) = await app.storage.inbound_for_order(order.id)
            return event.processed_at is not None

        await eventually(processed)  # the mark is written by the next batch


@both_databases
async def test_the_start_up_replay_looks_at_every_stored_event_a_page_at_a_time(
    make_settings,
) -> None:
    """More events than one page (100) were left unprocessed by a process that died under a
    burst: the start-up replay pages through every one of them, with no sweep running."""
    settings = make_settings()
    storage = storage_from_url(settings.database_url)
    await storage.open()
    for n in range(150):  # of a provider no longer enabled: one look marks each done
        await storage.record_inbound("retired", f"callback:{n}", None, b"{}")
    await storage.close()

    async with BotApp(settings, background=False) as app:

        async def none_left() -> bool:
            return not await app.storage.unprocessed_inbound()

        await eventually(none_left)
