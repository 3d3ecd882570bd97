"""Admins (ADMIN_IDS): look up orders, refund, see figures. Audience checked once, on the router."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import Message, TelegramObject
from aiogram.utils.i18n import gettext as _

from bot import texts
from bot.config import Settings
from bot.core import AmountNotRepresentable, CheckoutService, Money, Order, RefundError


class IsAdmin(Filter):
    async def __call__(self, event: TelegramObject, settings: Settings) -> bool:
        user = getattr(event, "from_user", None)
        return user is not None and user.id in settings.admin_ids


ORDER_ID_DIGITS = 18  # beyond this it is no order id of ours (and would overflow SQLite)
MAX_DAYS = 36_600


def _number(text: str, digits: int = ORDER_ID_DIGITS) -> int | None:
    """A plain ASCII number of at most `digits` digits ('²' and '１' are not numbers here)."""
    if not text or len(text) > digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _order_id(command: CommandObject) -> int | None:
    first = (command.args or "").split()[:1]
    return _number(first[0]) if first else None


def usage() -> str:
    """The admin commands; escaped, since `<id>` would read as an HTML tag."""
    return texts.escape(
        "\n".join(
            (
                _("/order <id> — an order with its audit trail"),
                _("/refund <id> [amount] — refund all or part (amount in major units, e.g. 12.50)"),
                _("/stats [days] — figures"),
            )
        )
    )


def refusal(exc: RefundError, order: Order, display_name: str) -> str:
    """Why a refund was refused, in the admin's language; the provider's own words stay as
    they came."""
    left = order.left_to_refund
    provider = texts.escape(display_name)
    reasons = {
        "not_refundable": _("order #{id} is {state}").format(
            id=order.id, state=texts.state_name(order.state)
        ),
        "manual_refund": _("{provider} has no refund API; refund in its back office").format(
            provider=provider
        ),
        "bad_amount": _("the amount must be above zero"),
        "beyond_paid": _("only {amount} is left to refund").format(amount=texts.money(left)),
        "no_partial": _("{provider} refunds only the whole amount").format(provider=provider),
        "duplicate_refund": _("this refund was already made"),
        "busy": _("the order changed meanwhile; try again"),
        "provider_error": _("the provider did not answer; the order is left for review"),
    }
    reason = reasons.get(exc.reason) or texts.escape(exc.detail or exc.reason)
    return _("Refund refused: {reason}").format(reason=reason)


async def admin_help(message: Message) -> None:
    await message.answer(usage())


async def order_lookup(message: Message, command: CommandObject, checkout: CheckoutService) -> None:
    order_id = _order_id(command)
    order = await checkout.order(order_id) if order_id else None
    if order is None:
        await message.answer(texts.escape(_("No such order. Usage: /order <id>")))
        return
    trail = await checkout.audit(order.id)
    provider = checkout.display_name(order.provider)
    rows = [
        texts.receipt(order, provider) if order.paid_at else texts.order_card(order),
        _("state: {state} · provider: {provider} · customer: {user_id}").format(
            state=order.state, provider=texts.escape(order.provider), user_id=order.user_id
        ),
        "<b>" + _("Audit") + "</b>",
    ]
    rows += [
        f"{e.created_at:%Y-%m-%d %H:%M:%S} {e.from_state or '-'} → {e.to_state} by {e.actor}: "
        f"{texts.escape(e.detail)}"
        for e in trail[-15:]
    ]
    await message.answer("\n".join(rows))


async def refund(message: Message, command: CommandObject, checkout: CheckoutService) -> None:
    parts = (command.args or "").split()
    order_id = _order_id(command)
    order = await checkout.order(order_id) if order_id else None
    if order is None:
        await message.answer(texts.escape(_("No such order. Usage: /refund <id> [amount]")))
        return
    amount = None
    if len(parts) > 1:
        try:
            amount = Money.from_decimal(parts[1].replace(",", "."), order.currency)
        except AmountNotRepresentable:
            await message.answer(
                _("{amount} is not a valid {currency} amount").format(
                    amount=texts.escape(parts[1]), currency=order.currency
                )
            )
            return
    try:
        refunded = await checkout.refund(
            order.id, amount, actor=f"admin:{message.from_user.id if message.from_user else 0}"
        )
    except RefundError as exc:
        await message.answer(refusal(exc, order, checkout.display_name(order.provider)))
        return
    left = refunded.left_to_refund
    await message.answer(
        _("Refunded. Order #{id} is {state}; {amount} left.").format(
            id=refunded.id, state=texts.state_name(refunded.state), amount=texts.money(left)
        )
    )


async def stats(message: Message, command: CommandObject, checkout: CheckoutService) -> None:
    days = _number((command.args or "").strip(), 5) or 30
    days = min(days, MAX_DAYS)
    figures = await checkout.figures(days)
    rows = ["<b>" + _("Orders of the last {days} days").format(days=days) + "</b>"]
    rows += [f"{state}: {n}" for state, n in sorted(figures.orders_by_state.items())]
    rows += [_("Paid: {amount}").format(amount=texts.money(m)) for m in figures.paid]
    rows += [_("Refunded: {amount}").format(amount=texts.money(m)) for m in figures.refunded]
    if figures.undelivered_messages:
        rows.append(
            _("Messages Telegram refused: {count}").format(count=figures.undelivered_messages)
        )
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
