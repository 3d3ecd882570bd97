"""Staff lookups, for admins and support (IsStaff): `/order <id>`, `/orders [filter]`, `/find
<text>` with paging buttons, and `/admin` listing what the person may do. Admin-only commands
and buttons get a clear "admins only" from here when support tries them (admins are answered by
the admin router before this one). Times are on the merchant's clock (Settings.zone), the zone
named; the zone is passed down explicitly, never kept in a global."""

from __future__ import annotations

from datetime import tzinfo

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from bot import audit_texts, texts
from bot.config import Settings
from bot.core import AuditEntry, CheckoutService, Order, OrderQuery, OrderState
from bot.formatting import format_when, zone_name
from bot.handlers import numbers
from bot.handlers.common import edit
from bot.handlers.roles import IsStaff
from bot.handlers.staff_filter import FilterError, OrdersFilter, filter_usage, parse
from bot.keyboards import (
    FulfilCb,
    NoTrackingCb,
    RefundCb,
    RefundLaterCb,
    ReviewCb,
    ReviewPage,
    StaffFindCb,
    StaffOrderCb,
    StaffOrdersCb,
    StepsCb,
    UnexpectedCb,
    fits,
    fulfilment_keyboard,
    staff_orders_keyboard,
)

PAGE = 10
FIND_SHORTEST = 2  # characters; a bare number (an order id) may be shorter
FIND_LONGEST = 64
PHONE_CHARACTERS = frozenset("+0123456789 -()")
PHONE_DIGITS = 7  # fewer digits with spaces ("12 13") are no phone: searched as typed
ADMIN_ONLY = ("refund", "reconcile", "review")  # support is told so instead of getting silence
REFUNDABLE = (OrderState.PAID, OrderState.PARTIALLY_REFUNDED)


def usage(admin: bool) -> str:
    """What this person may do; escaped, since `<id>` would read as an HTML tag."""
    lines = [
        _("/order <id> — an order with its audit trail"),
        _("/orders [state | provider | user id | days] — orders, newest first (/orders help)"),
        _("/find <text> — orders by number, payment id, customer name, @username or phone"),
        _("/stats [days] [chart] — figures; chart: a picture of the paid amounts per day"),
        _("/today — today's figures (in the merchant chat too)"),
        _("/export [days] — the orders as a CSV file"),
    ]
    if admin:
        lines += [
            _("/refund <id> [amount] — refund all or part (amount in major units, e.g. 12.50)"),
            _("/review — orders whose payment a person must check"),
            _("/reconcile — compare Telegram Stars payments with Telegram's own list"),
        ]
    return texts.escape("\n".join(lines))


async def admin_help(message: Message, settings: Settings) -> None:
    admin = message.from_user is not None and message.from_user.id in settings.admin_ids
    await message.answer(usage(admin))


# --- one order ------------------------------------------------------------------------------


def buyer_in_row(order: Order) -> str:
    """'Ada @ada (1001)' in a row of /orders: plain and short (no link, no label), with the id
    /orders takes; an order on its own names the buyer with `texts.buyer_line`."""
    named = " ".join(
        p for p in (order.buyer.name, order.buyer.username and "@" + order.buyer.username) if p
    )
    return texts.escape(f"{named} ({order.user_id})" if named else str(order.user_id))


def order_view(
    order: Order, trail: list[AuditEntry], checkout: CheckoutService, zone: tzinfo, admin: bool
) -> str:
    """The staff's view of an order; what only an admin may do is offered to admins only."""
    provider = texts.provider_name(checkout.display_name(order.provider))
    rows = [
        texts.receipt(order, provider, zone) if order.paid_at else texts.order_card(order, None),
    ]
    if order.delivery is not None and not order.paid_at:  # a receipt shows it already
        rows += ["", texts.delivery(order.delivery)]
    rows += [
        "",
        texts.buyer_line(order),
        _("state: {state} · fulfilment: {fulfilment} · provider: {provider}").format(
            state=texts.state_name(order.state),
            fulfilment=texts.fulfilment_name(order.fulfilment),
            provider=texts.escape(provider),
        ),
        _("Created: {when}").format(when=format_when(order.created_at, zone)),
    ]
    if admin and order.state in REFUNDABLE:
        rows.append(texts.escape(_("Refund: /refund {id} [amount]").format(id=order.id)))
    rows.append("<b>" + _("Audit ({zone})").format(zone=zone_name(zone)) + "</b>")
    rows += [audit_texts.audit_line(e, zone) for e in trail[-15:]]
    return "\n".join(rows)


async def order_lookup(
    message: Message, command: CommandObject, checkout: CheckoutService, settings: Settings
) -> None:
    order_id = numbers.order_id(command.args)
    order = await checkout.order(order_id) if order_id else None
    if order is None:
        await message.answer(texts.escape(_("No such order. Usage: /order <id>")))
        return
    admin = message.from_user is not None and message.from_user.id in settings.admin_ids
    await show_order(message, order, checkout, settings, admin)


async def show_order(
    chat: Message, order: Order, checkout: CheckoutService, settings: Settings, admin: bool
) -> None:
    """The order's view, with the fulfilment steps for an admin."""
    trail = await checkout.audit(order.id)
    steps = fulfilment_keyboard(order.id, checkout.next_steps(order)) if admin else None
    await chat.answer(order_view(order, trail, checkout, settings.zone, admin), reply_markup=steps)


async def order_open(
    query: CallbackQuery, callback_data: StaffOrderCb, checkout: CheckoutService, settings: Settings
) -> None:
    order = await checkout.order(callback_data.id)
    if order is None:
        await query.answer(_("That order was not found."), show_alert=True)
        return
    await query.answer()
    if isinstance(query.message, Message):
        admin = query.from_user.id in settings.admin_ids
        await show_order(query.message, order, checkout, settings, admin)


# --- lists ----------------------------------------------------------------------------------


def order_row(order: Order, checkout: CheckoutService, zone: tzinfo) -> str:
    when = format_when(order.created_at, zone, named=False)
    provider = texts.escape(texts.provider_name(checkout.display_name(order.provider)))
    shipping = texts.fulfilment_status(order)  # none for an order that ships nothing
    parts = [f"#{order.id}", when, buyer_in_row(order), texts.money(order.total)]
    parts += [texts.state_name(order.state), *([shipping] if shipping else []), provider]
    return " · ".join(parts)


def page_text(
    title: str, orders: list[Order], page: int, checkout: CheckoutService, zone: tzinfo
) -> str:
    if not orders:
        return f"<b>{title}</b>\n" + _("No orders match.")
    head = _("Page {page} · times in {zone}").format(page=page + 1, zone=zone_name(zone))
    return "\n".join([f"<b>{title}</b>", head, *(order_row(o, checkout, zone) for o in orders)])


def filter_title(found: OrdersFilter, checkout: CheckoutService) -> str:
    parts = [texts.state_name(s) for s in found.states]
    parts += [texts.fulfilment_name(s) for s in found.steps]
    if found.provider:
        parts.append(texts.provider_name(checkout.display_name(found.provider)))
    if found.user_id:
        parts.append(_("customer {id}").format(id=found.user_id))
    if found.days:
        parts.append(
            ngettext("last {days} day", "last {days} days", found.days).format(days=found.days)
        )
    title = _("Orders")
    return texts.escape(f"{title}: {', '.join(parts)}" if parts else title)


async def render_orders(
    found: OrdersFilter, page: int, checkout: CheckoutService, zone: tzinfo
) -> tuple[str, object]:
    orders = await checkout.search_orders(
        found.query(), days=found.days or None, limit=PAGE + 1, offset=page * PAGE
    )
    more, orders = len(orders) > PAGE, orders[:PAGE]
    back = found.page(page - 1) if page > 0 else None
    forward = found.page(page + 1) if more else None
    text = page_text(filter_title(found, checkout), orders, page, checkout, zone)
    return text, staff_orders_keyboard(orders, back, forward)


async def orders_command(
    message: Message, command: CommandObject, checkout: CheckoutService, settings: Settings
) -> None:
    args = (command.args or "").strip()
    if args.casefold() in ("help", "?"):
        await message.answer(filter_usage(checkout.provider_names()))
        return
    names = {n: texts.provider_name(checkout.display_name(n)) for n in checkout.provider_names()}
    try:
        found = parse(args, names)
    except FilterError as exc:
        said = []
        if exc.unknown:
            said.append(_("Not understood: {words}.").format(words=" ".join(exc.unknown)[:200]))
        if exc.twice:
            said.append(
                _("One provider, customer and period at a time: {words}.").format(
                    words=" ".join(exc.twice)[:200]
                )
            )
        await message.answer(
            texts.escape("\n".join(said)) + "\n\n" + filter_usage(checkout.provider_names())
        )
        return
    text, markup = await render_orders(found, 0, checkout, settings.zone)
    await message.answer(text, reply_markup=markup)


async def orders_page(
    query: CallbackQuery,
    callback_data: StaffOrdersCb,
    checkout: CheckoutService,
    settings: Settings,
) -> None:
    await query.answer()
    found = OrdersFilter.from_page(callback_data)
    text, markup = await render_orders(found, max(callback_data.page, 0), checkout, settings.zone)
    await edit(query, text, markup)


def find_usage() -> str:
    return texts.escape(
        _(
            "Usage: /find <text>: an order number, a provider's payment id, a customer's name, "
            "@username or phone (at least {count} characters)."
        ).format(count=FIND_SHORTEST)
    )


async def render_find(
    text: str, page: int, checkout: CheckoutService, zone: tzinfo
) -> tuple[str, object]:
    orders = await checkout.search_orders(OrderQuery(text=text), limit=PAGE + 1, offset=page * PAGE)
    more, orders = len(orders) > PAGE, orders[:PAGE]
    title = texts.escape(_("Orders matching {text}").format(text=text))
    body = page_text(title, orders, page, checkout, zone)
    pages = StaffFindCb(text=text, page=page - 1), StaffFindCb(text=text, page=page + 1)
    if not fits(pages[1]):  # a text too long for a button (or with a ':'): one page only
        if more:
            body += "\n" + _("Only the first {count} are shown; narrow the search.").format(
                count=PAGE
            )
        return body, staff_orders_keyboard(orders, None, None)
    return body, staff_orders_keyboard(
        orders, pages[0] if page > 0 else None, pages[1] if more else None
    )


def searched(args: str) -> str:
    """The text to look for: a phone as typed ('+90 532 123-45-67') becomes its digits, the
    way phones are stored for search; anything else with its spaces evened out."""
    text = " ".join(args.split())
    if set(text) <= PHONE_CHARACTERS and sum(c.isdigit() for c in text) >= PHONE_DIGITS:
        return "".join(c for c in text if c.isdigit())
    return text


async def find_command(
    message: Message, command: CommandObject, checkout: CheckoutService, settings: Settings
) -> None:
    text = searched(command.args or "")
    short = len(text) < FIND_SHORTEST and not (text.isascii() and text.isdigit())
    if not text or short or len(text) > FIND_LONGEST:
        await message.answer(find_usage())
        return
    reply, markup = await render_find(text, 0, checkout, settings.zone)
    await message.answer(reply, reply_markup=markup)


async def find_page(
    query: CallbackQuery, callback_data: StaffFindCb, checkout: CheckoutService, settings: Settings
) -> None:
    await query.answer()
    text = callback_data.text[:FIND_LONGEST]
    reply, markup = await render_find(text, max(callback_data.page, 0), checkout, settings.zone)
    await edit(query, reply, markup)


# --- what support may not do ------------------------------------------------------------------


def admins_only_text() -> str:
    return _("Only admins may do that. You can look orders up: /orders, /find, /order <id>.")


async def admins_only(message: Message) -> None:
    await message.answer(texts.escape(admins_only_text()))


async def admins_only_button(query: CallbackQuery) -> None:
    await query.answer(admins_only_text(), show_alert=True)


async def fulfil_not_allowed(query: CallbackQuery) -> None:
    """A support person pressing Shipped (or its follow-ups): a role answer, not "out of date"."""
    await query.answer(_("Only admins and the merchant chat may change orders."), show_alert=True)


def create_router() -> Router:
    """A fresh Router with this module's handlers (a Router can join one Dispatcher only).
    It comes after the admin router and before the customer's: staff get these lists instead
    of their own /orders."""
    router = Router(name=__name__)
    router.message.filter(IsStaff())
    router.callback_query.filter(IsStaff())
    router.message.register(admin_help, Command("admin"))
    router.message.register(order_lookup, Command("order"))
    router.message.register(orders_command, Command("orders"))
    router.message.register(find_command, Command("find"))
    router.callback_query.register(order_open, StaffOrderCb.filter())
    router.callback_query.register(orders_page, StaffOrdersCb.filter())
    router.callback_query.register(find_page, StaffFindCb.filter())
    router.message.register(admins_only, Command(*ADMIN_ONLY))
    router.callback_query.register(admins_only_button, RefundCb.filter())
    router.callback_query.register(admins_only_button, RefundLaterCb.filter())
    router.callback_query.register(admins_only_button, UnexpectedCb.filter())
    router.callback_query.register(admins_only_button, ReviewCb.filter())
    router.callback_query.register(admins_only_button, ReviewPage.filter())
    for kind in (FulfilCb, NoTrackingCb, StepsCb):
        router.callback_query.register(fulfil_not_allowed, kind.filter())
    return router
