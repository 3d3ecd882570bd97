"""Customer details and delivery through the chat, as a customer gives them: asked for a product
that is shipped, each answer checked, corrected from the summary, offered again next time, and
shown to the merchant, in /order and on the receipt."""

from __future__ import annotations

import aiohttp
import pytest

from bot.app import Parts
from bot.catalog import CatalogError, load_catalog, parse_catalog
from bot.core import Buyer, CartLine, CheckoutError, Delivery, Money, details
from bot.demo import DEMO_CATALOG
from bot.keyboards import ProductAction, ProductCb
from sandbox.botuser import BotUser
from sandbox.redoya import RedoyaServer
from sandbox.telegram import TelegramServer
from tests.conftest import ADMIN, CUSTOMER, MERCHANT_CHAT
from tests.flows import browse, pay

ROOT = DEMO_CATALOG.parent.parent


def test_the_catalog_flag_is_read_and_checked() -> None:
    def product(**fields: object) -> dict[str, object]:
        return {"products": [{"id": "a", "name": "A", "stars": 5, **fields}]}

    assert not parse_catalog(product()).products[0].delivery
    assert parse_catalog(product(delivery=True)).products[0].delivery
    with pytest.raises(CatalogError, match=r"products\[0\] \(a\), field 'delivery': must be true"):
        parse_catalog(product(delivery="yes"))
    for path in (ROOT / "catalog.toml", DEMO_CATALOG):
        products = {p.id: p for p in load_catalog(path).products}
        assert products["samovar"].delivery, path
        assert not products["coffee-club"].delivery, path  # digital goods are not shipped


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("+90 (532) 123-45-67", "+905321234567"),
        ("0090 532 123 45 67", "+905321234567"),  # the international call prefix
        ("905321234567", "+905321234567"),  # a shared contact's number has no '+'
        ("+1234567", "+1234567"),
        ("123456", None),  # too few digits
        ("+1234567890123456", None),  # more than E.164's 15
        ("+90 532 ١٢٣ 45 67", None),  # digits, but not ASCII ones
        ("call me", None),
    ],
)
def test_phones_are_normalised_or_refused(typed: str, kept: str | None) -> None:
    if kept is None:
        with pytest.raises(details.DetailsError):
            details.clean_phone(typed)
    else:
        assert details.clean_phone(typed) == kept


@pytest.mark.parametrize(
    "typed", ["8 (916) 123-45-67", "0532 123 45 67", "89161234567", "05321234567"]
)
def test_a_typed_national_number_is_refused(typed: str) -> None:
    with pytest.raises(details.DetailsError) as refused:
        details.clean_phone(typed, typed=True)
    assert refused.value.reason == "national"
    assert details.clean_phone("+7 916 123-45-67", typed=True) == "+79161234567"
    assert details.clean_phone("0090 532 123 45 67", typed=True) == "+905321234567"
    assert details.clean_phone("79161234567") == "+79161234567"  # a contact: international


@pytest.mark.parametrize(
    ("language", "example"),
    [("ru", "+7 912 345 67 89"), ("tk", "+993 65 12 34 56"), ("en", "+44 7700 900123")],
)
async def test_the_phone_hint_follows_the_customers_language(
    app: Parts, telegram: TelegramServer, http: aiohttp.ClientSession, language: str, example: str
) -> None:
    user = BotUser(telegram.url, CUSTOMER, language_code=language, session=http)
    await user.send("/start p_mortar")
    await user.wait_message("480")
    await user.press(ProductCb(action=ProductAction.BUY, id="mortar").pack())
    await user.wait_message()
    await user.send("Ada Lovelace")
    asked = await user.wait_message(example)
    assert "+90" not in asked["text"]
    await user.send("8 (916) 123-45-67")
    refused = await user.wait_message(example)
    assert " 0 " in refused["text"]
    assert " 8" in refused["text"]
    assert (await user.reply_keyboard())[0]["request_contact"] is True  # still asked


def test_answers_are_squeezed_to_one_line_within_limits() -> None:
    assert details.clean_text("address", " Moda Cd. 12 \n\n Kadıköy\t\x00Istanbul ") == (
        "Moda Cd. 12, Kadıköy Istanbul"
    )
    assert details.clean_text("comment", " \n ") == ""  # the comment may be left out
    for field, value, reason in [
        ("name", "\u200b", "empty"),
        ("name", "A", "too_short"),
        ("name", "A" * 65, "too_long"),
        ("address", "x" * 301, "too_long"),
    ]:
        with pytest.raises(details.DetailsError) as refused:
            details.clean_text(field, value)
        assert (refused.value.field, refused.value.reason) == (field, reason)


async def buy_grinder(user: BotUser) -> None:
    await user.send("/start p_mortar")
    await user.wait_message("Brass grinder")
    await user.press(text="Buy now")


async def test_details_asked_checked_corrected_and_shown_to_everyone(
    app: Parts, telegram: TelegramServer, redoya: RedoyaServer, merchant: BotUser, http
) -> None:
    user = BotUser(
        telegram.url,
        CUSTOMER,
        first_name="Ada",
        last_name="Lovelace",
        username="ada_l",
        session=http,
    )
    await buy_grinder(user)
    await user.wait_message("the recipient's name")
    await user.send(" A ")
    await user.wait_message("That is too short: at least 2 characters")
    await user.send("Ada  Lovelace")
    await user.wait_message("phone number")
    [share] = await user.reply_keyboard()
    assert share["request_contact"] is True
    await user.send("call me")
    await user.wait_message("does not look like a phone number")
    await user.send("+90 (532) 123-45-67")
    await user.wait_message("Phone: +905321234567")
    assert await user.reply_keyboard() == []  # the contact button is gone
    await user.wait_message("delivery address")
    await user.send("Moda Cd. 12\nKadıköy, Istanbul")
    await user.wait_message("comment for the courier")
    await user.send("x" * 301)
    await user.wait_message("at most 300 characters")
    await user.send("Ring twice <b>")
    first = await user.wait_message("Is everything right?")
    assert "Address: Moda Cd. 12, Kadıköy, Istanbul" in first["text"]
    await user.press(text="✏️ Address")
    await user.wait_message("delivery address")
    await user.send("Bahariye Cd. 5, Istanbul")
    summary = await user.wait_message("Is everything right?")
    assert "Address: Bahariye Cd. 5, Istanbul" in summary["text"]
    assert "Comment: Ring twice <b>" in summary["text"]
    await user.press(text="Continue to payment")
    card = await user.wait_message("Order #1")
    await browse(http, await pay(http, redoya.url, card, "paid"))
    await user.wait_message("Payment received")

    delivery = Delivery(
        "Ada Lovelace", "+905321234567", "Bahariye Cd. 5, Istanbul", "Ring twice <b>"
    )
    order = await app.checkout.order(1)
    assert order is not None
    assert (order.buyer, order.delivery) == (Buyer("Ada Lovelace", "ada_l"), delivery)
    told = (await merchant.wait_message("Order #1 paid", after_id=0))["text"]
    for shown in ("Buyer: Ada Lovelace @ada_l (id 1001)", "Brass grinder × 1", "Redoya"):
        assert shown in told
    assert (
        "Phone: +905321234567\nAddress: Bahariye Cd. 5, Istanbul\nComment: Ring twice <b>" in told
    )
    sent = [
        p["text"]
        for m, p in telegram.calls
        if m == "sendmessage" and p["chat_id"] == str(MERCHANT_CHAT)
    ]
    assert any(
        '<a href="tg://user?id=1001">Ada Lovelace</a>' in t and "&lt;b&gt;" in t for t in sent
    )

    await user.press(text="Receipt")
    receipt = await user.wait_message("Receipt for order #1")
    assert "Address: Bahariye Cd. 5, Istanbul" in receipt["text"]
    admin = BotUser(telegram.url, ADMIN, session=http)
    await admin.send("/order 1")
    lookup = (await admin.wait_message("Audit"))["text"]
    assert "Phone: +905321234567" in lookup
    assert "Buyer: Ada Lovelace @ada_l" in lookup


async def test_the_contact_button_and_the_last_details_offered_again(
    app: Parts, user: BotUser
) -> None:
    await buy_grinder(user)
    await user.wait_message("the recipient's name")
    await user.send("Ada")
    await user.wait_message("phone number")
    await user.send_contact("447700900123", owner=777)  # someone else's contact card
    await user.wait_message("share your own number")
    await user.send_contact("905321234567")  # the request-contact button: their own
    await user.wait_message("Phone: +905321234567")
    await user.send("Moda Cd. 12, Istanbul")
    await user.wait_message("comment for the courier")
    await user.press(text="Skip")
    await user.wait_message("Is everything right?")
    await user.press(text="Continue to payment")
    await user.wait_message("Order #1")

    await user.send("/start p_sand")  # next time: the same details, one press
    await user.wait_message("Sand brewing tray")
    await user.press(text="Buy now")
    offer = await user.wait_message("same details as last time")
    assert "Address: Moda Cd. 12, Istanbul" in offer["text"]
    await user.press(text="Use these")
    await user.wait_message("Order #2")
    first, second = await app.checkout.order(1), await app.checkout.order(2)
    assert first is not None
    assert second is not None
    assert (
        second.delivery
        == first.delivery
        == Delivery("Ada", "+905321234567", "Moda Cd. 12, Istanbul")
    )


async def test_commands_leave_the_questions_and_no_order_goes_without_details(
    app: Parts, user: BotUser, http: aiohttp.ClientSession
) -> None:
    await buy_grinder(user)
    await user.wait_message("the recipient's name")
    await user.send_contact("905321234567")  # not an answer to this question
    await user.wait_message("Please answer with a text message")
    await user.send("Ada")
    await user.wait_message("phone number")
    await user.send("/cart")
    await user.wait_message("Delivery details put aside")
    await user.wait_message("Your cart is empty")
    assert await user.reply_keyboard() == []
    await user.send("+905321234567")  # no question is open: not taken as the phone
    await user.wait_message("Please use the buttons or a command")
    # a payment button from before, for a product that is shipped: refused, and said why
    answer = await user.press("w:redoya:mortar:0:TRY", force=True)
    assert answer is not None
    assert "needs delivery details" in answer["text"]
    line = CartLine("mortar", "Brass grinder", 1, Money(48000, "TRY"), delivery=True)
    with pytest.raises(CheckoutError) as refused:
        await app.checkout.place_order(
            user_id=CUSTOMER, chat_id=CUSTOMER, lines=[line], provider_name="redoya"
        )
    assert refused.value.reason == "delivery_needed"
    assert await app.checkout.orders_of(CUSTOMER, limit=5) == []


async def test_try_again_and_every_checkout_confirm_the_details(
    app: Parts, user: BotUser, redoya: RedoyaServer, http: aiohttp.ClientSession
) -> None:
    await buy_grinder(user)
    await user.wait_message("the recipient's name")
    for answer, next_question in [
        ("Ada", "phone number"),
        ("+905321234567", "delivery address"),
        ("Moda Cd. 12, Istanbul", "comment for the courier"),
    ]:
        await user.send(answer)
        await user.wait_message(next_question)
    await user.press(text="Skip")
    await user.wait_message("Is everything right?")
    await user.press(text="Continue to payment")
    card = await user.wait_message("Order #1")
    # the payment button of that checkout, pressed again: the details are not taken unasked
    answer = await user.press("w:redoya:mortar:0:TRY", message_id=card["message_id"], force=True)
    assert answer is not None
    assert "needs delivery details" in answer["text"]
    await browse(http, await pay(http, redoya.url, card, "failed"))
    failed = await user.wait_message("did not go through")
    await user.press(text="Try again", message_id=failed["message_id"])
    await user.wait_message("Order #1 again")
    offer = await user.wait_message("same details as last time")  # asked, not reused silently
    assert "Address: Moda Cd. 12, Istanbul" in offer["text"]
    await user.press(text="Use these")
    await user.wait_message("Order #2")
    second = await app.checkout.order(2)
    assert second is not None
    assert second.delivery == Delivery("Ada", "+905321234567", "Moda Cd. 12, Istanbul")


async def test_a_cart_beyond_every_cap_is_refused_before_any_question(
    app: Parts, user: BotUser
) -> None:
    await user.send("/start p_mortar")
    card = await user.wait_message("Brass grinder")
    await user.press(text="Add to cart", message_id=card["message_id"])
    await user.press(text="Add one more", message_id=card["message_id"])
    await user.press(text="Add one more", message_id=card["message_id"])
    await user.send("/cart")
    cart = await user.wait_message("Your cart")
    said = "Redoya takes at most ₺1,000.00 per order; remove something from the cart."
    assert said in cart["text"]
    answer = await user.press(text="Checkout", message_id=cart["message_id"])
    assert answer is not None
    assert answer["text"] == said
    assert not [m for m in await user.bot_messages() if "recipient's name" in m["text"]]
    assert await app.checkout.orders_of(CUSTOMER, limit=5) == []


async def test_only_the_newest_question_or_summary_keeps_its_buttons(
    app: Parts, user: BotUser
) -> None:
    def buttons(message: dict) -> list[str]:
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        return [button["text"] for row in rows for button in row]

    async def now(message: dict) -> dict:
        [found] = [m for m in await user.bot_messages() if m["message_id"] == message["message_id"]]
        return found

    await buy_grinder(user)
    for answer, next_question in [
        ("Ada", "the recipient's name"),
        ("+905321234567", "phone number"),
        ("Moda Cd. 12, Istanbul", "delivery address"),
    ]:
        await user.wait_message(next_question)
        await user.send(answer)
    comment = await user.wait_message("comment for the courier")
    assert buttons(comment) == ["Skip"]
    await user.send("Ring twice")
    first = await user.wait_message("Is everything right?")
    assert buttons(await now(comment)) == []  # typed: Skip is gone
    await user.press(text="✏️ Address", message_id=first["message_id"])
    await user.wait_message("delivery address")
    await user.send("Bahariye Cd. 5, Istanbul")
    second = await user.wait_message("Bahariye")
    assert buttons(await now(first)) == []  # the summary before the correction is dead
    assert "Continue to payment" in buttons(second)
    answer = await user.press(text="✏️ Comment", message_id=second["message_id"])
    assert answer is not None
    again = await user.wait_message("comment for the courier")
    await user.press(text="Skip", message_id=again["message_id"])
    third = await user.wait_message("Is everything right?")
    assert buttons(await now(second)) == []
    assert buttons(await now(again)) == []
    assert "Continue to payment" in buttons(third)
