"""What the core wrote in English for people to read later (review reasons, the audit trail's
actors and states) rendered for staff in their language. The core keeps writing plain English
into the audit (the log and exports read it); the known reasons are matched here and said again
in the reader's words, amounts through `texts.money`. The provider's own words inside them, and
any reason not known here, stay as they came."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import tzinfo

from aiogram.utils.i18n import gettext as _

from bot import texts
from bot.core import AuditEntry, Money, OrderState
from bot.formatting import format_when

AMOUNT = r"(?P<{name}>[0-9]+(?:\.[0-9]+)? [A-Z]{{3}}|no amount|an amount the provider did not say)"
STATE = r"(?P<state>[a-z_]+)"
NOTE = "review: "  # how the core notes a review on an order already in review (or paid)


def amount(text: str) -> str:
    """'150.00 TRY' (str(Money), as the core writes it) through `texts.money`."""
    if text == "no amount":
        return _("no amount")
    if text == "an amount the provider did not say":
        return _("an amount the provider did not say")
    value, _space, currency = text.partition(" ")
    try:
        return texts.money(Money.from_decimal(value, currency))
    except (ValueError, ArithmeticError):
        return texts.escape(text)


def state(value: str) -> str:
    try:
        return texts.state_name(OrderState(value))
    except ValueError:
        return texts.escape(value)


def _pattern(text: str) -> re.Pattern[str]:
    """The core's template as a regex: its words literal ("(from review)"), its placeholders
    groups."""
    return re.compile(
        "^"
        + re.escape(text)
        .replace(re.escape("{state}"), STATE)
        .replace(re.escape("{amount}"), AMOUNT.format(name="amount"))
        .replace(re.escape("{total}"), AMOUNT.format(name="total"))
        .replace(re.escape("{id}"), r"(?P<id>.+?)")
        .replace(re.escape("{rest}"), r"(?P<rest>.*)")
        + "$",
        re.DOTALL,
    )


def _known() -> list[tuple[re.Pattern[str], Callable[[dict[str, str]], str]]]:
    """Each reason the core writes (bot/core/confirm.py, refunds.py, inbound.py) and its
    rendering; `rest` is the provider's own words, kept (escaped) as they came."""
    return [
        (
            _pattern("paid after the order was {state}: {amount} as {id} payment {rest}"),
            lambda m: _("paid after the order was {state}: {amount}, payment {payment_id}").format(
                state=state(m["state"]), amount=amount(m["amount"]), payment_id=m["rest"]
            ),
        ),
        (
            _pattern("paid after the order was {state}"),
            lambda m: _("paid after the order was {state}").format(state=state(m["state"])),
        ),
        (
            _pattern(
                "a second payment for an order already {state}: {amount} as {id} payment {rest}"
            ),
            lambda m: _(
                "a second payment for an order already {state}: {amount}, payment {payment_id}"
            ).format(state=state(m["state"]), amount=amount(m["amount"]), payment_id=m["rest"]),
        ),
        (
            _pattern(
                "a second payment for an order already paying with another id: {amount} as {id} "
                "payment {rest}"
            ),
            lambda m: _(
                "a second payment for an order already being paid with another payment: "
                "{amount}, payment {payment_id}"
            ).format(amount=amount(m["amount"]), payment_id=m["rest"]),
        ),
        (
            _pattern(
                "paid by another Telegram user than the customer: {amount} as {id} payment {rest}"
            ),
            lambda m: _(
                "paid by another Telegram user than the customer: {amount}, payment {payment_id}"
            ).format(amount=amount(m["amount"]), payment_id=m["rest"]),
        ),
        (
            _pattern("amount mismatch: provider says {amount}, order is {total}"),
            lambda m: _("the provider says {amount} was paid, the order is {total}").format(
                amount=amount(m["amount"]), total=amount(m["total"])
            ),
        ),
        (
            _pattern("the provider renamed it to {id}, another order's"),
            lambda m: _("the provider renamed the payment to {payment_id}, another order's").format(
                payment_id=m["id"]
            ),
        ),
        (
            _pattern("provider says {state}: {rest}"),
            lambda m: _("the provider says {status}: {said}").format(
                status=m["state"], said=m["rest"]
            ),
        ),
        (
            _pattern("refund of {amount} has an unknown outcome"),
            lambda m: _("the refund of {amount} has an unknown outcome").format(
                amount=amount(m["amount"])
            ),
        ),
        (
            _pattern("refund {amount} went through, but the order was {state}"),
            lambda m: _("the refund of {amount} went through, but the order was {state}").format(
                amount=amount(m["amount"]), state=state(m["state"])
            ),
        ),
        (
            _pattern("refund {amount} (from review)"),
            lambda m: _("refund of {amount}, from review").format(amount=amount(m["amount"])),
        ),
        (
            _pattern("refund {amount}"),
            lambda m: _("refund of {amount}").format(amount=amount(m["amount"])),
        ),
        (
            _pattern("refunded {amount}{rest}"),
            lambda m: _("refunded {amount}").format(amount=amount(m["amount"])) + m["rest"],
        ),
        (_pattern("accepted as paid"), lambda m: _("accepted as paid")),
        (_pattern("marked failed"), lambda m: _("marked failed")),
        (_pattern("checkout did not finish"), lambda m: _("checkout did not finish")),
    ]


def reason(text: str) -> str:
    """A review reason in the reader's language when the core's words are known; else as it
    came. Escaped for HTML either way."""
    for pattern, render in _known():
        found = pattern.match(text)
        if found:
            return render({k: texts.escape(v or "") for k, v in found.groupdict().items()})
    return texts.escape(text)


def actor(who: str) -> str:
    """Who moved an order, as the audit says it ('admin:42', 'return') in the reader's words."""
    kind, _colon, ident = who.partition(":")
    named = {
        "checkout": _("checkout"),
        "return": _("customer back from the payment page"),
        "callback": _("provider's notification"),
        "button": _("customer's Check payment"),
        "sweep": _("background check"),
        "ledger": _("provider's payment list"),
        "telegram": "Telegram",
    }
    if not ident and kind in named:
        return named[kind]
    people = {
        "admin": _("admin {id}"),
        "merchant": _("merchant chat, {id}"),
        "user": _("customer {id}"),
        "replay": _("replayed update ({id})"),
    }
    if ident and kind in people:
        return people[kind].format(id=texts.escape(ident))
    return texts.escape(who)


def detail(text: str) -> str:
    """An audit detail: a review note or reason rendered (see `reason`), else as it came."""
    if text.startswith(NOTE):
        return _("review: {reason}").format(reason=reason(text.removeprefix(NOTE)))
    return reason(text)


def audit_line(entry: AuditEntry, zone: tzinfo) -> str:
    """'02.12.2026, 09:30 awaiting payment → paid · customer back from the payment page: …'."""
    before = texts.state_name(entry.from_state) if entry.from_state else "-"
    line = (
        f"{format_when(entry.created_at, zone, named=False)} {before} → "
        f"{texts.state_name(entry.to_state)} · {actor(entry.actor)}"
    )
    return f"{line}: {detail(entry.detail)}" if entry.detail else line
