"""The customer's delivery details, checked the same way in the chat (each answer as it comes)
and in the core (the whole record, before an order is stored): a name, a phone written as '+'
and 7-15 digits (the E.164 length), an address and an optional comment, each within limits that
fit a Telegram message beside the order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from storage.base import Delivery

LIMITS = {"name": (2, 64), "address": (5, 300), "comment": (0, 300)}
PHONE_DIGITS = (7, 15)
_PHONE_JUNK = re.compile(r"[\s\-().]")


class DetailsError(ValueError):
    """An answer we refuse; `reason` is a key the chat turns into text ('too_short', ...)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def clean_text(field: str, value: str) -> str:
    """A name, an address or a comment on one line: lines joined with ', ', runs of spaces
    and control characters squeezed to one space, within the field's limits."""
    parts = ("".join(c if c.isprintable() else " " for c in line) for line in value.splitlines())
    text = ", ".join(p for p in (" ".join(part.split()) for part in parts) if p)
    low, high = LIMITS[field]
    if low and not text:
        raise DetailsError(field, "empty")
    if len(text) < low:
        raise DetailsError(field, "too_short")
    if len(text) > high:
        raise DetailsError(field, "too_long")
    return text


def clean_phone(value: str, *, typed: bool = False) -> str:
    """'+90 (532) 123-45-67' -> '+905321234567'; a contact's '905321234567' gets its '+'.
    A `typed` number without '+' (or 00) that starts with 0 or 8 is a national one ('0532...',
    Russia's '8 916...'): no country code starts so, and guessing one would save a wrong number,
    so it is refused ('national')."""
    text = _PHONE_JUNK.sub("", value.strip())
    if text.startswith("00"):  # the international call prefix
        text = "+" + text[2:]
    digits = text.removeprefix("+")
    low, high = PHONE_DIGITS
    if not (digits.isascii() and digits.isdigit() and low <= len(digits) <= high):
        raise DetailsError("phone", "bad_phone")
    if typed and not text.startswith("+") and digits[0] in "08":
        raise DetailsError("phone", "national")
    return "+" + digits


def check(delivery: Delivery) -> Delivery:
    """The whole record checked and cleaned; DetailsError names the first field refused."""
    return Delivery(
        name=clean_text("name", delivery.name),
        phone=clean_phone(delivery.phone),
        address=clean_text("address", delivery.address),
        comment=clean_text("comment", delivery.comment),
    )


def from_dict(data: object) -> Delivery | None:
    """Details kept as a plain dict (the chat's FSM data, JSON in Redis); None when they are
    not a complete, valid record."""
    if not isinstance(data, Mapping):
        return None
    fields = [data.get(key, "") for key in ("name", "phone", "address", "comment")]
    if not all(isinstance(value, str) for value in fields):
        return None
    try:
        return check(Delivery(*fields))
    except DetailsError:
        return None


def to_dict(delivery: Delivery) -> dict[str, str]:
    return {
        "name": delivery.name,
        "phone": delivery.phone,
        "address": delivery.address,
        "comment": delivery.comment,
    }
