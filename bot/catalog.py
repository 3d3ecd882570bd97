"""The merchant's catalog from `catalog.toml`: categories and products with prices.

Prices are written in major units as a string or an integer ("12.50", 150), never a TOML float,
and become integer minor units here. Names, descriptions and category titles may be translated
with per-locale fields (`name_ru`, `description_tr`, `title_kk`); the customer sees their
language's, else the default field. A product has a money price (`price` + `currency`), a
Telegram Stars price (`stars`, whole stars), or both. An invalid file stops start-up with a
message that names the file, the entry and the field. `delivery = true` marks a product that is
shipped: checking out a cart with one asks the customer for a name, a phone and an address.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import LOCALES
from money import MINOR_UNITS, AmountNotRepresentable, Money

_ID = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
STARS = "XTR"  # Telegram Stars: whole stars, no minor units
MAX_STARS = 1_000_000  # far above any price in stars; a bigger number is a typo
SKU = re.compile(r"[A-Za-z0-9_-]{1,40}")


class CatalogError(ValueError):
    """The catalog file is invalid; the message says where."""


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    title: str
    titles: Mapping[str, str] = field(default_factory=dict, hash=False)  # locale -> title

    def title_in(self, locale: str) -> str:
        return self.titles.get(locale, self.title)


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    prices: tuple[Money, ...]  # the money price first, then XTR; one per currency, at least one
    category: str = ""
    description: str = ""
    photo: str | None = None  # a path relative to the catalog file, or an https URL
    providers: tuple[str, ...] = ()  # empty: every enabled provider that takes the currency
    sku: str = ""  # the merchant's code of it in the provider's system (the ERP's resource id)
    delivery: bool = False  # shipped to the customer: checkout asks where to
    # translations, locale -> text; orders keep the default `name` (what the merchant and the
    # providers see)
    names: Mapping[str, str] = field(default_factory=dict, hash=False)
    descriptions: Mapping[str, str] = field(default_factory=dict, hash=False)

    def name_in(self, locale: str) -> str:
        return self.names.get(locale, self.name)

    def description_in(self, locale: str) -> str:
        return self.descriptions.get(locale, self.description)

    def __post_init__(self) -> None:
        if not self.prices:
            raise ValueError(f"product {self.id!r} has no price")
        if len({p.currency for p in self.prices}) != len(self.prices):
            raise ValueError(f"product {self.id!r} has two prices in one currency")

    @property
    def price(self) -> Money:
        """The primary price: the one a listing shows."""
        return self.prices[0]

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(p.currency for p in self.prices)

    def price_in(self, currency: str) -> Money | None:
        return next((p for p in self.prices if p.currency == currency), None)


@dataclass(frozen=True, slots=True)
class Catalog:
    categories: tuple[Category, ...]
    products: tuple[Product, ...]
    source: Path | None = None

    def product(self, product_id: str) -> Product | None:
        return next((p for p in self.products if p.id == product_id), None)

    def category(self, category_id: str) -> Category | None:
        return next((c for c in self.categories if c.id == category_id), None)

    def in_category(self, category_id: str) -> list[Product]:
        return [p for p in self.products if p.category == category_id]

    def photo_path(self, product: Product) -> Path | None:
        """The photo as a local file, when it is one."""
        if not product.photo or product.photo.startswith(("http://", "https://")):
            return None
        base = self.source.parent if self.source else Path()
        return base / product.photo


def load_catalog(path: Path) -> Catalog:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path}: file not found (set CATALOG_PATH)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from None
    return parse_catalog(data, path)


def parse_catalog(data: dict[str, Any], path: Path | None = None) -> Catalog:
    where = str(path) if path else "catalog"
    categories = tuple(
        _category(entry, f"{where}: categories[{i}]")
        for i, entry in enumerate(_list(data, "categories", where))
    )
    category_ids = {c.id for c in categories}
    _unique([c.id for c in categories], f"{where}: categories")
    products = tuple(
        _product(entry, f"{where}: products[{i}]", category_ids)
        for i, entry in enumerate(_list(data, "products", where))
    )
    if not products:
        raise CatalogError(f"{where}: no [[products]] entries")
    _unique([p.id for p in products], f"{where}: products")
    return Catalog(categories, products, path)


def _list(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise CatalogError(f"{where}: '{key}' must be an array of tables ([[{key}]])")
    return value


def _unique(ids: list[str], where: str) -> None:
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise CatalogError(f"{where}: id {item_id!r} is used twice")
        seen.add(item_id)


# Telegram's limits, with room for what the bot adds around the text: a product card with a
# photo is a caption of at most 1024 characters (name, price, description); names and titles
# are button labels.
MAX_LENGTH = {"name": 64, "title": 64, "description": 800}


def _text(
    entry: dict[str, Any],
    field: str,
    where: str,
    *,
    required: bool = True,
    limit: int | None = None,
) -> str:
    value = entry.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise CatalogError(f"{where}, field '{field}': must be a non-empty string")
    limit = limit or MAX_LENGTH.get(field)
    if limit is not None and len(value.strip()) > limit:
        raise CatalogError(
            f"{where}, field '{field}': {len(value.strip())} characters, at most {limit} fit "
            "in Telegram"
        )
    return value.strip()


def _translations(entry: dict[str, Any], base: str, where: str) -> dict[str, str]:
    """`<base>_<locale>` fields, each checked like `<base>`; a suffix that is no locale of the
    bot is refused rather than silently never shown."""
    found: dict[str, str] = {}
    for key in entry:
        if not key.startswith(f"{base}_"):
            continue
        locale = key.removeprefix(f"{base}_")
        if locale not in LOCALES:
            raise CatalogError(
                f"{where}, field '{key}': {locale!r} is not a language of the bot "
                f"(use one of {', '.join(LOCALES)})"
            )
        found[locale] = _text(entry, key, where, limit=MAX_LENGTH[base])
    return found


def _id(entry: dict[str, Any], where: str) -> str:
    value = _text(entry, "id", where)
    if not _ID.match(value):
        raise CatalogError(f"{where}, field 'id': use 1-24 letters, digits, '-' or '_'")
    return value


def _category(entry: dict[str, Any], where: str) -> Category:
    category_id = _id(entry, where)
    return Category(
        id=category_id,
        title=_text(entry, "title", where),
        titles=_translations(entry, "title", f"{where} ({category_id})"),
    )


def _product(entry: dict[str, Any], where: str, category_ids: set[str]) -> Product:
    product_id = _id(entry, where)
    where = f"{where} ({product_id})"
    category = _text(entry, "category", where, required=False)
    if category and category not in category_ids:
        raise CatalogError(f"{where}, field 'category': no category with id {category!r}")
    prices: list[Money] = []
    if "price" in entry or "currency" in entry:
        currency = _text(entry, "currency", where).upper()
        if currency not in MINOR_UNITS:
            raise CatalogError(
                f"{where}, field 'currency': {currency!r} is not one of {', '.join(MINOR_UNITS)}"
            )
        prices.append(_price(entry.get("price"), currency, where))
    if "stars" in entry:
        if prices and prices[0].currency == STARS:
            raise CatalogError(f"{where}, field 'stars': the price is already in {STARS}")
        prices.append(_stars(entry["stars"], where))
    if not prices:
        raise CatalogError(f"{where}: needs a price (price + currency) or stars")
    providers = entry.get("providers", [])
    if not isinstance(providers, list) or not all(isinstance(p, str) for p in providers):
        raise CatalogError(f"{where}, field 'providers': must be a list of provider names")
    photo = _text(entry, "photo", where, required=False) or None
    sku = entry.get("sku", "")
    if isinstance(sku, int) and not isinstance(sku, bool):
        sku = str(sku)
    if not isinstance(sku, str) or (sku and not SKU.fullmatch(sku)):
        raise CatalogError(f"{where}, field 'sku': letters, digits, '-' or '_', up to 40")
    delivery = entry.get("delivery", False)
    if not isinstance(delivery, bool):
        raise CatalogError(f"{where}, field 'delivery': must be true or false")
    return Product(
        id=product_id,
        name=_text(entry, "name", where),
        prices=tuple(prices),
        category=category,
        description=_text(entry, "description", where, required=False),
        photo=photo,
        providers=tuple(providers),
        sku=sku,
        delivery=delivery,
        names=_translations(entry, "name", where),
        descriptions=_translations(entry, "description", where),
    )


def _price(value: object, currency: str, where: str) -> Money:
    if isinstance(value, float):
        raise CatalogError(
            f"{where}, field 'price': write it as a string (\"{value}\") so no rounding happens"
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise CatalogError(f"{where}, field 'price': must be a string like \"12.50\" or an integer")
    try:
        money = Money.from_decimal(str(value).strip(), currency)
    except AmountNotRepresentable as exc:
        raise CatalogError(
            f"{where}, field 'price': {value!r} is not a valid {currency} amount "
            f"({exc or 'not a number'})"
        ) from None
    if money.amount <= 0:
        raise CatalogError(f"{where}, field 'price': must be above zero")
    return money


def _stars(value: object, where: str) -> Money:
    """`stars = 100` or `stars = "100"`: a whole, positive number of Telegram Stars."""
    if isinstance(value, float):
        raise CatalogError(f"{where}, field 'stars': must be a whole number of stars, not {value}")
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        digits = value.strip()  # a long run of digits is refused below without converting it
        value = int(digits) if len(digits) <= len(str(MAX_STARS)) else MAX_STARS + 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise CatalogError(
            f"{where}, field 'stars': must be a whole number of stars like 100 or \"100\""
        )
    if value <= 0:
        raise CatalogError(f"{where}, field 'stars': must be above zero")
    if value > MAX_STARS:
        raise CatalogError(f"{where}, field 'stars': more than {MAX_STARS:_} stars")
    return Money(value, STARS)
