"""The words of the staff's `/orders [state | provider | user id | days]`, in any order, and
their compact form in the paging buttons.

- a state: its name in English (`paid`, `needs_review`, `awaiting payment`) or in the admin's
  language (`оплачен`); several states widen the list;
- a fulfilment step: `shipped`, `delivered`, `not shipped` (or `new`: orders the shop owes
  goods for and has not sent), `cancelled by the shop`, in English or the admin's language;
  `/orders not shipped` is the morning's list of paid orders to send;
- a provider: its name (`payture`) or what the chat calls it;
- `7d`: the last 7 days;
- a bare number: a customer's Telegram id (an order by its number is `/order <id>`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot import texts
from bot.core import FULFILLABLE, Fulfilment, OrderQuery, OrderState
from bot.handlers import numbers
from bot.keyboards import StaffOrdersCb

STATES = list(OrderState)
CODES = (string.digits + string.ascii_letters)[: len(STATES)]  # a state in a button: "2" = paid
STEPS = list(Fulfilment)
LONGEST_NAME = 5  # words: "being checked by the shop"
OWED = tuple(s for s in STATES if s in FULFILLABLE)  # "not shipped": orders owed goods


class FilterError(ValueError):
    """Words nobody understands (`unknown`), or one kind given twice (`twice`)."""

    def __init__(self, unknown: list[str], twice: list[str]) -> None:
        super().__init__(", ".join(unknown + twice))
        self.unknown = unknown
        self.twice = twice


@dataclass(frozen=True, slots=True)
class OrdersFilter:
    states: tuple[OrderState, ...] = ()
    provider: str = ""
    user_id: int = 0
    days: int = 0
    steps: tuple[Fulfilment, ...] = ()

    def query(self) -> OrderQuery:
        """ "Not shipped" alone means the orders the shop owes goods for (paid, not sent):
        an unpaid order ships nothing."""
        owed = Fulfilment.NEW in self.steps and not self.states
        return OrderQuery(
            states=OWED if owed else self.states,
            fulfilment=self.steps,
            provider=self.provider or None,
            user_id=self.user_id or None,
        )

    def page(self, page: int) -> StaffOrdersCb:
        codes = "".join(CODES[STATES.index(s)] for s in self.states)
        steps = "".join(str(STEPS.index(s)) for s in self.steps)
        return StaffOrdersCb(
            states=codes,
            provider=self.provider,
            user=self.user_id,
            days=self.days,
            page=page,
            shipping=steps,
        )

    @classmethod
    def from_page(cls, data: StaffOrdersCb) -> OrdersFilter:
        """A button's filter; a code nobody wrote (an edited payload) is dropped."""
        states = tuple(STATES[CODES.index(c)] for c in dict.fromkeys(data.states) if c in CODES)
        known = [str(i) for i in range(len(STEPS))]
        steps = tuple(STEPS[int(c)] for c in dict.fromkeys(data.shipping) if c in known)
        return cls(
            states,
            data.provider,
            max(data.user, 0),
            min(max(data.days, 0), numbers.MAX_DAYS),
            steps,
        )


def _norm(text: str) -> str:
    return " ".join(text.casefold().replace("_", " ").split())


def _names(providers: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Every phrase the filter takes -> (kind, value): state names in English and in the
    current language, provider names and display names."""
    found: dict[str, tuple[str, str]] = {}
    i18n = I18n.get_current()
    for state in STATES:
        with i18n.use_locale("en"):
            english = texts.state_name(state)
        for name in (state.value, english, texts.state_name(state)):
            found[_norm(name)] = ("state", state.value)
    for step in STEPS:  # after the states: "cancelled" alone stays the payment state
        with i18n.use_locale("en"):
            english = texts.fulfilment_name(step)
        for name in (step.value, english, texts.fulfilment_name(step)):
            found.setdefault(_norm(name), ("step", step.value))
    with i18n.use_locale("en"):
        english = _("not shipped")
    for name in (english, _("not shipped")):
        found.setdefault(_norm(name), ("step", Fulfilment.NEW.value))
    for name, display in providers.items():
        found[_norm(display)] = ("provider", name)
        found[_norm(name)] = ("provider", name)
    return found


def parse(args: str, providers: dict[str, str]) -> OrdersFilter:
    """`providers`: name -> display name of the enabled ones. FilterError on a word nobody
    understands or a second provider, customer or period."""
    names = _names(providers)
    words = args.split()
    states: list[OrderState] = []
    steps: list[Fulfilment] = []
    single: dict[str, str] = {}
    unknown: list[str] = []
    twice: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(LONGEST_NAME, len(words) - i), 0, -1):
            phrase = " ".join(words[i : i + n])
            kind, value = names.get(_norm(phrase), ("", ""))
            if kind:
                break
        else:
            n, phrase = 1, words[i]
            kind, value = _number(phrase)
        i += n
        if kind == "state":
            states.append(OrderState(value))
        elif kind == "step":
            steps.append(Fulfilment(value))
        elif not kind:
            unknown.append(phrase)
        elif kind in single and single[kind] != value:
            twice.append(phrase)
        else:
            single[kind] = value
    if unknown or twice:
        raise FilterError(unknown, twice)
    return OrdersFilter(
        tuple(dict.fromkeys(states)),
        single.get("provider", ""),
        int(single.get("user", 0)),
        int(single.get("days", 0)),
        tuple(dict.fromkeys(steps)),
    )


def _number(word: str) -> tuple[str, str]:
    """'7d' -> days, '1001' -> a customer id (bot/handlers/numbers.py reads both numbers)."""
    if word[-1:] in ("d", "D"):
        days = numbers.days(word[:-1])
        return ("days", str(days)) if days else ("", "")
    user = numbers.number(word)
    return ("user", str(user)) if user else ("", "")


def filter_usage(providers: list[str]) -> str:
    """What /orders takes (for a filter nobody understood, and `/orders help`), escaped."""
    names = {s.value: texts.state_name(s) for s in STATES}
    states = ", ".join(name if name == v else f"{name} ({v})" for v, name in names.items())
    steps = ", ".join(
        [_("not shipped")] + [texts.fulfilment_name(s) for s in STEPS if s is not Fulfilment.NEW]
    )
    return texts.escape(
        "\n".join(
            (
                _("/orders takes these words, in any order:"),
                "• " + _("a state: {states}").format(states=states),
                "• " + _("shipping: {steps}").format(steps=steps),
                "• " + _("a provider: {providers}").format(providers=", ".join(providers)),
                "• " + _("a customer: their Telegram id, a bare number (e.g. 1001)"),
                "• " + _("days: a number with d (e.g. 7d = the last 7 days)"),
                _("An order by its number: /order <id>; by name or phone: /find <text>"),
            )
        )
    )
