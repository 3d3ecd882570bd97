"""/review (ADMIN_IDS only): the orders in needs_review, one message each with what the
provider said and the payments we did not expect, and three buttons: Accept as paid, Refund
(the /refund question, or the one-tap refund of a payment we did not expect), Mark failed."""

from __future__ import annotations

import contextlib

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from bot import audit_texts, texts
from bot.core import CheckoutService, OrderState, RefundError, ReviewCase, ReviewError
from bot.handlers.admin import refund_offer, refusal
from bot.handlers.roles import IsAdmin
from bot.keyboards import (
    ReviewAction,
    ReviewCb,
    ReviewPage,
    UnexpectedCb,
    confirm_review_keyboard,
    review_keyboard,
    review_page_keyboard,
    unexpected_keyboard,
)

PAGE = 5


def case_text(case: ReviewCase, checkout: CheckoutService) -> str:
    order = case.order
    provider = texts.provider_name(checkout.display_name(order.provider))
    rows = [
        "<b>"
        + _("⚠️ Order #{id} needs review: {reason}").format(
            id=order.id, reason=audit_texts.reason(case.said) if case.said else "-"
        )
        + "</b>",
        texts.order_lines(order),
        texts.buyer_line(order),
        _("Paid with: {provider}").format(provider=texts.escape(provider)),
        _("Payment id: {payment_id}").format(
            payment_id=texts.escape(order.provider_payment_id or "-")
        ),
    ]
    rows += [
        _("Payment we did not expect: {amount}, {provider} payment {payment_id} ({state})").format(
            amount=texts.money(p.amount) if p.amount else "?",
            provider=texts.escape(texts.provider_name(checkout.display_name(p.provider))),
            payment_id=texts.escape(p.payment_id),
            state=payment_state(p.state),
        )
        for p in case.unexpected
    ]
    if case.twins:
        rows += ["", twins_warning(case)]
    return "\n".join(rows)


def twins_warning(case: ReviewCase) -> str:
    """The customer already paid for the same items in another order: accepting this one
    charges them twice, and both would be shipped."""
    ids = ", ".join(f"#{o.id}" for o in case.twins)
    return "⚠️ " + ngettext(
        "The customer already paid order {ids} with the same items: accepting this one charges "
        "them twice. A refund is likely the right action.",
        "The customer already paid orders {ids} with the same items: accepting this one charges "
        "them twice. A refund is likely the right action.",
        len(case.twins),
    ).format(ids=ids)


def payment_state(state: str) -> str:
    """A payment we did not expect: where its refund stands, in the reader's words."""
    names = {
        "open": _("not refunded yet"),
        "refunding": _("being refunded"),
        "refunded": _("refunded"),
        "accepted": _("kept as the order's payment"),
    }
    return names.get(state, texts.escape(state))


async def send_page(message: Message, checkout: CheckoutService, page: int) -> None:
    cases = await checkout.open_reviews(limit=PAGE + 1, offset=page * PAGE)
    more = len(cases) > PAGE
    if not cases:
        await message.answer(_("No orders need review."))
        return
    for case in cases[:PAGE]:
        await message.answer(case_text(case, checkout), reply_markup=review_keyboard(case.order.id))
    pages = review_page_keyboard(page, more)
    if pages is not None:
        await message.answer(_("Page {page}").format(page=page + 1), reply_markup=pages)


async def review_command(message: Message, checkout: CheckoutService) -> None:
    await send_page(message, checkout, 0)


async def review_page(
    query: CallbackQuery, callback_data: ReviewPage, checkout: CheckoutService
) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await send_page(query.message, checkout, max(callback_data.page, 0))


async def review_action(
    query: CallbackQuery, callback_data: ReviewCb, checkout: CheckoutService
) -> None:
    actor = f"admin:{query.from_user.id}"
    message = query.message if isinstance(query.message, Message) else None
    try:
        if callback_data.action is ReviewAction.REFUND:
            await offer_refund(query, checkout, callback_data.order, message)
            return
        if callback_data.action is ReviewAction.BACK or not callback_data.sure:
            await ask_first(query, checkout, callback_data, message)
            return
        if callback_data.action is ReviewAction.ACCEPT:
            order = await checkout.accept_review(callback_data.order, actor=actor)
            done = _("Order #{id} accepted as paid; the customer is told.").format(id=order.id)
        else:
            order = await checkout.fail_review(callback_data.order, actor=actor)
            done = _("Order #{id} marked failed; the customer is told.").format(id=order.id)
    except ReviewError as exc:
        await query.answer(texts.plain(gone(exc, callback_data.order))[:200], show_alert=True)
        if exc.reason != "refunding":  # still in review then: its buttons stay
            await _close(message)
        return
    await query.answer()
    await _close(message)
    if message is not None:
        await message.answer(done)


async def ask_first(
    query: CallbackQuery, checkout: CheckoutService, data: ReviewCb, message: Message | None
) -> None:
    """Accept as paid and Mark failed tell the customer and cannot be taken back: the
    review's buttons become "Yes, ..." and "No, go back" first; No brings the three back.
    ReviewError when the order is no longer in review (a stale button)."""
    case = await checkout.review_case(data.order)
    if case is None or case.order.state is not OrderState.NEEDS_REVIEW:
        raise ReviewError("not_in_review", case.order if case else None)
    if data.action is ReviewAction.BACK:
        markup = review_keyboard(data.order)
        await query.answer()
    else:
        markup = confirm_review_keyboard(data.order, data.action)
        await query.answer(
            _("Order #{id}: press Yes to confirm; the customer is told at once.").format(
                id=data.order
            ),
            show_alert=True,
        )
    if message is not None:
        with contextlib.suppress(TelegramBadRequest):
            await message.edit_reply_markup(reply_markup=markup)


async def _close(message: Message | None) -> None:
    """The resolved (or stale) review loses its buttons."""
    if message is not None:
        with contextlib.suppress(TelegramBadRequest):
            await message.edit_reply_markup(reply_markup=None)


async def offer_refund(
    query: CallbackQuery, checkout: CheckoutService, order_id: int, message: Message | None
) -> None:
    """The refund of an order in review: the payments we did not expect each with their own
    one-tap refund; else the /refund question for the order's own payment."""
    case = await checkout.review_case(order_id)
    if case is None or message is None:
        await query.answer(_("That order was not found."), show_alert=True)
        return
    if case.order.state is not OrderState.NEEDS_REVIEW:
        text = gone(ReviewError("not_in_review", case.order), order_id)
        await query.answer(texts.plain(text)[:200], show_alert=True)
        return
    if case.open_payments:
        await query.answer()
        for payment in case.open_payments:
            manual = not checkout.refunds_unexpected_by_api(payment.provider)
            await message.answer(
                _("Refund {amount}: payment {payment_id} of order #{id}?").format(
                    amount=texts.money(payment.amount) if payment.amount else "?",
                    payment_id=texts.escape(payment.payment_id),
                    id=order_id,
                ),
                reply_markup=unexpected_keyboard(UnexpectedCb(id=payment.id, manual=manual)),
            )
        return
    try:
        plan = await checkout.plan_refund(order_id, None)
    except RefundError as exc:
        provider = texts.provider_name(checkout.display_name(case.order.provider))
        text = refusal(exc, case.order, provider)
        await query.answer(texts.plain(text)[:200], show_alert=True)
        return
    await query.answer()
    text, markup = refund_offer(plan, checkout)
    await message.answer(text, reply_markup=markup)


def gone(exc: ReviewError, order_id: int) -> str:
    if exc.order is None:
        return _("That order was not found.")
    if exc.reason == "refunding":
        return _(
            "Order #{id}: a payment we did not expect is being refunded; wait for it, then "
            "look again."
        ).format(id=order_id)
    return _("Order #{id} is no longer in review: it is {state}.").format(
        id=order_id, state=texts.state_name(exc.order.state)
    )


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(IsAdmin())
    router.callback_query.filter(IsAdmin())
    router.message.register(review_command, Command("review"))
    router.callback_query.register(review_page, ReviewPage.filter())
    router.callback_query.register(review_action, ReviewCb.filter())
    return router
