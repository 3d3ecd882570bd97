"""What the bot says, in the current gettext locale: chat screens and outbox messages.

Translation happens at call time (inside the locale the middleware or the notifier set), never
at import time.
"""

from __future__ import annotations

from html import escape

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.catalog import Product
from bot.formatting import format_money, format_when
from providers.base import Money
from storage.base import Order, OrderState

S = OrderState


def locale() -> str:
    return I18n.get_current().current_locale


def money(value: Money) -> str:
    return format_money(value, locale())


def state_name(state: OrderState) -> str:
    names = {
        S.CREATED: _("created"),
        S.AWAITING_PAYMENT: _("awaiting payment"),
        S.PAID: _("paid"),
        S.REFUND_PENDING: _("refund in progress"),
        S.REFUNDED: _("refunded"),
        S.PARTIALLY_REFUNDED: _("partially refunded"),
        S.FAILED: _("payment failed"),
        S.CANCELLED: _("cancelled"),
        S.EXPIRED: _("expired"),
        S.NEEDS_REVIEW: _("being checked by the shop"),
    }
    return names[state]


def product_card(product: Product) -> str:
    lines = [f"<b>{escape(product.name)}</b>", money(product.price)]
    if product.description:
        lines += ["", escape(product.description)]
    return "\n".join(lines)


def order_lines(order: Order) -> str:
    currency = order.currency
    lines = [
        f"• {escape(item.title)} × {item.quantity} — "
        f"{money(Money(item.unit_amount * item.quantity, currency))}"
        for item in order.items
    ]
    lines.append(_("Total: {total}").format(total=f"<b>{money(Money(order.amount, currency))}</b>"))
    return "\n".join(lines)


def order_card(order: Order) -> str:
    head = _("Order #{id} — {state}").format(id=order.id, state=state_name(order.state))
    text = f"<b>{head}</b>\n{order_lines(order)}"
    if order.state is S.AWAITING_PAYMENT:
        text += "\n\n" + _("Press Pay to open the payment page. Come back here when you are done.")
    return text


def receipt(order: Order) -> str:
    rows = [
        "<b>" + _("Receipt for order #{id}").format(id=order.id) + "</b>",
        order_lines(order),
        _("Paid with: {provider}").format(provider=escape(order.provider.title())),
        _("Payment id: {payment_id}").format(payment_id=escape(order.provider_payment_id or "-")),
        _("Paid at: {when}").format(when=format_when(order.paid_at, locale())),
    ]
    if order.refunded_amount:
        refunded = money(Money(order.refunded_amount, order.currency))
        rows.append(_("Refunded: {amount}").format(amount=refunded))
    return "\n".join(rows)


def outbox_text(kind: str, order: Order, payload: dict[str, object]) -> str | None:
    """The text of a queued notification, or None for a kind we do not know (dropped)."""
    total = money(Money(order.amount, order.currency))
    if kind == "paid":
        return _("✅ Payment received for order #{id}: {total}. Thank you!").format(
            id=order.id, total=total
        )
    if kind == "failed":
        return _(
            "❌ The payment for order #{id} did not go through. You can try again from /orders."
        ).format(id=order.id)
    if kind == "expired":
        return _("⌛ Order #{id} expired before it was paid.").format(id=order.id)
    if kind == "review":
        return _(
            "🔎 We are checking the payment for order #{id} by hand; the shop will get back to you."
        ).format(id=order.id)
    if kind.startswith("refunded:"):
        amount = money(Money(int(payload.get("amount", 0)), order.currency))  # type: ignore[call-overload]
        return _("↩️ {amount} refunded for order #{id}.").format(amount=amount, id=order.id)
    if kind == "merchant_paid":
        head = _(
            "💰 Order #{id} paid: {total} via {provider} (payment {payment_id}, customer {user_id})"
        ).format(
            id=order.id,
            total=total,
            provider=escape(order.provider),
            payment_id=escape(order.provider_payment_id or "-"),
            user_id=order.user_id,
        )
        return f"{head}\n{order_lines(order)}"
    if kind == "merchant_review" or kind.startswith("admin_review:"):
        # the reason stays as the checkout service wrote it: the provider's codes and amounts
        reason = escape(str(payload.get("reason", "")))
        head = _("⚠️ Order #{id} needs review: {reason}").format(id=order.id, reason=reason)
        return f"{head}\n{order_lines(order)}"
    return None
