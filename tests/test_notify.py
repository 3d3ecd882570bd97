"""The outbox sender and the sweep as several replicas run them on one database: each message
sent once, each due order asked about once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp

from bot.app import BotApp, Parts
from bot.core import CartLine, CheckoutService, Money
from bot.notify import Notifier, OutboxRenderer
from bot.reconcile import Reconciler
from sandbox.botuser import BotUser
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from storage import storage_from_url
from storage.base import NewOutbox, OrderState, Storage
from tests.conftest import CUSTOMER, both_databases
from tests.flows import browse, eventually, order_product, pay


def notifier_for(
    app: Parts, storage: Storage, *, per_chat_gap: float = 1.0, per_group_gap: float = 3.0
) -> Notifier:
    """Another sender on the app's bot, as a replica would run it, over `storage`."""
    renderer = OutboxRenderer(storage, app.i18n, app.checkout, "en", "en")
    return Notifier(
        app.bot, storage, renderer, per_chat_gap=per_chat_gap, per_group_gap=per_group_gap
    )


def sent_to(telegram: TelegramServer) -> list[int]:
    """The chats the bot sent messages to, sorted."""
    return sorted(int(p["chat_id"]) for method, p in telegram.calls if method == "sendmessage")


@both_databases
async def test_two_replicas_flushing_one_outbox_send_each_message_once(
    app: Parts, database_url: str, telegram: TelegramServer
) -> None:
    chats = list(range(5001, 5013))
    for chat in chats:
        await app.storage.enqueue(None, NewOutbox("card_saved", chat, {"card": f"4111…{chat}"}))
    other_storage = storage_from_url(database_url)
    await other_storage.open()
    try:
        replicas = [app.notifier, notifier_for(app, other_storage)]
        await asyncio.gather(*(replica.flush() for replica in replicas for _ in range(3)))
    finally:
        await other_storage.close()
    assert sent_to(telegram) == chats


@both_databases
async def test_two_replicas_sweeping_ask_the_provider_once_per_due_order(
    app: Parts,
    database_url: str,
    user: BotUser,
    redoya: RedoyaServer,
    http: aiohttp.ClientSession,
) -> None:
    message = await order_product(user, "Coffee", "Cezve")
    await browse(http, await pay(http, redoya.url, message, "pending"))
    (order,) = await app.storage.orders_for_user(CUSTOMER, limit=1)
    assert order.state is OrderState.AWAITING_PAYMENT
    other_storage = storage_from_url(database_url)
    await other_storage.open()
    try:
        other = CheckoutService(
            other_storage, app.providers, public_url=app.web_url, callback_secret="s"
        )
        sweeps = [app.reconciler, Reconciler(other)]
        calls = redoya.verify_calls
        checked = await asyncio.gather(
            *(sweep.run_once(now=order.next_check_at) for sweep in sweeps)
        )
        assert sorted(checked) == [0, 1]
    finally:
        await other_storage.close()
    assert redoya.verify_calls == calls + 1
    after = await app.storage.get_order(order.id)
    assert after is not None
    assert after.check_attempts == order.check_attempts + 1
    assert after.next_check_at is not None
    assert after.next_check_at > order.next_check_at  # rescheduled, not left on the claim


async def test_a_group_gets_messages_further_apart_than_a_private_chat(
    make_settings, telegram: TelegramServer
) -> None:
    """Telegram takes about 20 messages a minute in a group (the merchant's chat), one a
    second in a private chat; a pass sends what each chat's gap allows and says the rest
    waits."""
    async with BotApp(make_settings(), background=False) as app:
        for n in range(2):
            await app.storage.enqueue(None, NewOutbox("card_saved", 7001, {"card": f"p{n}"}))
            await app.storage.enqueue(None, NewOutbox("card_saved", -7002, {"card": f"g{n}"}))
        notifier = notifier_for(app, app.storage, per_chat_gap=0, per_group_gap=3600)
        assert not await notifier.flush()
        assert sent_to(telegram) == [-7002, 7001, 7001]
        assert not await notifier.flush()  # the group is still in its gap: nothing more
        assert sent_to(telegram) == [-7002, 7001, 7001]
        # the group's second message waits, due, with no attempt spent on it
        (waiting,) = await app.storage.due_outbox(datetime.now(UTC))
        assert waiting.chat_id == -7002
        assert waiting.attempts == 0


async def test_a_backlog_in_the_merchant_chat_does_not_hold_up_customers(
    make_settings, telegram: TelegramServer
) -> None:
    async with BotApp(make_settings(), background=False) as app:
        for n in range(60):  # more than one pass reads
            await app.storage.enqueue(None, NewOutbox("card_saved", -7003, {"card": f"g{n}"}))
        await app.storage.enqueue(None, NewOutbox("card_saved", 7004, {"card": "customer"}))
        notifier = notifier_for(app, app.storage, per_group_gap=3600)
        await notifier.flush()
        await notifier.flush()
        assert sent_to(telegram) == [-7003, 7004]


@both_databases
async def test_a_pass_reaches_customers_behind_more_group_rows_than_it_reads(
    make_settings, telegram: TelegramServer
) -> None:
    """The oldest due rows all for a busy group (a burst of sales) must not fill the pass:
    the customers queued after them get their messages in that same pass."""
    async with BotApp(make_settings(), background=False) as app:
        for n in range(130):  # well over one read of due rows
            await app.storage.enqueue(None, NewOutbox("card_saved", -7005, {"card": f"g{n}"}))
        for chat in (7006, 7007):
            await app.storage.enqueue(None, NewOutbox("card_saved", chat, {"card": "customer"}))
        notifier = notifier_for(app, app.storage, per_group_gap=3600)
        await notifier.flush()
        assert sent_to(telegram) == [-7005, 7006, 7007]


async def test_the_sender_keeps_within_telegrams_limits(
    make_settings, telegram: TelegramServer
) -> None:
    """Against an emulator that refuses what Telegram would (here at a tenth of Telegram's
    overall rate and a fifth of its chat gap, so the test is short), the running sender gets
    no 429: many chats, a chat with three messages and a group with two."""
    telegram.enforce_flood_limits(chat_gap=0.2, per_second=10)
    async with BotApp(make_settings(), background=False) as app:
        chats = [*range(7100, 7125), 7200, 7200, 7200, -7300, -7300]
        for chat in chats:
            await app.storage.enqueue(None, NewOutbox("card_saved", chat, {"card": "x"}))
        notifier = notifier_for(app, app.storage, per_chat_gap=0.2, per_group_gap=3)
        notifier.per_second = 10
        running = asyncio.create_task(notifier.run())
        try:
            await eventually(lambda: len(sent_to(telegram)) == len(chats), timeout=30)
        finally:
            notifier.stop()
            await running
    assert sent_to(telegram) == sorted(chats)
    assert [t for t in telegram.timeline if t[3]] == []


async def test_a_row_that_cannot_be_rendered_counts_attempts_and_ends_failed(
    make_settings, telegram: TelegramServer
) -> None:
    async with BotApp(make_settings(), background=False) as app:
        # a payload the text cannot read: the refunded amount is not a number
        order_id = await _an_order(app)
        await app.storage.enqueue(order_id, NewOutbox("refunded:9", CUSTOMER, {"amount": "x"}))
        notifier = notifier_for(app, app.storage, per_chat_gap=0)
        for _ in range(3):
            await notifier.flush()
            rows = await app.storage.due_outbox(datetime.now(UTC) + timedelta(hours=1))
            for row in rows:  # make the deferred row due again
                await app.storage.defer(row.id, datetime.now(UTC), "test")
        assert await app.storage.due_outbox(datetime.now(UTC) + timedelta(hours=1)) == []
        figures = await app.checkout.figures(1)
        assert figures.undelivered_messages == 1
        assert sent_to(telegram) == []


async def _an_order(app: Parts) -> int:
    order = await app.checkout.place_order(
        user_id=CUSTOMER,
        chat_id=CUSTOMER,
        lines=[CartLine("cezve", "Cezve", 1, Money(8500, "TRY"))],
        provider_name="redoya",
    )
    return order.id


async def test_the_sender_stops_when_a_cancelled_send_comes_back_as_another_error() -> None:
    """aiohttp and aiogram may turn the cancel of a send in flight into an error of their own:
    the loop once took that for a failed pass, went on, and held the stop for 10 s."""

    class CancelTurnsIntoAnError(Notifier):
        async def flush(self) -> bool:
            try:
                await asyncio.sleep(3600)  # a send in flight
            except asyncio.CancelledError:
                raise RuntimeError("Session is closed") from None
            return False

    sender = CancelTurnsIntoAnError(None, None, None, idle_poll=0.01)  # type: ignore[arg-type]
    running = asyncio.create_task(sender.run())
    await asyncio.sleep(0.05)
    sender.stop()
    running.cancel()
    await asyncio.wait_for(running, 1)


async def test_a_long_telegram_outage_loses_no_message(
    make_settings, telegram: TelegramServer, tmp_path
) -> None:
    """Telegram answering 5xx past the twelve attempts a broken message gets: the message keeps
    waiting (was: given up, lost) and goes out once Telegram is back; only a day-old one is
    given up."""
    async with BotApp(make_settings(), background=False) as app:
        await app.storage.enqueue(None, NewOutbox("card_saved", 5101, {"card": "4111…1111"}))
        notifier = notifier_for(app, app.storage, per_chat_gap=0)
        telegram.refuse("sendMessage", 500)
        for _ in range(20):  # far past MAX_ATTEMPTS
            await notifier.flush()
            for row in await app.storage.due_outbox(datetime.now(UTC) + timedelta(hours=1)):
                await app.storage.defer(row.id, datetime.now(UTC), "test", attempt=False)
        telegram.refuse("sendMessage", 0)
        tried = len(sent_to(telegram))
        await notifier.flush()
        assert sent_to(telegram).count(5101) == tried + 1  # sent once, now that Telegram is up
        assert await app.storage.due_outbox(datetime.now(UTC) + timedelta(hours=1)) == []
        assert (await app.checkout.figures(1)).undelivered_messages == 0
