"""The cart: product id -> quantity, kept in the aiogram FSM data of the user (memory or Redis).

Pure functions over plain dicts, so the FSM can store the cart as JSON. A cart never mixes
currencies: a product may have prices in several (money and Telegram Stars), and the cart's
currencies are the ones every product in it has; adding a product that shares none of them is
refused (`CartError("mixed_currencies")`). Totals and order lines are in one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.catalog import Catalog, Product
from bot.core import CartLine, Order, OrderItem
from money import Money

MAX_QUANTITY = 99
MAX_LINES = 20

Cart = dict[str, int]


class CartError(ValueError):
    """A cart change we refuse; `reason` is a key the chat turns into text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read(data: Mapping[str, object]) -> Cart:
    raw = data.get("cart")
    if not isinstance(raw, dict):
        return {}
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int) and 0 < v <= MAX_QUANTITY}


def count(cart: Cart) -> int:
    return sum(cart.values())


def lines(cart: Cart, catalog: Catalog) -> list[tuple[Product, int]]:
    """The cart's products still in the catalog (a removed product silently drops out)."""
    found = [(catalog.product(pid), qty) for pid, qty in cart.items()]
    return [(p, q) for p, q in found if p is not None]


def set_quantity(cart: Cart, catalog: Catalog, product_id: str, quantity: int) -> Cart:
    product = catalog.product(product_id)
    if product is None:
        raise CartError("gone")
    if not 0 <= quantity <= MAX_QUANTITY:
        raise CartError("quantity_range")
    new = dict(cart)
    if quantity == 0:
        new.pop(product_id, None)
        return new
    others = [(p, q) for p, q in lines(new, catalog) if p.id != product_id]
    if others and not set(currencies(others)) & set(product.currencies):
        raise CartError("mixed_currencies")
    if product_id not in new and len(new) >= MAX_LINES:
        raise CartError("too_many_lines")
    new[product_id] = quantity
    return new


def add(cart: Cart, catalog: Catalog, product_id: str, delta: int = 1) -> Cart:
    return set_quantity(cart, catalog, product_id, cart.get(product_id, 0) + delta)


def currencies(items: list[tuple[Product, int]]) -> tuple[str, ...]:
    """The currencies every product of the cart has a price in, in the first product's order
    (its money price, then Stars); empty for an empty cart, or one the catalog changed under."""
    if not items:
        return ()
    common = set.intersection(*(set(p.currencies) for p, _ in items))
    return tuple(c for c in items[0][0].currencies if c in common)


def total(items: list[tuple[Product, int]], currency: str | None = None) -> Money | None:
    """The cart's total in `currency` (default: its first common currency); None for an empty
    cart or when a product has no price in that currency."""
    if currency is None:
        common = currencies(items)
        if not common:
            return None
        currency = common[0]
    result = Money.zero(currency)
    for product, quantity in items:
        price = product.price_in(currency)
        if price is None:
            return None
        result = result + price * quantity
    return result if items else None


def checkout_lines(items: list[tuple[Product, int]], currency: str | None = None) -> list[CartLine]:
    """The order's lines priced in `currency` (default: the cart's first common currency);
    `CartError("mixed_currencies")` when a product has no price in it."""
    if currency is None:
        common = currencies(items)
        currency = common[0] if common else ""
    found = [(p, q, p.price_in(currency)) for p, q in items]
    if any(price is None for _, _, price in found):
        raise CartError("mixed_currencies")
    return [
        CartLine(p.id, p.name, q, price, p.sku, p.delivery)
        for p, q, price in found
        if price is not None
    ]


def needs_delivery(items: list[tuple[Product, int]]) -> bool:
    """A cart needs the customer's delivery details when any of its products is shipped."""
    return any(product.delivery for product, _ in items)


def allowed_providers(items: list[tuple[Product, int]]) -> tuple[str, ...]:
    """Providers every product allows (empty tuple: no product restricts them)."""
    allowed: set[str] | None = None
    for product, _ in items:
        if product.providers:
            allowed = (
                set(product.providers) if allowed is None else allowed & set(product.providers)
            )
    if allowed is None:
        return ()
    return tuple(sorted(allowed)) or ("-",)  # "-": the products agree on no provider


@dataclass(frozen=True, slots=True)
class Refill:
    """An old order's items as a cart at today's catalog prices, and what changed since."""

    cart: Cart
    changed: list[tuple[Product, Money, Money]] = field(default_factory=list)  # old, new price
    gone: list[OrderItem] = field(default_factory=list)  # no longer sold (in its currency)


def refill(order: Order, catalog: Catalog) -> Refill:
    """The cart "Try again" fills: each item's product (an item's `sku` is its product id)
    at today's price in the order's currency; products no longer sold are left out."""
    found = Refill({})
    cart: Cart = {}
    for item in order.items:
        product = catalog.product(item.sku)
        price = product.price_in(order.currency) if product else None
        if product is None or price is None:
            found.gone.append(item)
            continue
        try:
            cart = set_quantity(cart, catalog, product.id, min(item.quantity, MAX_QUANTITY))
        except CartError:
            found.gone.append(item)
            continue
        if price.amount != item.unit_amount:
            found.changed.append((product, Money(item.unit_amount, order.currency), price))
    return Refill(cart, found.changed, found.gone)
