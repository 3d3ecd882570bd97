"""Products priced in Telegram Stars (XTR) beside or instead of money: the catalog format, the
cart's common currencies, what the customer sees and the choice of how to pay, through the
Telegram sandbox, whose Bot API is the Stars provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot import cart as carts
from bot.app import BotApp, Parts, StartupError
from bot.catalog import CatalogError, Product, load_catalog, parse_catalog
from bot.keyboards import PayWith
from money import Money
from sandbox.botuser import BotUser, buttons
from tests.conftest import CUSTOMER

ROOT = Path(__file__).resolve().parent.parent
HEAD = '[[products]]\nid = "a"\nname = "A"\n'


def try_(amount: int) -> Money:
    return Money(amount, "TRY")


def xtr(amount: int) -> Money:
    return Money(amount, "XTR")


def labels(message: dict) -> list[str]:
    return [b["text"] for b in buttons(message)]


# --- the catalog format -------------------------------------------------------------------


def test_a_product_may_have_stars_beside_or_instead_of_a_price() -> None:
    catalog = parse_catalog(
        {
            "products": [
                {"id": "both", "name": "Both", "price": "150", "currency": "TRY", "stars": 100},
                {"id": "stars", "name": "Stars", "stars": " 250 "},
                {"id": "money", "name": "Money", "price": 5, "currency": "rub"},
            ]
        }
    )
    both, stars, money = catalog.products
    assert both.prices == (try_(15000), xtr(100))
    assert (both.price, both.currencies) == (try_(15000), ("TRY", "XTR"))
    assert (both.price_in("XTR"), both.price_in("TRY"), both.price_in("RUB")) == (
        xtr(100),
        try_(15000),
        None,
    )
    assert (stars.prices, stars.price, stars.currencies) == ((xtr(250),), xtr(250), ("XTR",))
    assert money.prices == (Money(500, "RUB"),)


def test_the_shipped_and_demo_catalogs_have_stars_prices() -> None:
    for path in (ROOT / "catalog.toml", ROOT / "bot" / "demo_catalog.toml"):
        products = load_catalog(path).products
        assert sum(p.currencies[1:] == ("XTR",) for p in products) >= 2, path
        assert any(p.currencies == ("XTR",) for p in products), path


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (HEAD + 'price = "1"\ncurrency = "TRY"\nstars = 1.5', "field 'stars': must be a whole"),
        (HEAD + "stars = 100.0", "field 'stars': must be a whole"),
        (HEAD + "stars = true", "field 'stars': must be a whole"),
        (HEAD + 'stars = "1.5"', "field 'stars': must be a whole"),
        (HEAD + 'stars = "-5"', "field 'stars': must be a whole"),
        (HEAD + 'stars = "many"', "field 'stars': must be a whole"),
        (HEAD + 'stars = ""', "field 'stars': must be a whole"),
        (HEAD + "stars = [100]", "field 'stars': must be a whole"),
        (HEAD + "stars = 0", "field 'stars': must be above zero"),
        (HEAD + 'stars = "0"', "field 'stars': must be above zero"),
        (HEAD + "stars = -3", "field 'stars': must be above zero"),
        (HEAD + "stars = 1000001", "field 'stars': more than 1_000_000"),
        (HEAD + f'stars = "{"9" * 5000}"', "field 'stars': more than 1_000_000"),
        (HEAD + 'price = "5"\ncurrency = "XTR"\nstars = 5', "field 'stars': the price is already"),
        (HEAD + 'description = "no price"', "products[0] (a): needs a price (price + currency)"),
        (HEAD + 'price = "5"\nstars = 5', "products[0] (a), field 'currency'"),
        (HEAD + 'currency = "TRY"\nstars = 5', "products[0] (a), field 'price'"),
    ],
)
def test_a_bad_stars_price_names_file_entry_and_field(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)
    assert "products[0] (a)" in str(caught.value)
    assert message in str(caught.value)


# --- the cart -----------------------------------------------------------------------------

SHOP = parse_catalog(
    {
        "products": [
            {"id": "both", "name": "Both", "price": "150", "currency": "TRY", "stars": 100},
            {"id": "both2", "name": "Both 2", "price": "20", "currency": "TRY", "stars": "15"},
            {"id": "lira", "name": "Lira", "price": "85", "currency": "TRY"},
            {"id": "stars", "name": "Stars", "stars": 500},
            {"id": "rub", "name": "Rub", "price": "450", "currency": "RUB"},
        ]
    }
)


def items(cart: carts.Cart) -> list[tuple[Product, int]]:
    return carts.lines(cart, SHOP)


def test_a_carts_currencies_are_what_all_its_products_share() -> None:
    assert carts.currencies([]) == ()
    cart = carts.add({}, SHOP, "both", 2)
    assert carts.currencies(items(cart)) == ("TRY", "XTR")
    cart = carts.add(cart, SHOP, "both2")
    assert carts.currencies(items(cart)) == ("TRY", "XTR")
    assert carts.total(items(cart)) == try_(2 * 15000 + 2000)
    assert carts.total(items(cart), "XTR") == xtr(2 * 100 + 15)
    assert carts.total(items(cart), "RUB") is None
    assert [line.unit_price for line in carts.checkout_lines(items(cart), "XTR")] == [
        xtr(100),
        xtr(15),
    ]
    assert [line.unit_price for line in carts.checkout_lines(items(cart))] == [
        try_(15000),
        try_(2000),
    ]

    with_stars = carts.add(cart, SHOP, "stars")  # shares XTR: the cart is in stars only now
    assert carts.currencies(items(with_stars)) == ("XTR",)
    assert carts.total(items(with_stars)) == xtr(2 * 100 + 15 + 500)
    assert carts.total(items(with_stars), "TRY") is None
    with pytest.raises(carts.CartError) as caught:
        carts.checkout_lines(items(with_stars), "TRY")
    assert caught.value.reason == "mixed_currencies"

    with_lira = carts.add(cart, SHOP, "lira")
    assert carts.currencies(items(with_lira)) == ("TRY",)
    starred = carts.add({}, SHOP, "stars")
    assert carts.currencies(items(carts.add(starred, SHOP, "both"))) == ("XTR",)


@pytest.mark.parametrize(
    ("first", "then"),
    [("lira", "stars"), ("stars", "lira"), ("both", "rub"), ("stars", "rub")],
)
def test_a_product_sharing_no_currency_with_the_cart_is_refused(first: str, then: str) -> None:
    cart = carts.add({}, SHOP, first)
    with pytest.raises(carts.CartError) as caught:
        carts.add(cart, SHOP, then)
    assert caught.value.reason == "mixed_currencies"


def test_a_cart_narrowed_to_one_currency_refuses_the_other() -> None:
    cart = carts.add(carts.add({}, SHOP, "both"), SHOP, "lira")  # now TRY only
    with pytest.raises(carts.CartError):
        carts.add(cart, SHOP, "stars")
    cart = carts.set_quantity(cart, SHOP, "lira", 0)  # back to TRY + XTR
    assert carts.currencies(items(carts.add(cart, SHOP, "stars"))) == ("XTR",)


def test_pay_with_stays_under_telegrams_64_bytes_and_reads_old_buttons() -> None:
    longest = PayWith(provider="p" * 16, product="x" * 24, card=2**31, currency="XTR")
    assert len(longest.pack().encode()) < 64
    assert PayWith.unpack(longest.pack()) == longest
    assert PayWith.unpack("w:redoya:cezve:0") == PayWith(provider="redoya", product="cezve")
    assert PayWith.unpack("w:redoya::0:XTR").currency == "XTR"


# --- in the chat ----------------------------------------------------------------------------

CATALOG = """
[[categories]]
id = "shop"
title = "Shop"

[[products]]
id = "lokum"
category = "shop"
name = "Turkish delight"
price = "60"
currency = "TRY"
stars = 40

[[products]]
id = "cups"
category = "shop"
name = "Coffee cups"
price = "120"
currency = "TRY"
stars = "80"

[[products]]
id = "cezve"
category = "shop"
name = "Cezve"
price = 85
currency = "TRY"

[[products]]
id = "club"
category = "shop"
name = "Coffee club"
stars = 500
"""


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG, encoding="utf-8")
    return path


def without_club(path: Path) -> Path:
    """The catalog less its Stars-only product."""
    other = path.with_name("without-club.toml")
    other.write_text(CATALOG.split('[[products]]\nid = "club"')[0], encoding="utf-8")
    return other


@pytest.fixture
async def stars_app(make_settings: Callable[..., Any], catalog_path: Path) -> AsyncIterator[Parts]:
    """The sandbox's providers: Redoya takes TRY, Telegram Stars XTR."""
    async with BotApp(make_settings(catalog_path=catalog_path)) as parts:
        yield parts


async def open_product(user: BotUser, name: str) -> dict:
    await user.send("/start")
    await user.wait_message("Catalog")
    await user.press(text="Shop")
    await user.wait_message(predicate=lambda m: "Shop" in (m.get("text") or ""))
    await user.press(text=name)
    return await user.wait_message(name)


async def fill_cart(user: BotUser, *names: str) -> dict:
    for name in names:
        await open_product(user, name)
        answer = await user.press(text="Add to cart")
        assert answer is not None
        assert answer["text"] == "Added to the cart.", answer
    await user.send("/cart")
    return await user.wait_message("Your cart")


async def test_cards_pages_and_cart_show_every_price(stars_app: Parts, user: BotUser) -> None:
    card = await open_product(user, "Turkish delight")
    assert "₺60.00 · 40 ⭐" in card["text"]
    page = next(m for m in reversed(await user.bot_messages()) if "Shop" in (m.get("text") or ""))
    assert "Turkish delight · ₺60.00" in labels(page)  # the primary price
    assert "Coffee club · 500 ⭐" in labels(page)
    club = await open_product(user, "Coffee club")
    assert "500 ⭐" in club["text"]

    cart = await fill_cart(user, "Turkish delight", "Coffee cups")
    assert "Turkish delight × 1 — ₺60.00" in cart["text"]
    assert "Total: ₺180.00 or 120 ⭐" in cart["text"]

    await user.send("/language")
    await user.wait_message("")
    await user.press(text="Türkçe")
    await user.send("/cart")
    cart = await user.wait_message("Sepetiniz")
    assert "Toplam: ₺180,00 veya 120 ⭐" in cart["text"]


async def test_a_cart_in_two_currencies_offers_the_providers_of_each(
    stars_app: Parts, user: BotUser
) -> None:
    await fill_cart(user, "Turkish delight", "Coffee cups")
    await user.press(text="Checkout")
    choice = await user.wait_message("How would you like to pay?")
    assert "Total: ₺180.00 or 120 ⭐" in choice["text"]
    assert labels(choice) == ["Redoya", "Pay with Stars"]
    assert [PayWith.unpack(b["callback_data"]).currency for b in buttons(choice)] == ["TRY", "XTR"]

    await user.press(text="Pay with Stars")
    invoice = (await user.wait_message(predicate=lambda m: "invoice" in m))["invoice"]
    assert (invoice["currency"], invoice["total_amount"]) == ("XTR", 120)
    assert "Turkish delight x1" in invoice["description"]
    (order,) = await stars_app.storage.orders_for_user(CUSTOMER)
    assert (order.provider, order.total) == ("stars", xtr(120))
    assert [(i.sku, i.unit_amount) for i in order.items] == [("lokum", 40), ("cups", 80)]
    await user.send("/cart")
    await user.wait_message("Your cart is empty")


async def test_the_same_cart_paid_in_lira(stars_app: Parts, user: BotUser) -> None:
    await fill_cart(user, "Turkish delight")
    await user.press(text="Checkout")
    await user.wait_message("How would you like to pay?")
    await user.press(text="Redoya")
    await user.wait_message("Order #")
    (order,) = await stars_app.storage.orders_for_user(CUSTOMER)
    assert (order.provider, order.total) == ("redoya", try_(6000))


async def test_a_lira_only_cart_does_not_offer_stars(stars_app: Parts, user: BotUser) -> None:
    await fill_cart(user, "Cezve", "Turkish delight")  # Cezve has no stars price
    await user.press(text="Checkout")
    await user.wait_message("Order #")  # one way to pay: placed at once
    assert not any("How would you like" in (m.get("text") or "") for m in await user.messages())
    (order,) = await stars_app.storage.orders_for_user(CUSTOMER)
    assert (order.provider, order.total) == ("redoya", try_(14500))


async def test_a_stars_only_product_is_bought_in_stars(stars_app: Parts, user: BotUser) -> None:
    await open_product(user, "Coffee club")
    await user.press(text="Buy now")
    await user.wait_message(predicate=lambda m: "invoice" in m)
    (order,) = await stars_app.storage.orders_for_user(CUSTOMER)
    assert (order.provider, order.total) == ("stars", xtr(500))


async def test_a_stars_product_with_nobody_taking_stars(
    make_settings: Callable[..., Any], catalog_path: Path, user: BotUser
) -> None:
    """Stars off: a product priced only in stars cannot be sold, so the bot does not start
    (`python -m bot check` says the same); one with a lira price too sells through Redoya."""
    settings = make_settings(catalog_path=catalog_path, env={"STARS_ENABLED": "false"})
    refused = r"product 'club' cannot be paid: no enabled provider takes XTR"
    with pytest.raises(StartupError, match=refused):
        async with BotApp(settings):
            pass
    async with BotApp(
        settings.model_copy(update={"catalog_path": without_club(catalog_path)})
    ) as app:
        await open_product(user, "Turkish delight")  # TRY + XTR: Redoya takes the lira
        await user.press(text="Buy now")
        await user.wait_message("Order #")
        (order,) = await app.storage.orders_for_user(CUSTOMER)
        assert (order.provider, order.total) == ("redoya", try_(6000))


async def test_stale_and_forged_currency_choices(stars_app: Parts, user: BotUser) -> None:
    await fill_cart(user, "Turkish delight")
    page = (await user.bot_messages())[-1]
    for forged, expected in (
        ("w:redoya::0:XTR", "cannot take that amount"),  # Redoya takes no stars
        ("w:stars::0:TRY", "cannot take that amount"),
        ("w:redoya::0:RUB", "out of date"),  # not a currency of this cart
        ("w:redoya::0:xyz", "out of date"),
        ("w:redoya:cezve:0:XTR", "out of date"),  # Cezve has no stars price
    ):
        answer = await user.press(forged, message_id=page["message_id"], force=True)
        assert answer is not None
        assert expected in (answer["text"] or ""), (forged, answer)
    assert await stars_app.storage.orders_for_user(CUSTOMER) == []

    # a button from before the currency was in it: the first currency the provider takes
    await user.press("w:stars::0", message_id=page["message_id"], force=True)
    await user.wait_message(predicate=lambda m: "invoice" in m)
    (order,) = await stars_app.storage.orders_for_user(CUSTOMER)
    assert (order.provider, order.total) == ("stars", xtr(40))
