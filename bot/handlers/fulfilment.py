"""The merchant's steps on a paid order: Shipped (asking for an optional tracking note),
Delivered, Cancel. From the paid-order message in the merchant chat (anyone there but support)
and from an admin's /order (in private); only admins refund. After a step the buttons
show the next steps; a stale button says where the order is now."""

from __future__ import annotations

import contextlib

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.types import CallbackQuery, ForceReply, Message
from aiogram.utils.i18n import gettext as _

from bot import texts
from bot.config import Settings
from bot.core import (
    CheckoutService,
    Fulfilment,
    FulfilmentError,
    Order,
    RefundError,
)
from bot.handlers.admin import refund_offer
from bot.handlers.roles import CanFulfil, actor_of
from bot.handlers.tracking import TrackingReply, end_question, open_question, question_key
from bot.keyboards import (
    FulfilCb,
    NoTrackingCb,
    StepsCb,
    confirm_step_keyboard,
    fulfilment_keyboard,
    no_tracking_keyboard,
)


def refusal(exc: FulfilmentError, order_id: int) -> str:
    order = exc.order
    if order is None:
        return _("That order was not found.")
    status = texts.fulfilment_name(order.fulfilment)
    if exc.reason == "already":
        return _("Order #{id} is already {status}.").format(id=order.id, status=status)
    if exc.reason == "not_paid":
        return _("Order #{id} is {state}: only a paid order is shipped.").format(
            id=order.id, state=texts.state_name(order.state)
        )
    return _("Order #{id} is {status} now; that step is no longer possible.").format(
        id=order_id, status=status
    )


async def step_pressed(
    query: CallbackQuery,
    callback_data: FulfilCb,
    checkout: CheckoutService,
    settings: Settings,
    fsm_storage: BaseStorage,
    bot: Bot,
) -> None:
    data = callback_data
    message = query.message if isinstance(query.message, Message) else None
    if data.step is Fulfilment.CANCELLED and not data.sure:
        await ask_cancel(query, checkout, bot, data.order, message)
        return
    if data.step is not Fulfilment.SHIPPED:
        await take_step(query, checkout, settings, bot, data.order, data.step, message)
        return
    try:  # asked first, so the note is not asked for an order that cannot ship
        await checkout.may_fulfil(data.order, data.step)
    except FulfilmentError as exc:
        await refused(query, checkout, bot, exc, data.order, message)
        return
    if message is None:  # too old to edit: the order's steps are on /order
        await query.answer(
            _("Open the order with /order {id}.").format(id=data.order), show_alert=True
        )
        return
    await query.answer()
    who = f'<a href="tg://user?id={query.from_user.id}">'
    question = await message.answer(
        _(
            "{who}, order #{id}: reply to this message with the tracking note (a tracking "
            "number, the courier), or press No note on the order."
        ).format(who=who + texts.escape(query.from_user.first_name) + "</a>", id=data.order),
        reply_markup=ForceReply(  # the presser's client opens the reply (mentioned: selective)
            force_reply=True, selective=True, input_field_placeholder=_("Tracking note")
        ),
    )
    key = question_key(bot.id, message.chat.id, question.message_id)
    await open_question(fsm_storage, key, data.order, message.message_id)
    markup = no_tracking_keyboard(data.order, message.message_id, question.message_id)
    with contextlib.suppress(TelegramBadRequest):
        await message.edit_reply_markup(reply_markup=markup)


async def ask_cancel(
    query: CallbackQuery,
    checkout: CheckoutService,
    bot: Bot,
    order_id: int,
    message: Message | None,
) -> None:
    """A cancel tells the customer at once and cannot be taken back: the message's buttons
    become "Yes, cancel the order" and "No, keep it" first (checked now, and again on Yes)."""
    try:
        await checkout.may_fulfil(order_id, Fulfilment.CANCELLED)
    except FulfilmentError as exc:
        await refused(query, checkout, bot, exc, order_id, message)
        return
    if message is None:  # too old to edit: the order's steps are on /order
        await query.answer(
            _("Open the order with /order {id}.").format(id=order_id), show_alert=True
        )
        return
    await query.answer(
        _("Cancel order #{id}? The customer is told at once.").format(id=order_id), show_alert=True
    )
    with contextlib.suppress(TelegramBadRequest):
        await message.edit_reply_markup(
            reply_markup=confirm_step_keyboard(order_id, Fulfilment.CANCELLED)
        )


async def keep_steps(
    query: CallbackQuery,
    callback_data: StepsCb,
    checkout: CheckoutService,
    bot: Bot,
    fsm_storage: BaseStorage,
) -> None:
    """No to a confirmation, or Cancel of the tracking question (which ends, whoever
    presses it): the message shows the order's steps again."""
    await query.answer()
    if callback_data.question and isinstance(query.message, Message):
        key = question_key(bot.id, query.message.chat.id, callback_data.question)
        await end_question(fsm_storage, key)
    order = await checkout.order(callback_data.order)
    if order is not None and isinstance(query.message, Message):
        await _show_steps(bot, checkout, query.message.chat.id, query.message.message_id, order)


async def note_entered(
    message: Message,
    checkout: CheckoutService,
    settings: Settings,
    bot: Bot,
    fsm_storage: BaseStorage,
    question: StorageKey,
) -> None:
    """A reply to an open tracking question: the order ships with it as the note."""
    order_id, shown = await end_question(fsm_storage, question)
    if order_id is None:  # answered or cancelled meanwhile
        return
    try:
        order = await checkout.fulfil(
            order_id, Fulfilment.SHIPPED, actor=actor_of(message, settings), tracking=message.text
        )
    except FulfilmentError as exc:
        await message.answer(refusal(exc, order_id))
        return
    await _show_steps(bot, checkout, message.chat.id, shown, order)
    await message.answer(done(order))


async def no_note(
    query: CallbackQuery,
    callback_data: NoTrackingCb,
    checkout: CheckoutService,
    settings: Settings,
    bot: Bot,
    fsm_storage: BaseStorage,
) -> None:
    shown = callback_data.shown or None
    message = query.message if isinstance(query.message, Message) else None
    if callback_data.question and message is not None:  # it ends, whoever pressed No note
        await end_question(
            fsm_storage, question_key(bot.id, message.chat.id, callback_data.question)
        )
    if message is not None:
        with contextlib.suppress(TelegramBadRequest):
            await message.edit_reply_markup(reply_markup=None)
    try:
        order = await checkout.fulfil(
            callback_data.order, Fulfilment.SHIPPED, actor=actor_of(query, settings)
        )
    except FulfilmentError as exc:
        await query.answer(texts.plain(refusal(exc, callback_data.order))[:200], show_alert=True)
        return
    await query.answer(texts.plain(done(order))[:200])
    if message is not None:
        await _show_steps(bot, checkout, message.chat.id, shown, order)
        await message.answer(done(order))


async def take_step(
    query: CallbackQuery,
    checkout: CheckoutService,
    settings: Settings,
    bot: Bot,
    order_id: int,
    step: Fulfilment,
    message: Message | None,
) -> None:
    try:
        order = await checkout.fulfil(order_id, step, actor=actor_of(query, settings))
    except FulfilmentError as exc:
        await refused(query, checkout, bot, exc, order_id, message)
        return
    await query.answer(texts.plain(done(order))[:200])
    if message is None:
        return
    await _show_steps(bot, checkout, message.chat.id, message.message_id, order)
    await message.answer(done(order))
    if step is Fulfilment.CANCELLED:  # the goods stay: the money goes back, by an admin
        try:
            plan = await checkout.plan_refund(order.id, None)
        except RefundError:
            return  # refunded already, or a refund is under way
        if query.from_user.id not in settings.admin_ids:  # only admins refund (admin router)
            await message.answer(
                _("Order #{id} is cancelled; an admin must refund it: /refund {id}").format(
                    id=order.id
                )
            )
            return
        text, markup = refund_offer(plan, checkout)
        await message.answer(text, reply_markup=markup)


async def refused(
    query: CallbackQuery,
    checkout: CheckoutService,
    bot: Bot,
    exc: FulfilmentError,
    order_id: int,
    message: Message | None,
) -> None:
    """A stale button: say where the order is, and bring the buttons up to date."""
    await query.answer(texts.plain(refusal(exc, order_id))[:200], show_alert=True)
    if message is not None and exc.order is not None:
        await _show_steps(bot, checkout, message.chat.id, message.message_id, exc.order)


def done(order: Order) -> str:
    """'Order #1: shipped.', the tracking note and "The customer is told." each on a line of
    their own (a note is the merchant's words: no sentence of ours runs into it)."""
    text = _("Order #{id}: {status}.").format(
        id=order.id, status=texts.fulfilment_name(order.fulfilment)
    )
    if order.tracking and order.fulfilment is Fulfilment.SHIPPED:
        text += "\n" + _("Tracking: {note}").format(note=texts.escape(order.tracking))
    return text + "\n" + _("The customer is told.")


async def _show_steps(
    bot: Bot, checkout: CheckoutService, chat_id: int, message_id: int | None, order: Order
) -> None:
    """The message the step was taken from shows the next steps (or none). The merchant card's
    text is brought up to date by the notifier (the step queued its MERCHANT_CARD row)."""
    if message_id is None:
        return
    markup = fulfilment_keyboard(order.id, checkout.next_steps(order))
    with contextlib.suppress(TelegramBadRequest):  # unchanged, or gone: nothing to update
        await bot.edit_message_reply_markup(
            chat_id=chat_id, message_id=message_id, reply_markup=markup
        )


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(CanFulfil())
    router.callback_query.filter(CanFulfil())
    router.callback_query.register(step_pressed, FulfilCb.filter())
    router.callback_query.register(no_note, NoTrackingCb.filter())
    router.callback_query.register(keep_steps, StepsCb.filter())
    router.message.register(note_entered, TrackingReply())
    return router
