"""Every inline button: CallbackData factories (short prefixes, enum actions, small ids) and the
keyboard builders. Payloads are parsed only by these factories, never split by hand; a payload
edited by a client fails to unpack and lands in the stale-button handler."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup, KeyboardButton, ReplyKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from pydantic import Field

from bot import texts
from bot.catalog import Catalog, Product
from bot.core import PAYABLE, Fulfilment, Order, OrderState

# Every number in a payload: an id, an amount or a page, as a database column holds it (a
# client's edit past 64 bits would overflow SQLite and PostgreSQL: it unpacks to nothing).
Num = Annotated[int, Field(ge=-(2**63), lt=2**63)]

PAGE_SIZE = 6
LANGUAGES = {
    "en": "English",
    "ru": "Русский",
    "tr": "Türkçe",
    "mn": "Монгол",
    "kk": "Қазақша",
    "tk": "Türkmençe",
}


class CatalogCb(CallbackData, prefix="c"):
    category: str  # "" = all products
    page: Num = 0


class ProductAction(StrEnum):
    VIEW = "v"
    ADD = "a"
    BUY = "b"


class ProductCb(CallbackData, prefix="p"):
    action: ProductAction
    id: str


class CartAction(StrEnum):
    SHOW = "s"
    INC = "i"
    DEC = "d"
    REMOVE = "r"
    CLEAR = "c"
    CHECKOUT = "k"
    QTY = "q"


class CartCb(CallbackData, prefix="k"):
    action: CartAction
    id: str = ""


class PayWith(CallbackData, prefix="w"):
    """Choose a provider (and a saved card) for the cart or a 'buy now' product, in one of its
    currencies. Packed it stays well under Telegram's 64 bytes: 'w:' + a provider name, a
    product id (at most 24), a card id and a currency code."""

    provider: str
    product: str = ""  # set for 'buy now'; empty for the cart
    card: Num = 0  # our saved-card id; 0 = a new card / the provider's own page
    currency: str = ""  # the order's currency; "" (a button from before it): the first one

    @classmethod
    def unpack(cls, value: str) -> PayWith:
        # a button sent before `currency` existed has one part less: still a valid choice
        if value.count(cls.__separator__) == len(cls.model_fields) - 1:
            value += cls.__separator__
        return super().unpack(value)


class DeliveryAction(StrEnum):
    NAME = "n"  # correct the name (likewise the next three)
    PHONE = "p"
    ADDRESS = "a"
    COMMENT = "c"
    SKIP = "s"  # no comment
    CHANGE = "x"  # the last details offered: change them
    PAY = "k"  # the details are right: on to the payment choice


class DeliveryCb(CallbackData, prefix="dl"):
    action: DeliveryAction


class OrderAction(StrEnum):
    SHOW = "s"
    CHECK = "c"
    CANCEL = "x"
    SAVE_CARD = "v"
    PAY = "p"  # an in-chat order: send its invoice again
    AGAIN = "g"  # a failed, cancelled or expired order: the same items into a new checkout


class OrderCb(CallbackData, prefix="o"):
    action: OrderAction
    id: Num


class CardCb(CallbackData, prefix="cd"):
    """Forget a saved card (our saved-card id)."""

    id: Num


class RefundCb(CallbackData, prefix="rf"):
    """An admin's confirmation of one refund: the amount and what was left when it was asked
    (a stale question is refused), and a nonce that makes one press one request."""

    order: Num
    amount: Num  # minor units
    left: Num
    nonce: str
    manual: bool = False


class RefundLaterCb(CallbackData, prefix="rl"):
    """ "Not now" under a refund question: the order stays as it is."""

    order: Num


class UnexpectedCb(CallbackData, prefix="ux"):
    """An admin's one tap on a payment we did not expect (our row id)."""

    id: Num
    manual: bool = False


class FulfilCb(CallbackData, prefix="fu"):
    """A merchant's fulfilment step on an order (the merchant chat, an admin's /order);
    `sure`: the second press of a step that asks first (Cancel)."""

    order: Num
    step: Fulfilment
    sure: bool = False


class StepsCb(CallbackData, prefix="fs"):
    """No to a step's confirmation, or Cancel of the tracking question (`question`, which
    then ends): the message shows the order's steps again."""

    order: Num
    question: Num = 0


class NoTrackingCb(CallbackData, prefix="tn"):
    """Shipped without a tracking note; `shown` is the message whose step buttons to update,
    `question` the tracking question it ends (anyone in the merchant chat may press it)."""

    order: Num
    shown: Num = 0
    question: Num = 0


class ReviewAction(StrEnum):
    ACCEPT = "a"
    REFUND = "r"
    FAIL = "f"
    BACK = "b"  # "No" to a confirmation: the three buttons again


class ReviewCb(CallbackData, prefix="rv"):
    """A review action; `sure`: the second press of Accept or Mark failed (they ask first)."""

    action: ReviewAction
    order: Num
    sure: bool = False


class ReviewPage(CallbackData, prefix="rp"):
    page: Num


class OrdersPage(CallbackData, prefix="op"):
    page: Num


class LanguageCb(CallbackData, prefix="l"):
    code: str


class StaffOrdersCb(CallbackData, prefix="so"):
    """A page of the staff's /orders with its filter: the states as their positions in
    OrderState ("29" = paid, needs_review), a provider name, a customer id and days (0 = any).
    At most 'so:0123456789:' + a provider name + two ids and a page: well under 64 bytes."""

    states: str = ""
    provider: str = ""
    user: Num = 0
    days: Num = 0
    page: Num = 0
    shipping: str = ""  # the fulfilment steps as their positions in Fulfilment ("1" = shipped)


class StaffFindCb(CallbackData, prefix="sf"):
    """A page of /find: the searched text rides along when it fits (see `fits`)."""

    text: str
    page: Num = 0


class StaffOrderCb(CallbackData, prefix="sv"):
    """Open an order's staff view (/order <id>)."""

    id: Num


def fits(data: CallbackData) -> bool:
    """Whether a payload packs: within Telegram's 64 bytes, with no ':' in a value."""
    try:
        data.pack()
    except ValueError:
        return False
    return True


def catalog_keyboard(catalog: Catalog, cart_count: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    if catalog.categories:
        for category in catalog.categories:
            kb.button(
                text=texts.category_title(category), callback_data=CatalogCb(category=category.id)
            )
    else:
        for product in catalog.products[:PAGE_SIZE]:
            kb.button(
                text=texts.product_name(product),
                callback_data=ProductCb(action=ProductAction.VIEW, id=product.id),
            )
    kb.adjust(1)
    kb.row(*_cart_button(cart_count).buttons)
    return kb.as_markup()


def category_keyboard(
    products: list[Product], category: str, page: int, cart_count: int, price: dict[str, str]
) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    pages = max(1, -(-len(products) // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    for product in products[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]:
        kb.button(
            text=f"{texts.product_name(product)} · {price[product.id]}",
            callback_data=ProductCb(action=ProductAction.VIEW, id=product.id),
        )
    kb.adjust(1)
    if pages > 1:
        nav = InlineKeyboardBuilder()
        if page > 0:
            nav.button(text="◀", callback_data=CatalogCb(category=category, page=page - 1))
        nav.button(
            text=f"{page + 1}/{pages}", callback_data=CatalogCb(category=category, page=page)
        )
        if page < pages - 1:
            nav.button(text="▶", callback_data=CatalogCb(category=category, page=page + 1))
        kb.row(*nav.buttons)
    kb.row(*_cart_button(cart_count).buttons)
    kb.button(text=_("« Catalog"), callback_data=CatalogCb(category="", page=-1))
    return kb.as_markup()


def product_keyboard(product: Product, in_cart: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=_("Buy now"), callback_data=ProductCb(action=ProductAction.BUY, id=product.id))
    label = (
        _("Add to cart")
        if not in_cart
        else _("Add one more ({count} in cart)").format(count=in_cart)
    )
    kb.button(text=label, callback_data=ProductCb(action=ProductAction.ADD, id=product.id))
    kb.adjust(1)
    kb.row(*_cart_button(in_cart and -1).buttons)
    back = (
        CatalogCb(category=product.category, page=0)
        if product.category
        else CatalogCb(category="", page=-1)
    )
    kb.button(text=_("« Back"), callback_data=back)
    return kb.as_markup()


def _cart_button(count: int) -> InlineKeyboardBuilder:
    kb = InlineKeyboardBuilder()
    text = _("🛒 Cart") if count <= 0 else _("🛒 Cart ({count})").format(count=count)
    kb.button(text=text, callback_data=CartCb(action=CartAction.SHOW))
    return kb


def cart_keyboard(lines: list[tuple[Product, int]]) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for product, quantity in lines:
        kb.button(
            text=f"{texts.product_name(product)} ×{quantity}",
            callback_data=CartCb(action=CartAction.QTY, id=product.id),
        )
        kb.button(text="−", callback_data=CartCb(action=CartAction.DEC, id=product.id))
        kb.button(text="+", callback_data=CartCb(action=CartAction.INC, id=product.id))
        kb.button(text="✖", callback_data=CartCb(action=CartAction.REMOVE, id=product.id))
    kb.adjust(*([1, 3] * len(lines)))
    if lines:
        kb.row(
            *InlineKeyboardBuilder()
            .button(text=_("Clear cart"), callback_data=CartCb(action=CartAction.CLEAR))
            .button(text=_("Checkout"), callback_data=CartCb(action=CartAction.CHECKOUT))
            .buttons
        )
    kb.row(
        *InlineKeyboardBuilder()
        .button(text=_("« Catalog"), callback_data=CatalogCb(category="", page=-1))
        .buttons
    )
    return kb.as_markup()


def provider_keyboard(choices: list[tuple[str, PayWith]]) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for text, data in choices:
        kb.button(text=text, callback_data=data)
    kb.adjust(1)
    return kb.as_markup()


def delivery_keyboard() -> InlineKeyboardMarkup:
    """The summary of the details: one button per field to correct it, then on to paying."""
    kb = InlineKeyboardBuilder()
    A = DeliveryAction
    for text, action in (
        (_("✏️ Name"), A.NAME),
        (_("✏️ Phone"), A.PHONE),
        (_("✏️ Address"), A.ADDRESS),
        (_("✏️ Comment"), A.COMMENT),
        (_("Continue to payment"), A.PAY),
    ):
        kb.button(text=text, callback_data=DeliveryCb(action=action))
    kb.adjust(2, 2, 1)
    return kb.as_markup()


def last_delivery_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=_("Use these"), callback_data=DeliveryCb(action=DeliveryAction.PAY))
    kb.button(text=_("Change"), callback_data=DeliveryCb(action=DeliveryAction.CHANGE))
    return kb.as_markup()


def skip_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=_("Skip"), callback_data=DeliveryCb(action=DeliveryAction.SKIP))
    return kb.as_markup()


def contact_keyboard() -> ReplyKeyboardMarkup:
    """Telegram's own button that shares the customer's phone number (a reply keyboard)."""
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=_("📱 Share my phone number"), request_contact=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def order_keyboard(order: Order) -> InlineKeyboardMarkup | None:
    kb = InlineKeyboardBuilder()
    if order.state is OrderState.AWAITING_PAYMENT and order.pay_url:
        kb.button(text=_("Pay"), url=order.pay_url)
        kb.button(
            text=_("Check payment"), callback_data=OrderCb(action=OrderAction.CHECK, id=order.id)
        )
    elif order.state is OrderState.AWAITING_PAYMENT:  # paid in the chat: a fresh invoice
        kb.button(text=_("Pay"), callback_data=OrderCb(action=OrderAction.PAY, id=order.id))
    if order.state in PAYABLE:
        kb.button(
            text=_("Cancel order"), callback_data=OrderCb(action=OrderAction.CANCEL, id=order.id)
        )
    if order.state in AGAIN_STATES:
        kb.button(text=_("Try again"), callback_data=OrderCb(action=OrderAction.AGAIN, id=order.id))
    kb.adjust(1)
    return kb.as_markup() if list(kb.buttons) else None


AGAIN_STATES = frozenset({OrderState.FAILED, OrderState.CANCELLED, OrderState.EXPIRED})


def again_keyboard(order_id: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=_("Try again"), callback_data=OrderCb(action=OrderAction.AGAIN, id=order_id))
    return kb.as_markup()


def fulfilment_keyboard(order_id: int, steps: list[Fulfilment]) -> InlineKeyboardMarkup | None:
    """The merchant's next steps on a paid order; None when there are none."""
    labels = {
        Fulfilment.SHIPPED: _("📦 Shipped"),
        Fulfilment.DELIVERED: _("✅ Delivered"),
        Fulfilment.CANCELLED: _("✖ Cancel the order"),
    }
    kb = InlineKeyboardBuilder()
    for step in steps:
        kb.button(text=labels[step], callback_data=FulfilCb(order=order_id, step=step))
    kb.adjust(2)
    return kb.as_markup() if steps else None


def confirm_step_keyboard(order_id: int, step: Fulfilment) -> InlineKeyboardMarkup:
    """The second press of a step that cannot be taken back (Cancel), or No."""
    kb = InlineKeyboardBuilder()
    kb.button(
        text=_("Yes, cancel the order"),
        callback_data=FulfilCb(order=order_id, step=step, sure=True),
    )
    kb.button(text=_("No, keep it"), callback_data=StepsCb(order=order_id))
    kb.adjust(1)
    return kb.as_markup()


def confirm_review_keyboard(order_id: int, action: ReviewAction) -> InlineKeyboardMarkup:
    """The second press of Accept as paid or Mark failed, or No (the three buttons again)."""
    yes = {ReviewAction.ACCEPT: _("Yes, accept as paid"), ReviewAction.FAIL: _("Yes, mark failed")}
    kb = InlineKeyboardBuilder()
    kb.button(text=yes[action], callback_data=ReviewCb(action=action, order=order_id, sure=True))
    kb.button(
        text=_("No, go back"), callback_data=ReviewCb(action=ReviewAction.BACK, order=order_id)
    )
    kb.adjust(1)
    return kb.as_markup()


def no_tracking_keyboard(order_id: int, shown: int, question: int) -> InlineKeyboardMarkup:
    """The order's message while its tracking question is open: No note, or Cancel."""
    kb = InlineKeyboardBuilder()
    kb.button(
        text=_("No note"),
        callback_data=NoTrackingCb(order=order_id, shown=shown, question=question),
    )
    kb.button(
        text=_("Cancel: not shipped yet"), callback_data=StepsCb(order=order_id, question=question)
    )
    return kb.as_markup()


def review_keyboard(order_id: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(
        text=_("Accept as paid"), callback_data=ReviewCb(action=ReviewAction.ACCEPT, order=order_id)
    )
    kb.button(text=_("Refund"), callback_data=ReviewCb(action=ReviewAction.REFUND, order=order_id))
    kb.button(
        text=_("Mark failed"), callback_data=ReviewCb(action=ReviewAction.FAIL, order=order_id)
    )
    kb.adjust(1)
    return kb.as_markup()


def review_page_keyboard(page: int, more: bool) -> InlineKeyboardMarkup | None:
    kb = InlineKeyboardBuilder()
    if page > 0:
        kb.button(text="◀", callback_data=ReviewPage(page=page - 1))
    if more:
        kb.button(text="▶", callback_data=ReviewPage(page=page + 1))
    return kb.as_markup() if list(kb.buttons) else None


def orders_keyboard(orders: list[Order], page: int, more: bool) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for order in orders:
        kb.button(text=f"#{order.id}", callback_data=OrderCb(action=OrderAction.SHOW, id=order.id))
    kb.adjust(4)
    nav = InlineKeyboardBuilder()
    if page > 0:
        nav.button(text="◀", callback_data=OrdersPage(page=page - 1))
    if more:
        nav.button(text="▶", callback_data=OrdersPage(page=page + 1))
    if nav.buttons:
        kb.row(*nav.buttons)
    return kb.as_markup()


def staff_orders_keyboard(
    orders: list[Order], back: CallbackData | None, forward: CallbackData | None
) -> InlineKeyboardMarkup | None:
    """A button per order (its staff view), then ◀ ▶ to the pages around this one."""
    kb = InlineKeyboardBuilder()
    for order in orders:
        kb.button(text=f"#{order.id}", callback_data=StaffOrderCb(id=order.id))
    kb.adjust(5)
    nav = InlineKeyboardBuilder()
    if back is not None:
        nav.button(text="◀", callback_data=back)
    if forward is not None:
        nav.button(text="▶", callback_data=forward)
    if nav.buttons:
        kb.row(*nav.buttons)
    return kb.as_markup() if orders else None


def language_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for code, name in LANGUAGES.items():
        kb.button(text=name, callback_data=LanguageCb(code=code))
    kb.adjust(2)
    return kb.as_markup()


def cards_keyboard(cards: list[tuple[int, str]]) -> InlineKeyboardMarkup | None:
    kb = InlineKeyboardBuilder()
    for card_id, label in cards:
        kb.button(text=_("Forget {card}").format(card=label), callback_data=CardCb(id=card_id))
    kb.adjust(1)
    return kb.as_markup() if cards else None


def link_keyboard(text: str, url: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=text, url=url)
    return kb.as_markup()


def refund_keyboard(data: RefundCb) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    text = _("Refunded in the back office") if data.manual else _("Refund")
    kb.button(text=text, callback_data=data)
    kb.button(text=_("Not now"), callback_data=RefundLaterCb(order=data.order))
    return kb.as_markup()


def unexpected_keyboard(data: UnexpectedCb) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    text = _("Refunded in the back office") if data.manual else _("Refund this payment")
    kb.button(text=text, callback_data=data)
    return kb.as_markup()


class StatsCb(CallbackData, prefix="sc"):
    """The chart of /stats: paid per day over its days."""

    days: Num


def stats_keyboard(days: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=_("Chart"), callback_data=StatsCb(days=days))
    return kb.as_markup()
