"""The numbers the staff's commands take, read one way everywhere: plain ASCII digits ('²',
'１', '٥', '-3' are not numbers here), bounded so that no word overflows a database integer."""

from __future__ import annotations

ID_DIGITS = 18  # an order or user id: beyond this it is none of ours (and would overflow SQLite)
MAX_DAYS = 36_600  # a hundred years: more is no shop's history


def number(word: str, digits: int = ID_DIGITS) -> int | None:
    """A plain ASCII number of at most `digits` digits; None for anything else."""
    if not word or len(word) > digits or not word.isascii() or not word.isdigit():
        return None
    return int(word)


def order_id(args: str | None) -> int | None:
    """The order id a command names first (`/order 12`, `/refund 12 5.00`)."""
    first = (args or "").split()[:1]
    return number(first[0]) if first else None


def days(word: str) -> int | None:
    """A number of days within 1..MAX_DAYS."""
    found = number(word, len(str(MAX_DAYS)))
    return found if found is not None and 1 <= found <= MAX_DAYS else None
