"""The outbox sender: delivers queued messages within Telegram's flood limits, and the renderer
that turns each row into text in the right language.

Rows are written by storage transitions and stay until sent, so a restart between "paid" and
"message sent" still delivers the message. A row is marked sent right after Telegram accepts
it; Telegram has no idempotency key, so a crash in between sends it again (at least once).
Each row is claimed before it is sent, so replicas sharing one database do not both send it;
a sender that dies holding a claim frees it after `claim_for` (OUTBOX_CLAIM_SECONDS).
Limits: about one message per second per chat, 20 a minute to a group (the merchant's chat is
one) and 30 per second overall; a 429 pauses all sending for its `retry_after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import report_texts, texts
from bot.catalog import Catalog
from bot.core import (
    Audience,
    CheckoutService,
    Fulfilment,
    Order,
    OrderState,
    OutboxKind,
    OutboxMessage,
    ReceiptError,
)
from bot.keyboards import (
    AGAIN_STATES,
    OrderAction,
    OrderCb,
    UnexpectedCb,
    again_keyboard,
    fulfilment_keyboard,
    order_keyboard,
    unexpected_keyboard,
)
from storage.base import Storage

log = logging.getLogger("bot.notify")

# the messages that end an unpaid order offer to place it again
TRY_AGAIN = frozenset({OutboxKind.FAILED, OutboxKind.EXPIRED, OutboxKind.REVIEW_FAILED})

MAX_ATTEMPTS = 12
OUTAGE_LIMIT = timedelta(days=1)  # Telegram down (5xx, no answer): a message waits this long
RECEIPT_WITHIN = 5.0  # seconds a receipt fetch may hold up the outbox pass
MAX_RENDER_ATTEMPTS = 3  # a row that cannot be rendered will not render better later
CLAIM_FOR = timedelta(seconds=60)
BATCH = 50  # due rows read at a time


@dataclass(frozen=True, slots=True)
class Edit:
    """A message of ours to bring up to date once a row is sent (the order's card loses its
    Pay button when the order is paid)."""

    message_id: int
    text: str
    reply_markup: InlineKeyboardMarkup | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """A file to send with the text as its caption, fetched only when the row is sent (the
    provider's receipt): a fetch that fails is retried like a send that fails."""

    filename: str
    fetch: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    reply_markup: InlineKeyboardMarkup | None = None
    edit: Edit | None = None  # after the send; or instead of it, with `only_edit`
    document: Document | None = None
    only_edit: bool = False  # the row brings a message sent before up to date
    sent: Callable[[int], Awaitable[None]] | None = None  # told the sent message's id


Renderer = Callable[[OutboxMessage], Awaitable[Rendered | None]]


class Notifier:
    def __init__(
        self,
        bot: Bot,
        storage: Storage,
        render: Renderer,
        *,
        per_chat_gap: float = 1.0,
        per_group_gap: float = 3.0,
        per_second: int = 30,
        idle_poll: float = 1.0,
        claim_for: timedelta = CLAIM_FOR,
    ) -> None:
        self.bot = bot
        self.storage = storage
        self.render = render
        self.per_chat_gap = per_chat_gap
        self.per_group_gap = per_group_gap
        self.per_second = per_second
        self.idle_poll = idle_poll
        self.claim_for = claim_for
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_to_chat: dict[int, float] = {}
        self._busy_for = idle_poll  # until the soonest busy chat is free
        self._window: deque[float] = deque()  # the last second's sends
        self._paused_until = 0.0

    def wake(self) -> None:
        """New rows were queued: look now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """End `run` after the pass in hand. A cancel alone is not enough: a library may turn
        the cancel of a send in flight into an error of its own (aiohttp, then aiogram's
        TelegramNetworkError), which the loop takes for a failed pass and goes on."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                more = await self.flush()
            except Exception:
                if self._stopping:
                    return
                log.exception("outbox pass failed; retrying")
                more = False
            # the next look: when the overall limit or a 429 lets a message out again; else on
            # a wake, when a busy chat is free, or at the idle poll
            wait = self._held_for() if more else min(self.idle_poll, self._busy_for)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel
            # that lands as the event fires, and the loop would never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()

    def _held_for(self) -> float:
        """Seconds until the overall limit or a 429 pause lets the next message out (0: now)."""
        now = time.monotonic()
        while self._window and now - self._window[0] >= 1.0:
            self._window.popleft()
        full = len(self._window) >= self.per_second
        return max(self._paused_until - now, self._window[0] + 1.0 - now if full else 0.0, 0.0)

    def _busy_chats(self, now: float) -> list[int]:
        """The chats still in their gap, the soonest free one setting the next look; chats
        whose gap is over are forgotten (the map would otherwise grow with every chat)."""
        busy = []
        for chat_id, last in list(self._last_to_chat.items()):
            free_in = last + (self.per_group_gap if chat_id < 0 else self.per_chat_gap) - now
            if free_in > 0:
                busy.append(chat_id)
                self._busy_for = min(self._busy_for, free_in)
            else:
                del self._last_to_chat[chat_id]
        return busy

    async def flush(self) -> bool:
        """Send what is due now within the limits. True when the overall limit or a 429 cut
        the pass short. Rows for a chat still in its gap are not read at all, so a busy chat
        (the merchant's group, after a burst of sales) never fills the read ahead of the
        messages behind it; a read that found as many rows as it asks for is followed by
        another, so one pass reaches every chat that is free."""
        self._busy_for = self.idle_poll
        while True:
            if self._held_for() > 0:
                return True
            due = await self.storage.due_outbox(
                datetime.now(UTC), BATCH, self._busy_chats(time.monotonic())
            )
            for message in due:
                if self._held_for() > 0:
                    return True
                gap = self.per_group_gap if message.chat_id < 0 else self.per_chat_gap
                free_in = self._last_to_chat.get(message.chat_id, -1e9) + gap - time.monotonic()
                if free_in > 0:  # a second row for a chat this read already sent to: it
                    self._busy_for = min(self._busy_for, free_in)  # waits, due, unread
                    continue
                if await self._deliver(message):
                    self._last_to_chat[message.chat_id] = time.monotonic()
                    self._window.append(time.monotonic())
            if len(due) < BATCH:
                return False

    async def _deliver(self, message: OutboxMessage) -> bool:
        """Send one row; False when it was not ours to send (another replica claimed it)."""
        now = datetime.now(UTC)
        if not await self.storage.claim_outbox(message.id, now, now + self.claim_for):
            return False
        try:
            await self._send(message)
        except asyncio.CancelledError:
            # shutting down mid-send: free the row for the next start instead of holding it
            await asyncio.shield(self.storage.defer(message.id, datetime.now(UTC), "interrupted"))
            raise
        return True

    async def _send(self, message: OutboxMessage) -> None:
        try:
            rendered = await self.render(message)
        except (ValueError, KeyError, TypeError) as exc:  # no text for this row: never will be
            log.error("outbox %s (%s) cannot be rendered: %s", message.id, message.kind, exc)
            await self.storage.mark_failed(message.id, f"cannot be rendered: {exc}"[:500])
            return
        except Exception as exc:  # anything else counts as an attempt
            attempts = message.attempts + 1
            log.error("outbox %s cannot be rendered (%s), attempt %s", message.id, exc, attempts)
            if attempts >= MAX_RENDER_ATTEMPTS:
                await self.storage.mark_failed(message.id, f"render: {type(exc).__name__}")
            else:
                await self._defer(message, 2**attempts, f"render: {type(exc).__name__}")
            return
        if rendered is None:
            await self.storage.mark_sent(message.id)
            return
        content = b""
        if rendered.document is not None:
            try:
                content = await rendered.document.fetch()
            except ReceiptError as exc:
                await self._document_failed(message, exc)
                return
        sent_id: int | None = None
        try:
            if rendered.only_edit and rendered.edit is not None:
                await self._edit_row(message.chat_id, rendered.edit)
            elif rendered.document is not None:
                await self.bot.send_document(
                    message.chat_id,
                    BufferedInputFile(content, rendered.document.filename),
                    caption=rendered.text,
                    reply_markup=rendered.reply_markup,
                )
            else:
                sent = await self.bot.send_message(
                    message.chat_id, rendered.text, reply_markup=rendered.reply_markup
                )
                sent_id = sent.message_id
        except TelegramRetryAfter as exc:
            self._paused_until = time.monotonic() + exc.retry_after
            await self._defer(message, exc.retry_after, "429 retry after", attempt=False)
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            # the user blocked the bot or the chat is gone: retrying will not help
            log.warning("outbox %s to chat %s failed: %s", message.id, message.chat_id, exc)
            await self.storage.mark_failed(message.id, f"{type(exc).__name__}: {exc.message}")
        except (TelegramNetworkError, TelegramServerError, TimeoutError) as exc:
            await self._wait_out_outage(message, type(exc).__name__)
        else:
            if rendered.sent is not None and sent_id is not None:  # before the row is done, so
                await rendered.sent(sent_id)  # a card update taken after it finds the card
            await self.storage.mark_sent(message.id)
            if rendered.edit is not None and not rendered.only_edit:
                await self._edit(message.chat_id, rendered.edit)

    async def _document_failed(self, message: OutboxMessage, exc: ReceiptError) -> None:
        """The provider has no document now: tried again later as a failed send is, or given
        up when it never will (the paid message went its own way)."""
        if not exc.later:
            log.error("outbox %s: document given up: %s", message.id, exc)
            await self.storage.mark_failed(message.id, f"document: {exc}"[:500])
            return
        log.warning("outbox %s: document not fetched (%s)", message.id, exc)
        await self._retry_later(message, "document not fetched", f"document: {exc}"[:500])

    async def _retry_later(self, message: OutboxMessage, why: str, given_up: str) -> None:
        """Another attempt after a growing gap, or failed once MAX_ATTEMPTS were made."""
        attempts = message.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            log.error("outbox %s given up after %s attempts (%s)", message.id, attempts, why)
            await self.storage.mark_failed(message.id, given_up)
            return
        await self._defer(message, min(2**attempts, 300), why)

    async def _wait_out_outage(self, message: OutboxMessage, why: str) -> None:
        """Telegram (or the way to it) is down: nothing is wrong with the message, so it waits
        as long as the outage lasts, every few minutes at most, and is given up only once it
        is a day old (a message that late helps nobody)."""
        if datetime.now(UTC) - message.created_at > OUTAGE_LIMIT:
            log.error("outbox %s given up: Telegram failed it for a day (%s)", message.id, why)
            await self.storage.mark_failed(message.id, f"Telegram down for a day: {why}")
            return
        waited = (datetime.now(UTC) - message.created_at).total_seconds()
        # no attempt spent (those are for what is wrong with the message: its rendering, its
        # receipt); the gap grows with the outage instead
        await self._defer(message, min(max(2.0, waited), 300.0), why, attempt=False)

    async def _edit_row(self, chat_id: int, edit: Edit) -> None:
        """An edit that is the row itself: a 429 or an outage is retried as a send is; the
        message gone, or showing this already (a step taken on it), leaves nothing to do."""
        try:
            await self.bot.edit_message_text(
                text=edit.text,
                chat_id=chat_id,
                message_id=edit.message_id,
                reply_markup=edit.reply_markup,
            )
        except TelegramBadRequest as exc:
            log.info("editing message %s in chat %s: %s", edit.message_id, chat_id, exc)

    async def _edit(self, chat_id: int, edit: Edit) -> None:
        """Best effort beside a sent row: the chat may be gone or Telegram away as well."""
        try:
            await self._edit_row(chat_id, edit)
        except (TelegramForbiddenError, TelegramNetworkError) as exc:
            log.info("editing message %s in chat %s: %s", edit.message_id, chat_id, exc)

    async def _defer(
        self, message: OutboxMessage, seconds: float, why: str, *, attempt: bool = True
    ) -> None:
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        await self.storage.defer(message.id, until, why, attempt=attempt)


class OutboxRenderer:
    """Turns an outbox row into text in the right language: the customer's for their messages,
    MERCHANT_LOCALE for the merchant chat, an admin's own /language choice for theirs."""

    def __init__(
        self,
        storage: Storage,
        i18n: I18n,
        checkout: CheckoutService,
        default_locale: str,
        merchant_locale: str,
        catalog: Catalog | None = None,
    ) -> None:
        self.storage = storage
        self.catalog = catalog  # the customer's card names its items in their language
        self.i18n = i18n
        self.checkout = checkout
        self.default_locale = default_locale
        self.merchant_locale = merchant_locale

    async def _locale_for(self, kind: OutboxKind, chat_id: int, order: Order | None) -> str:
        if kind.audience is Audience.CUSTOMER:
            if order is not None:
                return order.locale
            return await self.storage.get_user_locale(chat_id) or self.default_locale
        if kind.audience is Audience.ADMIN:
            return await self.storage.get_user_locale(chat_id) or self.merchant_locale
        return self.merchant_locale

    async def __call__(self, message: OutboxMessage) -> Rendered | None:
        """The message to send; None for a row that has nothing to say any more (its order
        is gone, or a kind this version does not know)."""
        kind = OutboxKind.of(message.kind)
        if kind is None:
            log.warning("outbox %s has unknown kind %r; dropped", message.id, message.kind)
            return None
        order = None
        if message.order_id is not None:
            order = await self.checkout.order(message.order_id)
            if order is None:
                return None
        locale = await self._locale_for(kind, message.chat_id, order)
        payload = dict(message.payload)
        if kind is OutboxKind.MERCHANT_DAILY_REPORT:
            day, figures = await self.checkout.daily_report(payload)
        with self.i18n.context(), self.i18n.use_locale(locale):
            if kind is OutboxKind.MERCHANT_DAILY_REPORT:
                title = report_texts.daily_title(day, str(payload["zone"]))
                names = report_texts.provider_names(self.checkout)
                return Rendered(report_texts.figures_text(title, figures, names))
            if order is None:
                return Rendered(texts.user_text(kind, payload))
            provider = texts.provider_name(self.checkout.display_name(order.provider))
            if kind in (OutboxKind.MERCHANT_PAID, OutboxKind.MERCHANT_CARD):
                return self._merchant_card(kind, order, provider)
            text = texts.outbox_text(kind, order, payload, provider)
            if kind is OutboxKind.RECEIPT:
                return Rendered(text, document=self._receipt(order))
            return Rendered(text, self._markup(kind, order, payload), self._card_edit(kind, order))

    def _receipt(self, order: Order) -> Document:
        async def fetch() -> bytes:
            try:  # the pass waits for it: a slow provider must not hold up the other chats
                async with asyncio.timeout(RECEIPT_WITHIN):
                    return await self.checkout.receipt(order)
            except TimeoutError:
                raise ReceiptError("the receipt took too long", later=True) from None

        return Document(f"receipt-{order.id}.pdf", fetch)

    def _merchant_card(self, kind: OutboxKind, order: Order, provider: str) -> Rendered | None:
        """The paid-order message with the merchant's steps, its id remembered; later rows
        edit it to the order as it is then (the same text a step taken on it shows). An
        order that moved on before its message went out gets it as it is now."""
        markup = fulfilment_keyboard(order.id, self.checkout.next_steps(order))
        card = texts.merchant_card(order, provider)
        if kind is OutboxKind.MERCHANT_PAID:
            moved = order.state is not OrderState.PAID or order.fulfilment is not Fulfilment.NEW
            text = card if moved else texts.outbox_text(kind, order, {}, provider)
            return Rendered(text, markup, sent=self._remember(order.id))
        if order.merchant_message_id is None:  # not sent yet: it will show the order as it is
            return None
        return Rendered(card, edit=Edit(order.merchant_message_id, card, markup), only_edit=True)

    def _remember(self, order_id: int) -> Callable[[int], Awaitable[None]]:
        async def remember(message_id: int) -> None:
            await self.checkout.remember_merchant_card(order_id, message_id)

        return remember

    def _card_edit(self, kind: OutboxKind, order: Order) -> Edit | None:
        """Paid: the order's card in the chat no longer invites to pay."""
        if kind is not OutboxKind.PAID or order.message_id is None:
            return None
        return Edit(order.message_id, texts.order_card(order, self.catalog), order_keyboard(order))

    def _markup(
        self, kind: OutboxKind, order: Order, payload: dict[str, object]
    ) -> InlineKeyboardMarkup | None:
        if kind is OutboxKind.ADMIN_REVIEW and isinstance(payload.get("unexpected"), int):
            manual = not self.checkout.refunds_unexpected_by_api(order.provider)
            return unexpected_keyboard(UnexpectedCb(id=int(payload["unexpected"]), manual=manual))  # type: ignore[call-overload]
        if kind in TRY_AGAIN and order.state in AGAIN_STATES:
            return again_keyboard(order.id)
        if kind is not OutboxKind.PAID:
            return None
        kb = InlineKeyboardBuilder()
        kb.button(text=_("Receipt"), callback_data=OrderCb(action=OrderAction.SHOW, id=order.id))
        if self.checkout.can_save_cards(order.provider):
            kb.button(
                text=_("Save this card"),
                callback_data=OrderCb(action=OrderAction.SAVE_CARD, id=order.id),
            )
        kb.adjust(1)
        return kb.as_markup()
