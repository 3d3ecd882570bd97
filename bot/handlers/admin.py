"""Admins (ADMIN_IDS): refunds and reconciling Stars. Audience checked once, on the router; the
lookups staff share (/order, /orders, /find, /admin) are in lookup.py, figures and exports in
reports.py."""

from __future__ import annotations

import re
import secrets
from contextlib import suppress
from datetime import timedelta

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _

from bot import texts
from bot.config import Settings
from bot.core import (
    REFUNDED_ALREADY,
    AmountNotRepresentable,
    CheckoutService,
    LedgerReport,
    Money,
    Order,
    OrderState,
    RefundError,
    RefundPlan,
)
from bot.handlers import numbers
from bot.handlers.roles import IsAdmin, actor_of
from bot.keyboards import RefundCb, RefundLaterCb, UnexpectedCb, refund_keyboard

AMOUNT = re.compile(r"[0-9]+(?:[.,][0-9]+)?")


def _amount_text(text: str) -> str:
    """'12.50' or '12,50' as a decimal; refused (AmountNotRepresentable): anything else,
    and '1,000', which reads as one thousand to some and as one to others."""
    _, comma, decimals = text.partition(",")
    if not text.isascii() or not AMOUNT.fullmatch(text) or (comma and len(decimals) == 3):
        raise AmountNotRepresentable(text)
    return text.replace(",", ".")


def refusal(exc: RefundError, order: Order, display_name: str) -> str:
    """Why a refund was refused, in the admin's language; the provider's own words stay as
    they came."""
    left = order.left_to_refund
    provider = texts.escape(display_name)
    reasons = {
        "not_refundable": (
            _("order #{id} was already refunded in full").format(id=order.id)
            if order.state is OrderState.REFUNDED
            else _("order #{id} is {state}").format(
                id=order.id, state=texts.state_name(order.state)
            )
        ),
        "manual_refund": _("{provider} has no refund API; refund in its back office").format(
            provider=provider
        ),
        "bad_amount": _("the amount must be above zero"),
        "beyond_paid": _("only {amount} is left to refund").format(amount=texts.money(left)),
        "no_partial": _("{provider} refunds only the whole amount").format(provider=provider),
        "duplicate_refund": _("this refund was already made"),
        "busy": _("the order changed meanwhile; try again"),
        "refund_unknown": _(
            "the provider did not answer; the refund is checked again shortly and the customer "
            "is told if it went through"
        ),
        "api_refund": _("{provider} refunds through its API; use the Refund button").format(
            provider=provider
        ),
        "review_whole": _("an order in review is refunded in full"),
        "stale": _("The order changed since this question. Send /refund again."),
        "refund_open": _("a refund of this order is under way already"),
        "unexpected_refund": _(
            "its payment came when the order did not expect it: refund it with that payment's "
            "own button"
        ),
    }
    reason = reasons.get(exc.reason) or texts.escape(exc.detail or exc.reason)
    return _("Refund refused: {reason}").format(reason=reason)


async def refund(message: Message, command: CommandObject, checkout: CheckoutService) -> None:
    """Asks first: the order, the customer, the amount and what is left, with one button that
    makes the refund (or, without a refund API, records the one made in the back office)."""
    parts = (command.args or "").split()
    order_id = numbers.order_id(command.args)
    order = await checkout.order(order_id) if order_id else None
    if order is None:
        await message.answer(texts.escape(_("No such order. Usage: /refund <id> [amount]")))
        return
    amount = None
    if len(parts) > 2:  # "1 000": the admin meant one amount, we would read two words
        await message.answer(texts.escape(_("No such order. Usage: /refund <id> [amount]")))
        return
    if len(parts) > 1:
        try:
            amount = Money.from_decimal(_amount_text(parts[1]), order.currency)
        except AmountNotRepresentable:
            await message.answer(
                _("{amount} is not a valid {currency} amount").format(
                    amount=texts.escape(parts[1][:40]), currency=order.currency
                )
            )
            return
    try:
        plan = await checkout.plan_refund(order.id, amount)
    except RefundError as exc:
        await message.answer(
            refusal(exc, order, texts.provider_name(checkout.display_name(order.provider)))
        )
        return
    text, markup = refund_offer(plan, checkout)
    await message.answer(text, reply_markup=markup)


def refund_offer(plan: RefundPlan, checkout: CheckoutService) -> tuple[str, InlineKeyboardMarkup]:
    """The question with its button and "Not now" (also offered after a cancel and from
    /review)."""
    data = RefundCb(
        order=plan.order.id,
        amount=plan.amount.amount,
        left=plan.left.amount,
        nonce=secrets.token_hex(4),
        manual=not plan.by_api,
    )
    return refund_question(plan, checkout), refund_keyboard(data)


def refund_question(plan: RefundPlan, checkout: CheckoutService) -> str:
    order = plan.order
    rows = [
        "<b>"
        + _("Refund {amount} of order #{id}?").format(amount=texts.money(plan.amount), id=order.id)
        + "</b>",
        texts.buyer_line(order),
        _("Paid with: {provider}").format(
            provider=texts.escape(texts.provider_name(checkout.display_name(order.provider)))
        ),
        _("Left to refund: {amount}").format(amount=texts.money(plan.left)),
    ]
    if not plan.by_api:
        rows.append(
            _(
                "{provider} has no refund API: refund it in its back office first, then press "
                "the button to record it and tell the customer."
            ).format(
                provider=texts.escape(texts.provider_name(checkout.display_name(order.provider)))
            )
        )
    return "\n".join(rows)


async def refund_confirmed(
    query: CallbackQuery, callback_data: RefundCb, checkout: CheckoutService, settings: Settings
) -> None:
    """One press, one refund: a second press is the same request; a question asked before the
    order changed (another refund since, or one under way) is refused by the core, whatever
    state the order is in, so a stale button never refunds."""
    data = callback_data
    order = await checkout.order(data.order)
    if order is None:
        await query.answer(_("That order was not found."), show_alert=True)
        return
    act = checkout.refund if not data.manual else checkout.record_manual_refund
    try:
        refunded = await act(
            order.id,
            Money(data.amount, order.currency),
            actor=actor_of(query, settings),
            request=f"{order.id}:{data.nonce}",
            expected_left=Money(data.left, order.currency),
        )
    except RefundError as exc:
        text = refusal(exc, order, texts.provider_name(checkout.display_name(order.provider)))
        await query.answer(texts.plain(text)[:200], show_alert=True)
        if exc.reason != "duplicate_refund" and isinstance(query.message, Message):
            await query.message.answer(text)
        return
    await query.answer()
    done = _("Refunded. Order #{id} is {state}.").format(
        id=refunded.id, state=texts.state_name(refunded.state)
    )
    if refunded.left_to_refund.amount:
        done = _("Refunded. Order #{id} is {state}; {amount} left.").format(
            id=refunded.id,
            state=texts.state_name(refunded.state),
            amount=texts.money(refunded.left_to_refund),
        )
    trail = await checkout.audit(refunded.id)
    if trail and REFUNDED_ALREADY in trail[-1].detail:
        done = _("{provider} had refunded it already; order #{id} is {state}.").format(
            provider=texts.escape(texts.provider_name(checkout.display_name(refunded.provider))),
            id=refunded.id,
            state=texts.state_name(refunded.state),
        )
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)
        if query.message.chat.id != settings.merchant_chat_id:  # there the notifier says it
            await query.message.answer(done)


async def refund_later(query: CallbackQuery, callback_data: RefundLaterCb) -> None:
    """ "Not now" under a refund question: nothing refunded, the question loses its buttons."""
    await query.answer(
        _("Nothing refunded. /refund {id} when you are ready.").format(id=callback_data.order)
    )
    if isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)


async def unexpected_refund(
    query: CallbackQuery, callback_data: UnexpectedCb, checkout: CheckoutService
) -> None:
    """The one tap on a payment we did not expect: refunded once, however often it is tapped."""
    try:
        row = await checkout.refund_unexpected(
            callback_data.id, actor=f"admin:{query.from_user.id}"
        )
    except RefundError as exc:
        reasons = {
            "duplicate_refund": _("this payment was refunded already"),
            "check_back_office": _("the provider did not answer; check its back office"),
            "accepted": _("this payment was accepted as the order's own (Accept as paid)"),
        }
        reason = reasons.get(exc.reason) or texts.escape(exc.detail or exc.reason)
        text = _("Refund refused: {reason}").format(reason=reason)
        await query.answer(texts.plain(text)[:200], show_alert=True)
        return
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(
            _("Refunded {amount}: payment {payment_id} of order #{id}.").format(
                amount=texts.money(row.amount) if row.amount else "-",
                payment_id=texts.escape(row.payment_id),
                id=row.order_id,
            )
        )


def ledger_report(report: LedgerReport, display_name: str) -> str:
    if report.error:
        return _("{provider}: Telegram did not answer ({error}); try again in a minute.").format(
            provider=texts.escape(display_name), error=texts.escape(report.error)
        )
    rows = [
        _("{provider}: payments Telegram lists for the last {hours} hours: {count}").format(
            provider=texts.escape(display_name), hours=report.hours, count=report.listed
        )
    ]
    if report.recovered:
        rows.append(
            _("Found and confirmed (their update never reached us): {orders}").format(
                orders=", ".join(f"#{i}" for i in report.recovered)
            )
        )
    if report.reviewed:
        rows.append(
            _("Found, kept for review (the order was closed or paid otherwise): {orders}").format(
                orders=", ".join(f"#{i}" for i in report.reviewed)
            )
        )
    if report.unlisted:
        rows.append(
            _("Paid here but not in Telegram's list: {orders}").format(
                orders=", ".join(f"#{i}" for i in report.unlisted)
            )
        )
    if report.strangers:
        rows.append(_("Payments naming no order of ours: {count}").format(count=report.strangers))
    if not (report.recovered or report.reviewed or report.unlisted or report.strangers):
        rows.append(_("Everything matches."))
    return "\n".join(rows)


async def reconcile(message: Message, checkout: CheckoutService, settings: Settings) -> None:
    """Compare now instead of at the next periodic run."""
    reports = await checkout.reconcile_ledgers(window=timedelta(hours=settings.ledger_window_hours))
    if not reports:
        await message.answer(_("No Telegram Stars payments are enabled."))
        return
    await message.answer(
        "\n\n".join(
            ledger_report(r, texts.provider_name(checkout.display_name(r.provider)))
            for r in reports
        )
    )


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(IsAdmin())
    router.callback_query.filter(IsAdmin())
    router.message.register(refund, Command("refund"))
    router.callback_query.register(refund_confirmed, RefundCb.filter())
    router.callback_query.register(refund_later, RefundLaterCb.filter())
    router.callback_query.register(unexpected_refund, UnexpectedCb.filter())
    router.message.register(reconcile, Command("reconcile"))
    return router
