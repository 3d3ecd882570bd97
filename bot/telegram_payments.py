"""The `TelegramPayments` port for the Stars adapter, on aiogram's Bot: the adapter stays free
of aiogram, and Telegram's errors reach it as the provider error tree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC

from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice
from aiogram.utils.i18n import I18n

from bot.formatting import format_money
from bot.keyboards import OrderAction, OrderCb
from money import Money
from providers.base import ProviderRejected, ProviderUnavailable, StarTransaction
from providers.http import RateLimited

TITLE_LIMIT = 32  # Telegram's, for an invoice title
NAME = "stars"


class BotPayments:
    def __init__(self, bot: Bot, i18n: I18n) -> None:
        self.bot = bot
        self.i18n = i18n

    async def send_invoice(
        self,
        *,
        chat_id: int,
        order_id: int,
        locale: str,
        description: str,
        payload: str,
        amount: Money,
    ) -> None:
        def _(text: str) -> str:
            return self.i18n.gettext(text, locale=locale)

        title = _("Order #{id}").format(id=order_id)[:TITLE_LIMIT]
        pay = _("Pay {amount}").format(amount=format_money(amount, locale))
        cancel = OrderCb(action=OrderAction.CANCEL, id=order_id).pack()
        markup = InlineKeyboardMarkup(
            inline_keyboard=[
                [InlineKeyboardButton(text=pay, pay=True)],
                [InlineKeyboardButton(text=_("Cancel order"), callback_data=cancel)],
            ]
        )
        async with _as_provider_errors():
            await self.bot.send_invoice(
                chat_id=chat_id,
                title=title,
                description=description,
                payload=payload,
                currency=amount.currency,
                prices=[LabeledPrice(label=title, amount=amount.amount)],
                provider_token="",
                reply_markup=markup,
            )

    async def refund_star_payment(self, user_id: int, charge_id: str) -> None:
        async with _as_provider_errors():
            await self.bot.refund_star_payment(user_id, charge_id)

    async def star_transactions(self, offset: int, limit: int) -> list[StarTransaction]:
        async with _as_provider_errors():
            answer = await self.bot.get_star_transactions(offset=offset, limit=limit)
        return [_line(t) for t in answer.transactions]


def _line(transaction: object) -> StarTransaction:
    source = getattr(transaction, "source", None)
    receiver = getattr(transaction, "receiver", None)
    partner = source or receiver
    user = getattr(partner, "user", None) if getattr(partner, "type", "") == "user" else None
    date = transaction.date  # type: ignore[attr-defined]
    return StarTransaction(
        id=str(transaction.id),  # type: ignore[attr-defined]
        amount=int(transaction.amount),  # type: ignore[attr-defined]
        at=date if date.tzinfo else date.replace(tzinfo=UTC),
        user_id=user.id if user is not None else None,
        payload=str(getattr(partner, "invoice_payload", None) or ""),
        incoming=source is not None,
    )


@asynccontextmanager
async def _as_provider_errors() -> AsyncIterator[None]:
    """Telegram's errors as the adapter's: a bad request is final with Telegram's word as the
    code ("Bad Request: CHARGE_ALREADY_REFUNDED" -> CHARGE_ALREADY_REFUNDED), other refusals
    with the error's name; a 429, a 5xx and the network are for later."""
    try:
        yield
    except TelegramRetryAfter as exc:
        raise RateLimited(
            "Telegram asks to wait", provider=NAME, retry_after=float(exc.retry_after)
        ) from None
    except (TelegramNetworkError, TelegramServerError) as exc:
        raise ProviderUnavailable(f"Telegram: {type(exc).__name__}", provider=NAME) from None
    except ClientDecodeError:  # an answer aiogram cannot read: nothing we can act on
        raise ProviderRejected("Telegram's answer could not be read", provider=NAME) from None
    except TelegramBadRequest as exc:
        words = (exc.message or "").rsplit(":", 1)[-1].split()
        raise ProviderRejected(
            f"Telegram: {exc.message}", provider=NAME, code=words[0] if words else ""
        ) from None
    except TelegramAPIError as exc:  # forbidden (the customer blocked the bot), not found...
        raise ProviderRejected(
            f"Telegram: {exc.message}", provider=NAME, code=type(exc).__name__
        ) from None
