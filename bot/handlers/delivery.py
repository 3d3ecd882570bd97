"""Checkout of a cart that needs delivery: the customer's name, phone, address and a comment,
asked in the chat (an FSM), each answer checked, then a summary to correct any field before the
payment choice of bot/handlers/shop.py. A returning customer is offered their last details.

This router goes before `shop`: it takes the cart's Checkout and "Buy now" only when a product
needs delivery, and every answer while a question is open. A command typed meanwhile leaves
the questions and then runs as usual.
"""

from __future__ import annotations

from typing import Any

from aiogram import F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot import cart as carts
from bot import texts
from bot.catalog import Catalog
from bot.core import CheckoutService, Delivery, details
from bot.handlers.common import edit, log
from bot.handlers.shop import beyond_limits, choose_provider, chosen_items
from bot.keyboards import (
    CartAction,
    CartCb,
    DeliveryAction,
    DeliveryCb,
    ProductAction,
    ProductCb,
    contact_keyboard,
    delivery_keyboard,
    last_delivery_keyboard,
    skip_keyboard,
)


class DeliveryForm(StatesGroup):
    name = State()
    phone = State()
    address = State()
    comment = State()
    summary = State()  # the summary (or the last details) is on screen: buttons only


FIELDS = ("name", "phone", "address", "comment")  # the order they are asked in
EDITS = {
    DeliveryAction.NAME: "name",
    DeliveryAction.PHONE: "phone",
    DeliveryAction.ADDRESS: "address",
    DeliveryAction.COMMENT: "comment",
}
QUESTIONS: dict[str, State] = {field: getattr(DeliveryForm, field) for field in FIELDS}
ASKED = {state.state: field for field, state in QUESTIONS.items()}  # "DeliveryForm:name" -> "name"
ASKING = StateFilter(*QUESTIONS.values())


# A phone written the way the customer's country writes it, for the hints.
PHONE_EXAMPLES = {
    "tr": "+90 532 123 45 67",
    "ru": "+7 912 345 67 89",
    "kk": "+7 701 234 56 78",
    "tk": "+993 65 12 34 56",
    "mn": "+976 8812 3456",
}
NEUTRAL_PHONE = "+44 7700 900123"  # en: a number of the range kept for fiction


def phone_example() -> str:
    return PHONE_EXAMPLES.get(get_i18n().current_locale, NEUTRAL_PHONE)


def question(field: str) -> str:
    questions = {
        "name": _("Where should we deliver? First, the recipient's name:"),
        "phone": _(
            "The recipient's phone number: press the button below to share yours, or type it "
            "with the country code (for example {example})."
        ).format(example=phone_example()),
        "address": _("The delivery address (city, street, house, flat):"),
        "comment": _("A comment for the courier (a time, a door code), or press Skip:"),
    }
    return questions[field]


def refusal(exc: details.DetailsError) -> str:
    low, high = details.LIMITS.get(exc.field, (0, 0))
    if exc.reason == "bad_phone":
        return _(
            "That does not look like a phone number: send 7 to 15 digits with the country "
            "code, for example {example}."
        ).format(example=phone_example())
    if exc.reason == "national":
        return _(
            "That number has no country code: write it with + and the country code instead of "
            "the leading 0 or 8, for example {example}."
        ).format(example=phone_example())
    if exc.reason == "too_long":
        return _("That is too long: at most {max} characters, please.").format(max=high)
    return _("That is too short: at least {min} characters, please.").format(min=low)


# --- the way in: Checkout or "Buy now" of something that is shipped ---------------------


async def cart_needs_delivery(
    query: CallbackQuery, catalog: Catalog, state: FSMContext
) -> dict[str, Any] | bool:
    """A filter: the cart has a product that needs delivery (and one currency to pay in)."""
    items = carts.lines(carts.read(await state.get_data()), catalog)
    if carts.needs_delivery(items) and carts.currencies(items):
        return {"product_id": ""}
    return False


async def product_needs_delivery(
    query: CallbackQuery, callback_data: ProductCb, catalog: Catalog
) -> dict[str, Any] | bool:
    product = catalog.product(callback_data.id)
    if product is not None and product.delivery:
        return {"product_id": product.id}
    return False


async def begin(
    query: CallbackQuery,
    product_id: str,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    """Offer the last details, or ask from the name on; a cart no provider can take is refused
    first, with the cart's own words, so no question is asked for nothing."""
    refused = beyond_limits(await chosen_items(product_id, catalog, state), checkout)
    if refused:
        await query.answer(refused[:200], show_alert=True)
        return
    await query.answer()
    last = await checkout.last_delivery(query.from_user.id)
    await state.update_data(
        delivery_for=product_id,
        delivery=None,  # only details confirmed for this checkout are used to place it
        delivery_draft=details.to_dict(last) if last else {},
        delivery_editing=False,
    )
    if not isinstance(query.message, Message):
        return
    if last is not None:
        await state.set_state(DeliveryForm.summary)
        text = _("Deliver to the same details as last time?") + "\n\n" + texts.delivery(last)
        await query.message.answer(text, reply_markup=last_delivery_keyboard())
        return
    await ask(query.message, state, "name")


async def ask(message: Message, state: FSMContext, field: str) -> None:
    await state.set_state(QUESTIONS[field])
    markup: Any = None
    if field == "phone":
        markup = contact_keyboard()
    elif field == "comment":
        markup = skip_keyboard()
    await drop_buttons(message, state)  # a summary being corrected
    sent = await message.answer(question(field), reply_markup=markup)
    if field == "comment":  # its Skip button goes once the comment is typed
        await state.update_data(delivery_buttons=sent.message_id)


async def drop_buttons(message: Message, state: FSMContext) -> None:
    """Take the inline buttons off the last question or summary we showed, so only the newest
    one is live; a message already gone or unchanged is fine."""
    message_id = (await state.get_data()).get("delivery_buttons")
    if not isinstance(message_id, int) or message.bot is None:
        return
    await state.update_data(delivery_buttons=None)
    try:
        await message.bot.edit_message_reply_markup(
            chat_id=message.chat.id, message_id=message_id, reply_markup=None
        )
    except TelegramBadRequest as exc:
        if "not modified" not in str(exc):
            log.info("old delivery buttons stay: %s", exc)


async def summary(message: Message, state: FSMContext) -> None:
    """The details with a button per field; from now on each answer comes back here."""
    draft = details.from_dict((await state.get_data()).get("delivery_draft"))
    if draft is None:  # cannot happen through the questions; start them again
        await ask(message, state, "name")
        return
    await state.set_state(DeliveryForm.summary)
    await drop_buttons(message, state)  # a summary shown before this correction
    text = _("Is everything right? Press a field to correct it.") + "\n\n" + texts.delivery(draft)
    sent = await message.answer(text, reply_markup=delivery_keyboard())
    await state.update_data(delivery_editing=True, delivery_buttons=sent.message_id)


# --- the answers ------------------------------------------------------------------------


async def keep(message: Message, state: FSMContext, field: str, value: str) -> None:
    data = await state.get_data()
    draft = dict(data.get("delivery_draft") or {})
    draft[field] = value
    await state.update_data(delivery_draft=draft)
    if field == "phone":  # the contact button has done its work
        shown = _("Phone: {phone}").format(phone=texts.escape(value))
        await message.answer(shown, reply_markup=ReplyKeyboardRemove())
    following = FIELDS.index(field) + 1
    if data.get("delivery_editing") or following == len(FIELDS):
        await summary(message, state)
    else:
        await ask(message, state, FIELDS[following])


async def answered(message: Message, state: FSMContext) -> None:
    field = ASKED.get(str(await state.get_state()))
    if field is None:  # the question was closed meanwhile
        return
    text = message.text or ""
    try:
        if field == "phone":
            value = details.clean_phone(text, typed=True)
        else:
            value = details.clean_text(field, text)
    except details.DetailsError as exc:
        await message.answer(refusal(exc))
        return
    await keep(message, state, field, value)


async def contact_shared(message: Message, state: FSMContext) -> None:
    contact = message.contact
    if contact is None or message.from_user is None or contact.user_id != message.from_user.id:
        await message.answer(
            _("Please share your own number with the button below, or type the number.")
        )
        return
    try:
        phone = details.clean_phone(contact.phone_number)
    except details.DetailsError as exc:
        await message.answer(refusal(exc))
        return
    await keep(message, state, "phone", phone)


async def not_text(message: Message) -> None:
    await message.answer(_("Please answer with a text message."))


async def leave(message: Message, state: FSMContext) -> None:
    """A command while a question is open: close the questions, then let the command run."""
    await state.set_state(None)
    await message.answer(
        _("Delivery details put aside: press Checkout again when you are ready."),
        reply_markup=ReplyKeyboardRemove(),
    )
    raise SkipHandler


# --- the buttons ------------------------------------------------------------------------


async def button(
    query: CallbackQuery,
    callback_data: DeliveryCb,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    data = await state.get_data()
    draft = details.from_dict(data.get("delivery_draft"))
    action = callback_data.action
    message = query.message if isinstance(query.message, Message) else None
    asked_comment = await state.get_state() == DeliveryForm.comment
    if (
        draft is None
        or message is None
        or "delivery_for" not in data
        or (action is DeliveryAction.SKIP and not asked_comment)
    ):
        await query.answer(
            _("This choice is out of date. Please start again from the catalog."), show_alert=True
        )
        return
    if action is DeliveryAction.PAY:
        await pay(query, str(data["delivery_for"]), draft, catalog, state, checkout)
        return
    await query.answer()
    if action is DeliveryAction.SKIP:
        await edit(query, question("comment"))  # its Skip button has done its work
        await state.update_data(delivery_buttons=None)
        await keep(message, state, "comment", "")
    elif action is DeliveryAction.CHANGE:
        await summary(message, state)
    else:
        await state.update_data(delivery_editing=True)
        await ask(message, state, EDITS[action])


async def pay(
    query: CallbackQuery,
    product_id: str,
    confirmed: Delivery,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    """The details are right: keep them for this checkout and go on to the payment choice."""
    items = await chosen_items(product_id, catalog, state)
    if not items:
        await query.answer(
            _("This choice is out of date. Please start again from the catalog."), show_alert=True
        )
        return
    await state.set_state(None)
    await state.update_data(delivery=details.to_dict(confirmed), delivery_editing=False)
    await edit(query, texts.delivery(confirmed))  # the buttons go; the details stay in view
    await choose_provider(query, items, checkout, catalog, product_id=product_id, state=state)


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(F.chat.type == "private")
    router.callback_query.register(
        begin, CartCb.filter(F.action == CartAction.CHECKOUT), cart_needs_delivery
    )
    router.callback_query.register(
        begin, ProductCb.filter(F.action == ProductAction.BUY), product_needs_delivery
    )
    router.callback_query.register(button, DeliveryCb.filter())
    router.message.register(leave, ASKING, F.text.startswith("/"))
    router.message.register(contact_shared, StateFilter(DeliveryForm.phone), F.contact)
    command = F.text.startswith("/")  # the states read before `leave` cleared them: skip on
    router.message.register(answered, ASKING, F.text, ~command)
    router.message.register(not_text, ASKING, ~command)
    return router
