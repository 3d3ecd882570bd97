"""Issue 4 through the Telegram sandbox, as a customer would: browse, cart, checkout, orders,
languages, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import BotApp, Parts
from bot.catalog import CatalogError, load_catalog
from sandbox.botuser import BotUser, buttons
from sandbox.telegram import TelegramServer
from storage.base import OrderState
from tests.conftest import CUSTOMER, both_databases
from tests.flows import browse, order_product, pay

S = OrderState


async def open_category(user: BotUser, name: str = "Coffee") -> dict:
    await user.send("/start")
    await user.wait_message("Catalog")
    await user.press(text=name)
    return await user.wait_message(predicate=lambda m: name in (m.get("text") or ""))


def labels(message: dict) -> list[str]:
    return [b["text"] for b in buttons(message)]


async def test_browse_with_paging_and_photo_cards(app: Parts, user: BotUser) -> None:
    page = await open_category(user)
    assert "1/2" in labels(page)
    assert not any(label.startswith("Sand brewing") for label in labels(page))
    await user.press(text="▶")
    page = await user.wait_message(predicate=lambda m: "2/2" in labels(m))
    assert any(label.startswith("Sand brewing") for label in labels(page))
    await user.press(text="◀")
    await user.wait_message(predicate=lambda m: "1/2" in labels(m))
    await user.press(text="Turkish coffee")
    card = await user.wait_message("Turkish coffee")
    assert card.get("photo")
    assert "Finely ground" in card["caption"]


async def test_cart_edits_and_checkout_with_two_items(app: Parts, user: BotUser) -> None:
    await open_category(user)
    await user.press(text="Turkish coffee")
    await user.wait_message("Turkish coffee")
    answer = await user.press(text="Add to cart")
    assert answer is not None
    assert answer["text"] == "Added to the cart."
    await user.press(text="Add one more")
    await user.press(text="🛒 Cart")
    cart = await user.wait_message("Your cart")
    assert "× 2" in cart["text"]
    await user.press(text="−")
    cart = await user.wait_message("Your cart")
    assert "× 1" in cart["text"]
    await user.send("/catalog")
    await user.wait_message("Catalog")
    await user.press(text="Coffee")
    await user.wait_message(predicate=lambda m: "Coffee" in (m.get("text") or ""))
    await user.press(text="Cezve")
    await user.wait_message("Cezve")
    await user.press(text="Add to cart")

    await user.send("/cart")
    await user.wait_message("Your cart")
    await user.press(text="Cezve, copper ×1")  # set the quantity by text
    await user.wait_message("How many of Cezve")
    await user.send("/orders")  # a command is a command, not a quantity
    await user.wait_message("no orders yet")
    await user.send("many")  # one wrong answer ends the question
    await user.wait_message("Not a number from 0 to 99: the quantity stays as it was.")
    await user.send("also not")
    await user.wait_message("Please use the buttons or a command")
    await user.press(text="Cezve, copper ×1")
    await user.wait_message("How many of Cezve")
    await user.send("150")
    await user.wait_message("Not a number from 0 to 99")
    await user.press(text="Cezve, copper ×1")
    await user.wait_message("How many of Cezve")
    await user.send("3")
    cart = await user.wait_message("Your cart")
    assert "Cezve, copper × 3" in cart["text"]
    assert "₺405.00" in cart["text"]  # 150 + 3 x 85
    await user.press(text="Checkout")
    order = await user.wait_message("Order #")
    assert "Turkish coffee 250 g × 1" in order["text"]
    assert "Cezve, copper × 3" in order["text"]
    stored = (await app.storage.orders_for_user(CUSTOMER, limit=1))[0]
    assert (stored.total.amount, len(stored.items)) == (40500, 2)
    await user.send("/cart")
    await user.wait_message("Your cart is empty")


async def test_a_cart_never_mixes_currencies(app: Parts, user: BotUser) -> None:
    await open_category(user)
    await user.press(text="Cezve")
    await user.wait_message("Cezve")
    await user.press(text="Add to cart")
    await user.send("/start")
    await user.wait_message("Catalog")
    await user.press(text="Tea")
    await user.wait_message(predicate=lambda m: "Tea" in (m.get("text") or ""))
    await user.press(text="Ivan-chai")
    await user.wait_message("Ivan-chai")
    answer = await user.press(text="Add to cart")
    assert answer is not None
    assert "one currency" in answer["text"]
    await user.press(text="🛒 Cart")
    cart = await user.wait_message("Your cart")
    assert "Ivan-chai" not in cart["text"]


@both_databases
async def test_orders_reopen_and_cancel(app: Parts, user: BotUser) -> None:
    await open_category(user)
    await user.press(text="Cezve")
    await user.wait_message("Cezve")
    await user.press(text="Buy now")
    await user.wait_message("Order #1")
    await user.send("/orders")
    listing = await user.wait_message("Your orders")
    assert "awaiting payment" in listing["text"]
    await user.press(text="#1")
    reopened = await user.wait_message("Order #1")
    assert "Pay" in labels(reopened)
    answer = await user.press(text="Cancel order", message_id=reopened["message_id"])
    assert answer is not None
    assert answer["text"] == "Order cancelled."
    assert (await app.storage.get_order(1)).state is S.CANCELLED  # type: ignore[union-attr]
    answer = await user.press("o:x:1", message_id=reopened["message_id"], force=True)  # again
    assert answer is not None
    assert "can no longer be cancelled" in answer["text"]


async def test_language_switch_formats_prices_per_locale(app: Parts, user: BotUser) -> None:
    prices = {"en": "₺150.00", "ru": "150,00\xa0₺", "tr": "₺150,00", "kk": "150,00\xa0₺"}
    names = {"en": "English", "ru": "Русский", "tr": "Türkçe", "kk": "Қазақша"}
    words = {"en": "Buy now", "ru": "Купить сейчас", "tr": "Hemen al", "kk": "Қазір сатып алу"}
    for code in ("ru", "tr", "kk", "en"):
        await user.send("/language")
        await user.wait_message("")
        await user.press(text=names[code])
        await user.send("/start p_turkish-coffee")
        card = await user.wait_message(predicate=lambda m: m.get("photo") is not None)
        assert prices[code] in card["caption"], (code, card["caption"])
        assert words[code] in labels(card)
    assert await app.storage.get_user_locale(CUSTOMER) == "en"


async def test_telegram_language_code_is_used_until_the_user_chooses(
    app: Parts, telegram: TelegramServer, http
) -> None:
    turk = BotUser(telegram.url, 2002, first_name="Ayşe", language_code="tr-TR", session=http)
    await turk.send("/help")
    assert "/catalog — ürünlere göz at" in (await turk.wait_message("/catalog"))["text"]
    other = BotUser(telegram.url, 2003, language_code="de", session=http)
    await other.send("/help")
    await other.wait_message("browse products")  # unknown language: English


async def test_stale_and_forged_buttons_change_nothing(app: Parts, user: BotUser) -> None:
    await open_category(user)
    page = (await user.bot_messages())[-1]
    for forged, expected in (
        ("p:v:no-such-thing", "no longer in the catalog"),
        ("zz:1", "out of date"),
        ("o:x:999", "not found"),
        ("o:q:1", "out of date"),
        ("k:i:cezve", "no longer in the catalog"),
        ("w:redoya::0", "out of date"),  # pay for an empty cart
        ("w:nosuch:cezve:0", "no longer available"),
    ):
        answer = await user.press(forged, message_id=page["message_id"], force=True)
        assert answer is not None
        assert expected in (answer["text"] or ""), (forged, answer)
    assert await app.storage.orders_for_user(CUSTOMER) == []


async def test_somebody_elses_order_is_not_found(app: Parts, user: BotUser, telegram, http) -> None:
    await open_category(user)
    await user.press(text="Cezve")
    await user.wait_message("Cezve")
    await user.press(text="Buy now")
    await user.wait_message("Order #1")
    stranger = BotUser(telegram.url, 3003, session=http)
    await stranger.send("/start")
    menu = await stranger.wait_message("Catalog")
    answer = await stranger.press("o:x:1", message_id=menu["message_id"], force=True)
    assert answer is not None
    assert "not found" in answer["text"]
    assert (await app.storage.get_order(1)).state is S.AWAITING_PAYMENT  # type: ignore[union-attr]


async def test_deep_links_help_and_unknown_input(app: Parts, user: BotUser, telegram) -> None:
    await user.send("/start p_cezve")
    await user.wait_message("Cezve, copper")
    await user.send("/start p_gone")
    await user.wait_message("no longer in the catalog")
    await user.send("/frobnicate")
    await user.wait_message("I do not know that command")
    await user.send("hello?")
    await user.wait_message("Please use the buttons")
    await user.send("/help")
    await user.wait_message("/orders")
    assert {"default:", "default:ru", "default:tk"} <= set(telegram.commands)
    assert telegram.commands["default:ru"][0]["description"] == "Каталог товаров"


async def test_set_my_commands_failing_is_not_fatal(make_settings, telegram) -> None:
    from bot.app import BotApp

    telegram.fail_next("setMyCommands", error_code=400, description="Bad Request: nope", times=10)
    async with BotApp(make_settings()) as parts:
        assert parts.bot_username == "checkout_demo_bot"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[[products]]\nid = "a"\nname = "A"\nprice = 1.5\ncurrency = "TRY"',
            "products[0] (a), field 'price'",
        ),
        (
            '[[products]]\nid = "a"\nname = "A"\nprice = "1"\ncurrency = "XYZ"',
            "products[0] (a), field 'currency'",
        ),
        (
            '[[products]]\nid = "a b"\nname = "A"\nprice = "1"\ncurrency = "TRY"',
            "products[0], field 'id'",
        ),
        ('[[products]]\nid = "a"\nprice = "1"\ncurrency = "TRY"', "products[0] (a), field 'name'"),
        ('[[products]]\nid = "a"\nname = "A"\nprice = "1.005"\ncurrency = "TRY"', "field 'price'"),
        (
            '[[products]]\nid = "a"\nname = "A"\nprice = "Infinity"\ncurrency = "TRY"',
            "field 'price'",
        ),
        ('[[products]]\nid = "a"\nname = "A"\nprice = "NaN"\ncurrency = "TRY"', "field 'price'"),
        (
            '[[products]]\nid = "a"\nname = "A"\nprice = "1e999999"\ncurrency = "TRY"',
            "field 'price'",
        ),
        (
            '[[products]]\nid = "a"\nname = "A"\nprice = "1"\ncurrency = "TRY"\ncategory = "x"',
            "field 'category'",
        ),
        (
            '[[products]]\nid = "x"\nname = "X"\nprice = 5\ncurrency = "TRY"\n'
            f'description = "{"long " * 200}"',
            "field 'description': 999 characters, at most 800",
        ),
        ("products = 3", "'products' must be an array of tables"),
        ("this is = not toml", "not valid TOML"),
    ],
)
def test_an_invalid_catalog_names_file_entry_and_field(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


async def test_names_with_html_characters_reach_every_screen_intact(
    make_settings, telegram: TelegramServer, merchant: BotUser, redoya, http, tmp_path: Path
) -> None:
    user = BotUser(telegram.url, CUSTOMER, first_name="<Ada> & Bob", session=http)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        '[[categories]]\nid = "t"\ntitle = "Tea & <Co>"\n\n'
        '[[products]]\nid = "earl"\ncategory = "t"\nname = "Earl <Grey> & Sons"\n'
        'price = 90\ncurrency = "TRY"\ndescription = "Bergamot <b>not bold</b> & more"\n',
        encoding="utf-8",
    )
    async with BotApp(make_settings(catalog_path=catalog)):
        message = await order_product(user, "Tea & <Co>", "Earl <Grey> & Sons")
        assert "Earl <Grey> & Sons × 1" in message["text"]
        sent = [m.get("text") or "" for m in await user.bot_messages()]
        assert any(text.startswith("Welcome, <Ada> & Bob!") for text in sent)
        card = next(text for text in sent if "Bergamot" in text)
        assert "Bergamot <b>not bold</b> & more" in card
        await browse(http, await pay(http, redoya.url, message, "paid"))
        await user.wait_message("Payment received")
        await merchant.wait_message("Earl <Grey> & Sons × 1")
        await user.send("/orders")
        await user.wait_message("Your orders")
        await user.send("/start")
        await user.wait_message("Catalog")
        await user.press(text="Tea & <Co>")
        await user.press(text="Earl <Grey> & Sons · ₺90.00")
        await user.wait_message("Bergamot")
        await user.press(text="Add to cart")
        await user.send("/cart")
        await user.wait_message("• Earl <Grey> & Sons × 1")
        await user.press(text="Earl <Grey> & Sons ×1")
        await user.wait_message("How many of Earl <Grey> & Sons?")
