"""What the bot says, in the current gettext locale: chat screens and outbox messages.

Translation happens at call time (inside the locale the middleware or the notifier set), never
at import time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, tzinfo
from html import escape, unescape

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot import audit_texts
from bot.catalog import Catalog, Category, Product
from bot.core import (
    FULFILLABLE,
    AmountLimit,
    Delivery,
    Fulfilment,
    Money,
    Order,
    OrderItem,
    OrderState,
    OutboxKind,
)
from bot.formatting import format_money, format_when

S = OrderState


def plain(html_text: str) -> str:
    """An HTML message as plain text, for places that show no markup (a button's alert)."""
    return unescape(re.sub(r"<[^>]+>", "", html_text))


def locale() -> str:
    return I18n.get_current().current_locale


def money(value: Money) -> str:
    return format_money(value, locale())


def provider_name(display_name: str) -> str:
    """An adapter's display name in the current language: the descriptive ones are translated
    here, brand names ("Redoya", "Telegram Stars") stay as they are."""
    translated = {
        "Bank card (Payture)": _("Bank card (Payture)"),
        "Bank card (KTWidget)": _("Bank card (KTWidget)"),
    }
    return translated.get(display_name, display_name)


def choice_label(display_name: str) -> str:
    """A provider as a way to pay on the choice screen ("Pay with Stars")."""
    if display_name == "Telegram Stars":
        return _("Pay with Stars")
    return provider_name(display_name)


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


def fulfilment_name(step: Fulfilment) -> str:
    names = {
        Fulfilment.NEW: _("not shipped yet"),
        Fulfilment.SHIPPED: _("shipped"),
        Fulfilment.DELIVERED: _("delivered"),
        Fulfilment.CANCELLED: _("cancelled by the shop"),
    }
    return names[step]


def fulfilment_status(order: Order) -> str:
    """The fulfilment's name for an order the shop owes goods for or has acted on; empty for
    the others (an unpaid order ships nothing)."""
    if order.fulfilment is Fulfilment.NEW and order.state not in FULFILLABLE:
        return ""
    return fulfilment_name(order.fulfilment)


def fulfilment_line(order: Order) -> str:
    """'Shipping: shipped · Tracking: …', or empty (see `fulfilment_status`)."""
    status = fulfilment_status(order)
    if not status:
        return ""
    line = _("Shipping: {status}").format(status=status)
    if order.tracking:
        line += " · " + _("Tracking: {note}").format(note=escape(order.tracking))
    return line


def prices(product: Product) -> str:
    """Every price of a product: '₺150,00 · 100 ⭐'."""
    return " · ".join(money(price) for price in product.prices)


def total(totals: Sequence[Money], *, bold: bool = False) -> str:
    """'Total: ₺150,00', or with a second currency 'Total: ₺150,00 or 100 ⭐' (a product has
    at most two prices: money and Stars)."""
    shown = [f"<b>{money(t)}</b>" if bold else money(t) for t in totals]
    if len(shown) == 1:
        return _("Total: {total}").format(total=shown[0])
    return _("Total: {total} or {other}").format(total=shown[0], other=" / ".join(shown[1:]))


def product_name(product: Product) -> str:
    """The product's name in the customer's language (the catalog's default without one)."""
    return product.name_in(locale())


def category_title(category: Category) -> str:
    return category.title_in(locale())


def product_card(product: Product, limits: Sequence[AmountLimit] = ()) -> str:
    """`limits`: the providers' bounds its price is already beyond (Redoya's cap)."""
    lines = [f"<b>{escape(product_name(product))}</b>", prices(product)]
    lines += [amount_limit(limit, in_cart=False) for limit in limits]
    description = product.description_in(locale())
    if description:
        lines += ["", escape(description)]
    return "\n".join(lines)


def amount_limit(limit: AmountLimit, *, in_cart: bool = True) -> str:
    """A provider's bound that a total is beyond, said before checkout, not after."""
    values = {"provider": provider_name(limit.display_name), "amount": money(limit.bound)}
    if not limit.above:
        return _("{provider} takes at least {amount} per order; add something to the cart.").format(
            **values
        )
    if in_cart:
        return _(
            "{provider} takes at most {amount} per order; remove something from the cart."
        ).format(**values)
    return _("{provider} takes at most {amount} per order.").format(**values)


def item_name(item: OrderItem, catalog: Catalog | None) -> str:
    """An item as the customer reads it: its product's name in the current language while the
    catalog has it, else the title kept with the order (the default name, which the merchant,
    exports and providers see: they render without a catalog)."""
    product = catalog.product(item.sku) if catalog is not None else None
    return product.name_in(locale()) if product is not None else item.title


def order_lines(order: Order, catalog: Catalog | None = None) -> str:
    """`catalog`: for the customer, whose language names the items (see `item_name`)."""
    currency = order.currency
    lines = [
        f"• {escape(item_name(item, catalog))} × {item.quantity} — "
        f"{money(Money(item.unit_amount * item.quantity, currency))}"
        for item in order.items
    ]
    lines.append(_("Total: {total}").format(total=f"<b>{money(order.total)}</b>"))
    return "\n".join(lines)


def order_card(order: Order, catalog: Catalog | None, *, check_here: bool = False) -> str:
    """An order's card: `catalog` for the customer's (items in their language), None for the
    staff's. `check_here`: the provider never tells us or sends
    the customer back (the Turkmen ERP's banks), so the card says to press "Check payment"
    once paid."""
    head = _("Order #{id} — {state}").format(id=order.id, state=state_name(order.state))
    text = f"<b>{head}</b>\n{order_lines(order, catalog)}"
    if order.state is S.AWAITING_PAYMENT and check_here:
        text += "\n\n" + _(
            "Press Pay to open the bank's page. The bank does not send you back here: when you"
            " have paid, come back to this chat and press Check payment."
        )
    elif order.state is S.AWAITING_PAYMENT:
        text += "\n\n" + _("Press Pay to open the payment page. Come back here when you are done.")
    if shipping := fulfilment_line(order):
        text += "\n" + shipping
    return text


def delivery(details: Delivery) -> str:
    """The delivery details as the customer, the merchant and /order see them."""
    rows = [
        "<b>" + _("Delivery") + "</b>",
        _("Name: {name}").format(name=escape(details.name)),
        _("Phone: {phone}").format(phone=escape(details.phone)),
        _("Address: {address}").format(address=escape(details.address)),
    ]
    if details.comment:
        rows.append(_("Comment: {comment}").format(comment=escape(details.comment)))
    return "\n".join(rows)


def buyer_line(order: Order) -> str:
    """Who placed the order, on a line of its own (the merchant's message, the staff's /order):
    their Telegram name as a link to them, and @username when they have one (an order from
    before names were kept shows the id only). A row of /orders uses `lookup.buyer_in_row`."""
    name = escape(order.buyer.name) or str(order.user_id)
    who = f'<a href="tg://user?id={order.user_id}">{name}</a>'
    if order.buyer.username:
        who += f" @{escape(order.buyer.username)}"
    return _("Buyer: {buyer} (id {user_id})").format(buyer=who, user_id=order.user_id)


def receipt(order: Order, provider: str, zone: tzinfo = UTC, catalog: Catalog | None = None) -> str:
    """`provider` is the adapter's display name; `zone` the merchant's (Settings.zone): the
    paid-at time is shown on the shop's clock, the zone named; `catalog` for the customer's
    copy (the items in their language), none for the staff's."""
    rows = [
        "<b>" + _("Receipt for order #{id}").format(id=order.id) + "</b>",
        order_lines(order, catalog),
        _("Paid with: {provider}").format(provider=escape(provider)),
        _("Payment id: {payment_id}").format(payment_id=escape(order.provider_payment_id or "-")),
        _("Paid at: {when}").format(when=format_when(order.paid_at, zone)),
    ]
    if order.refunded_so_far.amount:
        rows.append(_("Refunded: {amount}").format(amount=money(order.refunded_so_far)))
    if order.delivery is not None:
        rows += ["", delivery(order.delivery)]
    if shipping := fulfilment_line(order):
        rows.append(shipping)
    return "\n".join(rows)


def outbox_text(kind: OutboxKind, order: Order, payload: dict[str, object], provider: str) -> str:
    """The text of a queued notification about an order; `provider` is its display name."""
    total = money(order.total)
    K = OutboxKind
    if kind is K.RECEIPT:
        return _("🧾 The receipt for order #{id}.").format(id=order.id)
    if kind is K.PAID:
        return _("✅ Payment received for order #{id}: {total}. Thank you!").format(
            id=order.id, total=total
        )
    if kind is K.FAILED:
        return _(
            "❌ The payment for order #{id} did not go through. You can try again from /orders."
        ).format(id=order.id)
    if kind is K.EXPIRED:
        return _("⌛ Order #{id} expired before it was paid.").format(id=order.id)
    if kind is K.REVIEW:
        return _(
            "🔎 We are checking the payment for order #{id} by hand; the shop will get back to you."
        ).format(id=order.id)
    if kind is K.REFUNDED:
        amount = money(Money(int(payload.get("amount", 0)), order.currency))  # type: ignore[call-overload]
        if payload.get("extra"):  # a payment we did not expect, not the order's own
            return _(
                "↩️ {amount} refunded: a payment for order #{id} that the order did not need."
            ).format(amount=amount, id=order.id)
        return _("↩️ {amount} refunded for order #{id}.").format(amount=amount, id=order.id)
    if kind is K.MERCHANT_REFUNDED:
        amount = money(Money(int(payload.get("amount", 0)), order.currency))  # type: ignore[call-overload]
        if not order.left_to_refund.amount:
            return _("↩️ Order #{id}: {amount} refunded to the customer.").format(
                id=order.id, amount=amount
            )
        return _("↩️ Order #{id}: {amount} refunded to the customer; {left} left.").format(
            id=order.id, amount=amount, left=money(order.left_to_refund)
        )
    if kind is K.MERCHANT_PAID:
        head = _("💰 Order #{id} paid: {total} via {provider} (payment {payment_id})").format(
            id=order.id,
            total=total,
            provider=escape(provider),
            payment_id=escape(order.provider_payment_id or "-"),
        )
        rows = [head, buyer_line(order), order_lines(order)]
        if order.delivery is not None:
            rows += ["", delivery(order.delivery)]
        return "\n".join(rows)
    if kind in (K.MERCHANT_REVIEW, K.ADMIN_REVIEW):
        # a known reason in the reader's words; the provider's codes and words as they came
        reason = audit_texts.reason(str(payload.get("reason", "")))
        head = _("⚠️ Order #{id} needs review: {reason}").format(id=order.id, reason=reason)
        return f"{head}\n{order_lines(order)}"
    if kind in FULFILMENT_KINDS:
        return fulfilment_text(kind, order, payload)
    if kind is K.ADMIN_MISCONFIGURED:
        error = escape(str(payload.get("error", "")))
        return _(
            "🛠 {provider} refused our credentials or settings (seen on order #{id}): {error}. "
            "Payments through it wait until the settings are fixed."
        ).format(provider=escape(provider), id=order.id, error=error)
    if kind is K.ADMIN_CALLBACK_REFUSED:
        reason = escape(str(payload.get("reason", "")))
        head = _(
            "⚠️ {provider} reported order #{id}, and it was refused: {reason}. Nothing changed; "
            "please check the payment in {provider}'s back office."
        ).format(provider=escape(provider), id=order.id, reason=reason)
        return f"{head}\n{order_lines(order)}"
    if kind is K.ADMIN_LEDGER_RECOVERED:
        charge = escape(str(payload.get("payment_id", "")))
        head = _(
            "🔎 {provider} lists payment {charge} for order #{id}, whose update never reached "
            "us; the order is now confirmed from that list."
        ).format(provider=escape(provider), charge=charge, id=order.id)
        return f"{head}\n{order_lines(order)}"
    if kind is K.ADMIN_LEDGER_UNLISTED:
        charge = escape(str(payload.get("payment_id", "")))
        head = _(
            "🔎 Order #{id} is paid here, but {provider} does not list its payment {charge}. "
            "Please look at it before shipping."
        ).format(provider=escape(provider), charge=charge, id=order.id)
        return f"{head}\n{order_lines(order)}"
    raise ValueError(f"{kind} is not about an order")


def merchant_card(order: Order, provider: str) -> str:
    """The merchant chat's paid-order message as it was sent, with the order's state and
    shipping now (after a step, a refund, a review)."""
    text = outbox_text(OutboxKind.MERCHANT_PAID, order, {}, provider)
    now = _("Now: {state}").format(state=state_name(order.state))
    shipping = fulfilment_line(order)
    return "\n".join([text, "", now, shipping] if shipping else [text, "", now])


FULFILMENT_KINDS = frozenset(
    {
        OutboxKind.SHIPPED,
        OutboxKind.DELIVERED,
        OutboxKind.SHOP_CANCELLED,
        OutboxKind.REVIEW_PAID,
        OutboxKind.REVIEW_FAILED,
        OutboxKind.MERCHANT_REVIEW_FAILED,
    }
)


def fulfilment_text(kind: OutboxKind, order: Order, payload: dict[str, object]) -> str:
    """What the customer (or the merchant chat) is told when a person acts on an order."""
    K = OutboxKind
    if kind is K.SHIPPED:
        text = _("📦 Order #{id} has been shipped.").format(id=order.id)
        if payload.get("tracking"):
            text += "\n" + _("Tracking: {note}").format(note=escape(str(payload["tracking"])))
        return text
    if kind is K.DELIVERED:
        return _("📬 Order #{id} has been delivered. Thank you for your order!").format(id=order.id)
    if kind is K.SHOP_CANCELLED:
        return _(
            "✖ The shop cancelled order #{id}. If you paid for it, you will get a message here "
            "when the money is refunded."
        ).format(id=order.id)
    if kind is K.REVIEW_PAID:
        text = _("✅ The shop checked the payment for order #{id}: it is received. Thank you!")
        return text.format(id=order.id)
    if kind is K.REVIEW_FAILED:
        return _(
            "❌ The shop checked the payment for order #{id} and could not accept it. If money "
            "was taken, the shop refunds it. You can try again from /orders."
        ).format(id=order.id)
    text = _("Order #{id}: the review is closed and the payment marked failed; do not ship it.")
    return text.format(id=order.id)


def user_text(kind: OutboxKind, payload: dict[str, object]) -> str:
    """The text of a queued notification not tied to an order (saved cards, a payment that
    names no order)."""
    if kind is OutboxKind.CARD_SAVED:
        card = escape(str(payload.get("card", "")))
        return _("💳 Card {card} saved. It will be offered at checkout; /cards to manage.").format(
            card=card
        )
    if kind is OutboxKind.CARD_FAILED:
        return _("The card was not saved. You can try again from a paid order.")
    if kind is OutboxKind.ADMIN_STRANGER_PAYMENT:
        amount = money(Money(int(payload["amount"]), str(payload["currency"])))  # type: ignore[call-overload]
        return _(
            "⚠️ {provider}: {amount} from user {user_id} (payment {payment_id}) names no order "
            "of ours (a changed CALLBACK_SECRET or BOT_TOKEN?). Refund it or find its order."
        ).format(
            provider=escape(str(payload.get("provider", ""))),
            amount=amount,
            user_id=escape(str(payload.get("user_id", ""))),
            payment_id=escape(str(payload.get("payment_id", ""))),
        )
    if kind is OutboxKind.ADMIN_UNKNOWN_PAYMENT:
        amount = money(Money(int(payload["amount"]), str(payload["currency"])))  # type: ignore[call-overload]
        return _(
            "⚠️ {provider}: payment {payment_id} of {amount} belongs to no order of ours (its "
            "answer to us was lost). Its note starts with the order number: settle or refund it "
            "in {provider}."
        ).format(
            provider=escape(str(payload.get("provider", ""))),
            payment_id=escape(str(payload.get("payment_id", ""))),
            amount=amount,
        )
    if kind is OutboxKind.ADMIN_MISCONFIGURED:  # found at start-up, before any order
        return _(
            "🛠 {provider} refused our credentials or settings: {error}. "
            "Payments through it wait until the settings are fixed."
        ).format(
            provider=escape(str(payload.get("provider", ""))),
            error=escape(str(payload.get("error", ""))),
        )
    raise ValueError(f"{kind} is about an order")
