"""Translated catalog fields: `name_<locale>`, `description_<locale>`, `title_<locale>`, checked
like the default fields and shown in the customer's language, else the default; orders keep the
default name, and the customer's copies of an order name the items in their language."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import BotApp
from bot.catalog import CatalogError, load_catalog
from sandbox.botuser import BotUser, button_url, buttons
from sandbox.telegram import TelegramServer
from tests.flows import browse

CATALOG = """
[[categories]]
id = "tea"
title = "Tea"
title_ru = "Чай"

[[products]]
id = "green"
category = "tea"
name = "Green tea"
name_ru = "Зелёный чай"
name_tr = "Yeşil çay"
price = 90
currency = "TRY"
description = "From the hills."
description_ru = "С холмов."

[[products]]
id = "black"
category = "tea"
name = "Black tea"
price = 70
currency = "TRY"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_translations_load_and_fall_back(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, CATALOG))
    green, black = catalog.products
    assert (green.name_in("ru"), green.name_in("tr"), green.name_in("kk")) == (
        "Зелёный чай",
        "Yeşil çay",
        "Green tea",
    )
    assert (green.description_in("ru"), green.description_in("tr")) == (
        "С холмов.",
        "From the hills.",
    )
    assert black.name_in("ru") == "Black tea"
    assert catalog.categories[0].title_in("ru") == "Чай"
    assert catalog.categories[0].title_in("mn") == "Tea"
    for shipped in ("catalog.toml", "bot/demo_catalog.toml"):  # the examples carry some
        assert any(p.names for p in load_catalog(Path(shipped)).products)


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        (
            'name_de = "Grüner Tee"',
            "products[0] (green), field 'name_de'",
            "'de' is not a language",
        ),
        ('name_mn = ""', "products[0] (green), field 'name_mn'", "non-empty string"),
        ("name_mn = 5", "products[0] (green), field 'name_mn'", "non-empty string"),
        (f'name_kk = "{"ш" * 65}"', "field 'name_kk': 65 characters", "at most 64"),
        (f'description_tr = "{"a" * 801}"', "field 'description_tr'", "at most 800"),
    ],
)
def test_a_bad_translated_field_is_refused_naming_the_entry(
    tmp_path: Path, extra: str, where: str, message: str
) -> None:
    text = CATALOG.replace('name = "Green tea"', f'name = "Green tea"\n{extra}')
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)
    assert where in str(caught.value)
    assert message in str(caught.value)


def test_a_bad_category_title_translation_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, CATALOG.replace('title_ru = "Чай"', 'title_xx = "?"'))
    with pytest.raises(CatalogError, match=r"categories\[0\] \(tea\), field 'title_xx'"):
        load_catalog(path)


async def test_a_customer_sees_their_language_and_the_default_elsewhere(
    make_settings, telegram: TelegramServer, http, tmp_path: Path
) -> None:
    russian = BotUser(telegram.url, 2101, first_name="Оля", language_code="ru", session=http)
    kazakh = BotUser(telegram.url, 2102, first_name="Aru", language_code="kk", session=http)
    async with BotApp(make_settings(catalog_path=write(tmp_path, CATALOG))) as parts:

        def ru(text: str) -> str:
            return parts.i18n.gettext(text, locale="ru")

        await russian.send("/catalog")
        await russian.wait_message(ru("Catalog:"))
        await russian.press(text="Чай")
        page = await russian.wait_message("Чай")
        labels = [b["text"] for b in buttons(page)]
        assert any(label.startswith("Зелёный чай · ") for label in labels), labels
        assert any(label.startswith("Black tea · ") for label in labels), labels  # no ru name
        await russian.press(text="Зелёный чай")
        card = await russian.wait_message("Зелёный чай")
        assert "С холмов." in card["text"]
        await russian.press(text=ru("Add to cart"))
        await russian.send("/cart")
        cart = await russian.wait_message("• Зелёный чай × 1")
        assert any(b["text"] == "Зелёный чай ×1" for b in buttons(cart))
        await russian.press(text=ru("Checkout"))
        await russian.wait_message(ru("Order #{id} — {state}").split("{")[0])
        [order] = await parts.storage.orders_for_user(2101)
        assert [item.title for item in order.items] == ["Green tea"]  # the merchant's name

        await kazakh.send("/catalog")
        menu = await kazakh.wait_message()
        assert buttons(menu)[0]["text"] == "Tea"  # no kk title: the default
        await kazakh.press(text="Tea")
        await kazakh.press(text="Green tea")
        card = await kazakh.wait_message("Green tea")
        assert "From the hills." in card["text"]


async def test_the_order_names_its_items_in_the_customers_language_to_the_customer_only(
    make_settings, telegram: TelegramServer, redoya, merchant: BotUser, http, tmp_path: Path
) -> None:
    russian = BotUser(telegram.url, 2101, first_name="Оля", language_code="ru", session=http)
    async with BotApp(make_settings(catalog_path=write(tmp_path, CATALOG))) as parts:
        parts.notifier.per_chat_gap = parts.notifier.per_group_gap = 0.0

        def ru(text: str) -> str:
            return parts.i18n.gettext(text, locale="ru")

        await russian.send("/start p_green")
        await russian.wait_message("Зелёный чай")
        await russian.press(text=ru("Buy now"))
        card = await russian.wait_message(ru("Order #{id} — {state}").split("{")[0])
        assert "• Зелёный чай × 1" in card["text"]
        paying = {"url": button_url(card, ru("Pay")), "outcome": "paid"}
        async with http.post(f"{redoya.url}/sandbox/pay", json=paying) as page:
            await browse(http, (await page.json())["redirect"])
        await russian.wait_message(
            predicate=lambda m: any(b["text"] == ru("Receipt") for b in buttons(m))
        )
        await russian.press(text=ru("Receipt"))
        receipt = await russian.wait_message(ru("Receipt for order #{id}").split("{")[0])
        assert "• Зелёный чай × 1" in receipt["text"]
        [edited] = [
            m for m in await russian.bot_messages() if m["message_id"] == card["message_id"]
        ]
        assert ru("Pay") not in [b["text"] for b in buttons(edited)]  # the card, paid
        assert "• Зелёный чай × 1" in edited["text"]
        told = await merchant.wait_message("Order #1 paid")
        assert "• Green tea × 1" in told["text"]  # the merchant reads the catalog's own name


@pytest.mark.parametrize("path", ["catalog.toml", "bot/demo_catalog.toml"])
def test_the_sample_catalogs_speak_turkmen_and_russian(path: str) -> None:
    shipped = load_catalog(Path(__file__).resolve().parent.parent / path)
    for category in shipped.categories:
        assert {"tk", "ru"} <= set(category.titles), category.id
    for product in shipped.products:
        assert {"tk", "ru"} <= set(product.names), product.id
        if product.description:
            assert "tk" in product.descriptions, product.id
