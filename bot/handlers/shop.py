"""The customer's shop: commands, catalog, cart and paying for it. Handlers stay thin: parse
the input (CallbackData factories do it), call the cart or the checkout service, render."""

from __future__ import annotations

import contextlib

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, FSInputFile, Message
from aiogram.utils.i18n import gettext as _

from bot import cart as carts
from bot import texts
from bot.catalog import Catalog, Product
from bot.core import CheckoutError, CheckoutService, Money, details
from bot.handlers.common import buyer_of, checkout_error, edit
from bot.handlers.orders import mask
from bot.keyboards import (
    LANGUAGES,
    CartAction,
    CartCb,
    CatalogCb,
    LanguageCb,
    PayWith,
    ProductAction,
    ProductCb,
    cart_keyboard,
    catalog_keyboard,
    category_keyboard,
    language_keyboard,
    order_keyboard,
    product_keyboard,
    provider_keyboard,
)
from bot.locale import LocaleMiddleware


class CartInput(StatesGroup):
    quantity = State()


# --- commands -----------------------------------------------------------------------------


async def start_with_product(
    message: Message,
    command: CommandObject,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    product = catalog.product((command.args or "")[2:])
    if product is None:
        await message.answer(_("That product is no longer in the catalog."))
        await show_catalog(message, catalog, state)
        return
    await send_product(message, product, catalog, state, checkout)


async def start(message: Message, catalog: Catalog, state: FSMContext) -> None:
    await message.answer(
        _(
            "Welcome, {name}! Browse the catalog, add what you like to the cart and pay right here."
        ).format(name=texts.escape(message.from_user.first_name if message.from_user else ""))
    )
    await show_catalog(message, catalog, state)


async def catalog_command(message: Message, catalog: Catalog, state: FSMContext) -> None:
    await show_catalog(message, catalog, state)


async def help_command(message: Message) -> None:
    await message.answer(
        _(
            "/catalog — browse products\n/cart — your cart\n/orders — your orders and receipts\n"
            "/cards — your saved cards\n/language — change the language\n/help — this message\n\n"
            "Pay with the Pay button under an order; you will get a message here once the "
            "payment is confirmed."
        )
    )


async def cart_command(
    message: Message, catalog: Catalog, state: FSMContext, checkout: CheckoutService
) -> None:
    text, markup = await render_cart(catalog, state, checkout)
    await message.answer(text, reply_markup=markup)


async def language_command(message: Message) -> None:
    await message.answer(_("Choose your language:"), reply_markup=language_keyboard())


async def language_chosen(
    query: CallbackQuery, callback_data: LanguageCb, locale_middleware: LocaleMiddleware
) -> None:
    await locale_middleware.set_locale(query.from_user.id, callback_data.code)
    with locale_middleware.i18n.use_locale(callback_data.code):
        await query.answer()
        await edit(query, _("Language: {name}").format(name=LANGUAGES[callback_data.code]))


# --- catalog ------------------------------------------------------------------------------


async def show_catalog(message: Message, catalog: Catalog, state: FSMContext) -> None:
    count = carts.count(carts.read(await state.get_data()))
    await message.answer(_("Catalog:"), reply_markup=catalog_keyboard(catalog, count))


async def catalog_page(
    query: CallbackQuery, callback_data: CatalogCb, catalog: Catalog, state: FSMContext
) -> None:
    count = carts.count(carts.read(await state.get_data()))
    await query.answer()
    if callback_data.page < 0 or not callback_data.category:
        await edit(query, _("Catalog:"), catalog_keyboard(catalog, count))
        return
    category = catalog.category(callback_data.category)
    if category is None:
        await edit(
            query, _("That category is no longer in the catalog."), catalog_keyboard(catalog, count)
        )
        return
    products = catalog.in_category(category.id)
    prices = {p.id: texts.money(p.price) for p in products}
    markup = category_keyboard(products, category.id, callback_data.page, count, prices)
    await edit(query, f"<b>{texts.escape(texts.category_title(category))}</b>", markup)


async def send_product(
    message: Message,
    product: Product,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    in_cart = carts.read(await state.get_data()).get(product.id, 0)
    markup = product_keyboard(product, in_cart)
    limits = [
        limit for price in product.prices for limit in checkout.limits_for(price, product.providers)
    ]
    card = texts.product_card(product, limits)
    photo = catalog.photo_path(product)
    if photo is not None and photo.is_file():
        await message.answer_photo(FSInputFile(photo), caption=card, reply_markup=markup)
    elif product.photo and photo is None:
        await message.answer_photo(product.photo, caption=card, reply_markup=markup)
    else:
        await message.answer(card, reply_markup=markup)


async def view_product(
    query: CallbackQuery,
    callback_data: ProductCb,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    product = catalog.product(callback_data.id)
    if product is None or not isinstance(query.message, Message):
        await query.answer(_("That product is no longer in the catalog."), show_alert=True)
        return
    await query.answer()
    await send_product(query.message, product, catalog, state, checkout)


async def add_to_cart(
    query: CallbackQuery, callback_data: ProductCb, catalog: Catalog, state: FSMContext
) -> None:
    cart = carts.read(await state.get_data())
    try:
        cart = carts.add(cart, catalog, callback_data.id)
    except carts.CartError as exc:
        await query.answer(cart_error(exc.reason), show_alert=True)
        return
    await state.update_data(cart=cart)
    product = catalog.product(callback_data.id)
    await query.answer(_("Added to the cart."))
    if product is not None and isinstance(query.message, Message):
        with contextlib.suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(
                reply_markup=product_keyboard(product, cart[product.id])
            )


async def buy_now(
    query: CallbackQuery,
    callback_data: ProductCb,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    product = catalog.product(callback_data.id)
    if product is None:
        await query.answer(_("That product is no longer in the catalog."), show_alert=True)
        return
    await choose_provider(
        query, [(product, 1)], checkout, catalog, product_id=product.id, state=state
    )


# --- cart ---------------------------------------------------------------------------------


def cart_error(reason: str) -> str:
    messages = {
        "gone": _("That product is no longer in the catalog."),
        "quantity_range": _("The quantity must be a whole number from 1 to {max}.").format(
            max=carts.MAX_QUANTITY
        ),
        "mixed_currencies": _("A cart holds one currency. Check out or clear the cart first."),
        "too_many_lines": _("The cart is full. Check out first."),
    }
    return messages.get(reason, _("That did not work. Please try again."))


async def render_cart(
    catalog: Catalog, state: FSMContext, checkout: CheckoutService
) -> tuple[str, object]:
    items = carts.lines(carts.read(await state.get_data()), catalog)
    if not items:
        return _("Your cart is empty."), cart_keyboard([])
    totals = [t for c in carts.currencies(items) if (t := carts.total(items, c)) is not None]
    if totals:  # the lines in the cart's first currency, the total in each
        first = totals[0].currency
        rows = [
            f"• {texts.escape(texts.product_name(p))} × {q} — {texts.money(price * q)}"
            for p, q in items
            if (price := p.price_in(first)) is not None
        ]
        rows.append(texts.total(totals, bold=True))
        allowed = carts.allowed_providers(items)
        rows += [  # beyond every provider's cap: said here, before the checkout button
            texts.amount_limit(limit) for t in totals for limit in checkout.limits_for(t, allowed)
        ]
    else:  # the catalog changed under the cart: its products share no currency any more
        rows = [f"• {texts.escape(texts.product_name(p))} × {q}" for p, q in items]
        rows.append(cart_error("mixed_currencies"))
    rows.append(_("To set a quantity, send it as a number after pressing the product."))
    title = _("Your cart")
    return "\n".join([f"<b>{title}</b>", *rows]), cart_keyboard(items)


async def cart_show(
    query: CallbackQuery, catalog: Catalog, state: FSMContext, checkout: CheckoutService
) -> None:
    await query.answer()
    text, markup = await render_cart(catalog, state, checkout)
    if isinstance(query.message, Message) and query.message.photo:
        await query.message.answer(text, reply_markup=markup)  # a photo card cannot become text
    else:
        await edit(query, text, markup)


async def cart_change(
    query: CallbackQuery,
    callback_data: CartCb,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    cart = carts.read(await state.get_data())
    try:
        if callback_data.action is CartAction.CLEAR:
            cart = {}
        elif callback_data.id not in cart:
            raise carts.CartError("gone")
        elif callback_data.action is CartAction.REMOVE:
            cart = carts.set_quantity(cart, catalog, callback_data.id, 0)
        else:
            delta = 1 if callback_data.action is CartAction.INC else -1
            cart = carts.add(cart, catalog, callback_data.id, delta)
    except carts.CartError as exc:
        await query.answer(cart_error(exc.reason), show_alert=True)
        return
    await state.update_data(cart=cart)
    await query.answer()
    text, markup = await render_cart(catalog, state, checkout)
    await edit(query, text, markup)


async def cart_checkout(
    query: CallbackQuery,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    items = carts.lines(carts.read(await state.get_data()), catalog)
    if not items:
        await query.answer(_("Your cart is empty."), show_alert=True)
        return
    await choose_provider(query, items, checkout, catalog, state=state)


async def cart_quantity(
    query: CallbackQuery, callback_data: CartCb, catalog: Catalog, state: FSMContext
) -> None:
    product = catalog.product(callback_data.id)
    if product is None:
        await query.answer(cart_error("gone"), show_alert=True)
        return
    await state.set_state(CartInput.quantity)
    await state.update_data(qty_for=product.id)
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(
            _("How many of {name}? Send a number from 0 to {max} (0 removes it).").format(
                name=texts.escape(texts.product_name(product)), max=carts.MAX_QUANTITY
            )
        )


async def quantity_entered(
    message: Message, catalog: Catalog, state: FSMContext, checkout: CheckoutService
) -> None:
    data = await state.get_data()
    product_id = str(data.get("qty_for", ""))
    text = (message.text or "").strip()
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= carts.MAX_QUANTITY:
        await state.set_state(None)  # one wrong answer ends the question: nobody is trapped
        await message.answer(
            _("Not a number from 0 to {max}: the quantity stays as it was.").format(
                max=carts.MAX_QUANTITY
            )
        )
        return
    try:
        cart = carts.set_quantity(carts.read(data), catalog, product_id, int(text))
    except carts.CartError as exc:
        await state.set_state(None)
        await message.answer(cart_error(exc.reason))
        return
    await state.set_state(None)
    await state.update_data(cart=cart, qty_for=None)
    reply, markup = await render_cart(catalog, state, checkout)
    await message.answer(reply, reply_markup=markup)


# --- paying -------------------------------------------------------------------------------


def beyond_limits(items: list[tuple[Product, int]], checkout: CheckoutService) -> str | None:
    """The cart's limit sentences when each of its totals is beyond every provider's bound (the
    same the cart shows), so a checkout is refused before anything is asked; None otherwise."""
    totals = [t for c in carts.currencies(items) if (t := carts.total(items, c)) is not None]
    allowed = carts.allowed_providers(items)
    limits = [checkout.limits_for(total, allowed) for total in totals]
    if not limits or not all(limits):
        return None
    return " ".join(texts.amount_limit(limit) for found in limits for limit in found)


async def choose_provider(
    query: CallbackQuery,
    items: list[tuple[Product, int]],
    checkout: CheckoutService,
    catalog: Catalog,
    *,
    product_id: str = "",
    state: FSMContext | None = None,
) -> None:
    """Offer every way to pay: for each currency the cart's products all have a price in, the
    providers (and saved cards) that take that total, in one keyboard."""
    totals = [t for c in carts.currencies(items) if (t := carts.total(items, c)) is not None]
    if not totals:
        await query.answer(cart_error("mixed_currencies"), show_alert=True)
        return
    allowed = carts.allowed_providers(items)
    offered: list[tuple[str, PayWith, Money]] = []
    for total in totals:
        for choice in await checkout.payment_choices(query.from_user.id, total, allowed):
            if choice.card is not None:
                label = _("Pay with {card}").format(card=mask(choice.card.card_name))
                card = choice.card.id
            else:
                label = texts.choice_label(choice.display_name)
                card = 0
            data = PayWith(
                provider=choice.provider, product=product_id, card=card, currency=total.currency
            )
            offered.append((label, data, total))
    if not offered:
        limits = checkout.limits_for(totals[0], allowed)
        said = (
            " ".join(texts.amount_limit(limit) for limit in limits)
            if limits  # the cart is beyond the provider's cap (or below its minimum)
            else _("Sorry, no payment method here can take {total}.").format(
                total=texts.money(totals[0])
            )
        )
        await query.answer(said[:200], show_alert=True)
        return
    labels = [label for label, _data, _total in offered]
    choices = [  # one provider offered in two currencies: say which is which
        (f"{label} · {texts.money(total)}" if labels.count(label) > 1 else label, data)
        for label, data, total in offered
    ]
    if len(choices) == 1:
        await place(query, choices[0][1], items, checkout, catalog, state)
        return
    await query.answer()
    payable = [t for t in totals if any(total == t for _label, _data, total in offered)]
    text = texts.total(payable) + "\n" + _("How would you like to pay?")
    if isinstance(query.message, Message):
        await query.message.answer(text, reply_markup=provider_keyboard(choices))


async def chosen_items(
    product_id: str, catalog: Catalog, state: FSMContext
) -> list[tuple[Product, int]]:
    """What a choice pays for: the product of a "Buy now", else the cart; empty when that is
    gone (the choice is out of date)."""
    if product_id:
        product = catalog.product(product_id)
        return [(product, 1)] if product else []
    return carts.lines(carts.read(await state.get_data()), catalog)


async def pay_with(
    query: CallbackQuery,
    callback_data: PayWith,
    catalog: Catalog,
    state: FSMContext,
    checkout: CheckoutService,
) -> None:
    items = await chosen_items(callback_data.product, catalog, state)
    if not items:
        await query.answer(
            _("This choice is out of date. Please start again from the catalog."), show_alert=True
        )
        return
    await place(query, callback_data, items, checkout, catalog, state)


async def place(
    query: CallbackQuery,
    choice: PayWith,
    items: list[tuple[Product, int]],
    checkout: CheckoutService,
    catalog: Catalog,
    state: FSMContext | None = None,
) -> None:
    """Create the order, in the currency the choice names, and show it with its Pay button; a
    cart that became an order empties. The buyer is who pressed; the delivery details are the
    ones the customer confirmed in this chat (bot/handlers/delivery.py)."""
    common = carts.currencies(items)
    currency = choice.currency or next(  # a button from before the currency was in it
        (c for c in common if any(p.name == choice.provider for p in checkout.providers_for(c))),
        common[0] if common else "",
    )
    if currency not in common:  # the cart changed since the choice was offered
        await query.answer(
            _("This choice is out of date. Please start again from the catalog."), show_alert=True
        )
        return
    data = await state.get_data() if state is not None else {}
    try:
        order = await checkout.place_order(
            user_id=query.from_user.id,
            chat_id=query.message.chat.id if query.message else query.from_user.id,
            lines=carts.checkout_lines(items, currency),
            provider_name=choice.provider,
            locale=texts.locale(),
            saved_card=choice.card or None,
            buyer=buyer_of(query.from_user),
            delivery=details.from_dict(data.get("delivery")),
        )
    except CheckoutError as exc:
        await query.answer(checkout_error(exc.reason, exc.refused)[:200], show_alert=True)
        return
    if state is not None:  # each checkout confirms its own details: none left for the next
        await state.update_data(delivery=None, **({} if choice.product else {"cart": {}}))
    await query.answer()
    if checkout.pays_in_chat(order):
        return  # the invoice the provider sent is the order's card and its Pay button
    if isinstance(query.message, Message):
        card = await query.message.answer(
            texts.order_card(order, catalog, check_here=checkout.checked_by_hand(order)),
            reply_markup=order_keyboard(order),
        )
        await checkout.remember_card(order.id, card.message_id)


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only)."""
    router = Router(name=__name__)
    router.message.filter(F.chat.type == "private")
    router.message.register(
        start_with_product,
        CommandStart(deep_link=True, magic=F.args.regexp(r"^p_[A-Za-z0-9_-]{1,24}$")),
    )
    router.message.register(start, CommandStart())
    router.message.register(catalog_command, Command("catalog"))
    router.message.register(help_command, Command("help"))
    router.message.register(cart_command, Command("cart"))
    router.message.register(language_command, Command("language"))
    router.callback_query.register(language_chosen, LanguageCb.filter(F.code.in_(LANGUAGES)))
    router.callback_query.register(catalog_page, CatalogCb.filter())
    router.callback_query.register(view_product, ProductCb.filter(F.action == ProductAction.VIEW))
    router.callback_query.register(add_to_cart, ProductCb.filter(F.action == ProductAction.ADD))
    router.callback_query.register(buy_now, ProductCb.filter(F.action == ProductAction.BUY))
    router.callback_query.register(cart_show, CartCb.filter(F.action == CartAction.SHOW))
    router.callback_query.register(
        cart_change,
        CartCb.filter(
            F.action.in_({CartAction.INC, CartAction.DEC, CartAction.REMOVE, CartAction.CLEAR})
        ),
    )
    router.callback_query.register(cart_checkout, CartCb.filter(F.action == CartAction.CHECKOUT))
    router.callback_query.register(cart_quantity, CartCb.filter(F.action == CartAction.QTY))
    router.message.register(  # a command goes to its own handler, not into the quantity
        quantity_entered, StateFilter(CartInput.quantity), F.text, ~F.text.startswith("/")
    )
    router.callback_query.register(pay_with, PayWith.filter())
    return router
