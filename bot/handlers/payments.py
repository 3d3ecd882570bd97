"""Payments made inside Telegram (Stars): the pre-checkout question, the successful payment
and its refund. Thin handlers: each asks the checkout service once.

The pre-checkout answer must reach Telegram within 10 seconds, so it is decided from what
storage already knows: one order read, no provider call.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import F, Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import ErrorEvent, Message, PreCheckoutQuery, RefundedPayment, SuccessfulPayment
from aiogram.utils.i18n import gettext as _

from bot.core import ChatPayment, CheckoutService

log = logging.getLogger("bot.handlers.payments")
ANSWER_WITHIN = 7.0  # seconds to decide; Telegram waits 10 for the answer in all


def refusal(reason: str) -> str:
    """Why the payment cannot go ahead, short: Telegram shows it on the payment sheet."""
    reasons = {
        "forged": _("This invoice is not valid. Please order again from the catalog."),
        "not_yours": _("This invoice belongs to another customer."),
        "paid": _("This order is paid already. /orders shows it."),
        "closed": _("This order can no longer be paid. Please order again from the catalog."),
        "amount": _("This invoice is out of date. Open the order in /orders to pay it."),
    }
    return reasons.get(reason, _("That did not work. Please try again."))


async def pre_checkout(query: PreCheckoutQuery, checkout: CheckoutService) -> None:
    """Answered in time whatever happens: a store that hangs or fails means no."""
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            reason = await checkout.pre_checkout(
                query.from_user.id, query.invoice_payload, query.currency, query.total_amount
            )
    except Exception:
        log.exception("pre-checkout of %s could not be decided", query.id)
        reason = "unknown"
    try:
        if reason is None:
            await query.answer(ok=True)
        else:
            await query.answer(ok=False, error_message=refusal(reason))
    except TelegramBadRequest as exc:
        # mostly past Telegram's deadline, or the payer gave up first: Telegram has told them
        # it failed and charged nothing, so there is nobody left to answer or apologise to
        log.warning(
            "pre-checkout %s: Telegram refused the answer, nothing was charged: %s",
            query.id,
            exc.message,
        )


def _chat_payment(message: Message, paid: SuccessfulPayment | RefundedPayment) -> ChatPayment:
    assert message.from_user is not None  # the filter below
    return ChatPayment(
        user_id=message.from_user.id,
        currency=paid.currency,
        total_amount=paid.total_amount,
        invoice_payload=paid.invoice_payload or "",
        charge_id=paid.telegram_payment_charge_id,
        provider_charge_id=paid.provider_payment_charge_id or "",
        at=message.date,
    )


async def successful_payment(message: Message, checkout: CheckoutService) -> None:
    """Confirmed through the one confirm; the customer hears of it from the outbox, once."""
    assert message.successful_payment is not None
    payment = _chat_payment(message, message.successful_payment)
    provider = checkout.in_chat_provider(payment.currency)
    if provider is None:
        log.error("a %s payment arrived with no in-chat provider enabled", payment.currency)
        return
    await checkout.receive_chat_payment(provider, payment)


async def refunded_payment(message: Message, checkout: CheckoutService) -> None:
    assert message.refunded_payment is not None
    payment = _chat_payment(message, message.refunded_payment)
    provider = checkout.in_chat_provider(payment.currency)
    if provider is not None:
        await checkout.refunded_in_chat(provider, payment)


CARRIES_MONEY = F.update.message.successful_payment | F.update.message.refunded_payment


async def money_not_stored(event: ErrorEvent) -> object:
    """A payment or refund that could not be stored: no apology asking the payer to try again
    (they would pay twice), and the error goes on to the webhook, which answers 500 so that
    Telegram sends the update again. A polled update is gone: the ledger's reconciliation
    finds the charge."""
    log.error(
        "the payment in update %s was not stored: %s",
        event.update.update_id,
        type(event.exception).__name__,
        exc_info=event.exception,
    )
    return UNHANDLED


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.pre_checkout_query.register(pre_checkout)
    router.message.register(successful_payment, F.successful_payment, F.from_user)
    router.message.register(refunded_payment, F.refunded_payment, F.from_user)
    return router
