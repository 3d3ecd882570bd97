"""The cart: product id -> quantity, kept in the aiogram FSM data of the user (memory or Redis).

Pure functions over plain dicts, so the FSM can store the cart as JSON. A cart never mixes
currencies: adding a product in another currency is refused with `MixedCurrencies`.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.catalog import Catalog, Product
from bot.core import CartLine
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
    others = [p for p, _ in lines(new, catalog) if p.id != product_id]
    if any(p.price.currency != product.price.currency for p in others):
        raise CartError("mixed_currencies")
    if product_id not in new and len(new) >= MAX_LINES:
        raise CartError("too_many_lines")
    new[product_id] = quantity
    return new


def add(cart: Cart, catalog: Catalog, product_id: str, delta: int = 1) -> Cart:
    return set_quantity(cart, catalog, product_id, cart.get(product_id, 0) + delta)


def total(items: list[tuple[Product, int]]) -> Money | None:
    if not items:
        return None
    first, qty = items[0]
    result = first.price * qty
    for product, quantity in items[1:]:
        result = result + product.price * quantity
    return result


def checkout_lines(items: list[tuple[Product, int]]) -> list[CartLine]:
    return [CartLine(p.id, p.name, q, p.price) for p, q in items]


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
