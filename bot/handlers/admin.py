"""Admins (ADMIN_IDS): look up orders, refund, see figures. Audience checked once, on the router."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from aiogram import Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import Message, TelegramObject

from bot import texts
from bot.checkout import CheckoutService, RefundError
from bot.config import Settings
from providers.base import AmountNotRepresentable, Money
from storage.base import Storage


class IsAdmin(Filter):
    async def __call__(self, event: TelegramObject, settings: Settings) -> bool:
        user = getattr(event, "from_user", None)
        return user is not None and user.id in settings.admin_ids


USAGE = (
    "/order <id> — an order with its audit trail\n"
    "/refund <id> [amount] — refund all or part (amount in major units, e.g. 12.50)\n"
    "/stats [days] — figures"
)


def _order_id(command: CommandObject) -> int | None:
    first = (command.args or "").split()[:1]
    return int(first[0]) if first and first[0].isdigit() else None


async def admin_help(message: Message) -> None:
    await message.answer(USAGE)


async def order_lookup(message: Message, command: CommandObject, storage: Storage) -> None:
    order_id = _order_id(command)
    order = await storage.get_order(order_id) if order_id else None
    if order is None:
        await message.answer("Usage: /order <id> (no such order)")
        return
    trail = await storage.audit_trail(order.id)
    rows = [
        texts.receipt(order) if order.paid_at else texts.order_card(order),
        f"state: {order.state} · provider: {order.provider} · user: {order.user_id}",
        "<b>Audit</b>",
    ]
    rows += [
        f"{e.created_at:%Y-%m-%d %H:%M:%S} {e.from_state or '-'} → {e.to_state} by {e.actor}: "
        f"{texts.escape(e.detail)}"
        for e in trail[-15:]
    ]
    await message.answer("\n".join(rows))


async def refund(
    message: Message, command: CommandObject, storage: Storage, checkout: CheckoutService
) -> None:
    parts = (command.args or "").split()
    order = await storage.get_order(int(parts[0])) if parts and parts[0].isdigit() else None
    if order is None:
        await message.answer("Usage: /refund <id> [amount] (no such order)")
        return
    amount = None
    if len(parts) > 1:
        try:
            amount = Money.from_decimal(Decimal(parts[1].replace(",", ".")), order.currency).amount
        except (InvalidOperation, AmountNotRepresentable):
            await message.answer(f"{parts[1]!r} is not a valid {order.currency} amount")
            return
    try:
        order = await checkout.refund(
            order.id, amount, actor=f"admin:{message.from_user.id if message.from_user else 0}"
        )
    except RefundError as exc:
        await message.answer(f"Refund refused: {exc.detail or exc.reason}")
        return
    left = Money((order.paid_amount or order.amount) - order.refunded_amount, order.currency)
    await message.answer(f"Refunded. Order #{order.id} is {order.state}; {texts.money(left)} left.")


async def stats(
    message: Message, command: CommandObject, storage: Storage, checkout: CheckoutService
) -> None:
    days = int(command.args) if command.args and command.args.strip().isdigit() else 30
    figures = await storage.figures(checkout.clock() - timedelta(days=days))
    rows = [f"<b>Last {days} days</b>"]
    rows += [f"{state}: {n}" for state, n in sorted(figures.orders_by_state.items())]
    rows += [
        f"paid: {texts.money(Money(v, c))}" for c, v in sorted(figures.paid_by_currency.items())
    ]
    rows += [
        f"refunded: {texts.money(Money(v, c))}"
        for c, v in sorted(figures.refunded_by_currency.items())
    ]
    if figures.undelivered_messages:
        rows.append(f"messages Telegram refused: {figures.undelivered_messages}")
    await message.answer("\n".join(rows))


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(IsAdmin())
    router.callback_query.filter(IsAdmin())
    router.message.register(admin_help, Command("admin"))
    router.message.register(order_lookup, Command("order"))
    router.message.register(refund, Command("refund"))
    router.message.register(stats, Command("stats"))
    return router
