"""Money for every layer: integer minor units with an ISO 4217 code, and the one converter
between our amounts and what a provider writes on the wire.

Imports nothing of ours, so storage, providers, the core and the chat all share one `Money`.
Never float: decimals go through `Decimal`, and infinite or NaN values are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from enum import StrEnum

# Minor units per major unit, by ISO 4217 code (XTR: Telegram Stars are whole).
MINOR_UNITS: Mapping[str, int] = {
    "TRY": 2,
    "MNT": 2,
    "KZT": 2,
    "RUB": 2,
    "TMT": 2,
    "USD": 2,
    "EUR": 2,
    "XTR": 0,
}


MAX_MAGNITUDE = 15  # 10^16 major units: far beyond any price, well inside 64-bit minor units
MAX_DIGITS = 24


class AmountNotRepresentable(ValueError):
    """An amount that cannot be Money here, or that a provider cannot take: refused before an
    order is created (or, on the way in, never taken as what was paid)."""


def _decimal(value: object) -> Decimal:
    """A finite Decimal from an int, a Decimal or a numeric string; never a bool or a float."""
    if isinstance(value, (bool, float)):
        raise AmountNotRepresentable(f"{value!r} is not an exact amount")
    try:
        number = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        raise AmountNotRepresentable(f"{str(value)[:40]!r} is not a number") from None
    if not number.is_finite():
        raise AmountNotRepresentable(f"{number} is not a finite amount")
    # beyond any price (and a database's 64-bit integers), and beyond what Decimal's 28 digits
    # convert exactly: refused before any arithmetic, so '1e999999' costs nothing
    if number.adjusted() > MAX_MAGNITUDE or len(number.as_tuple().digits) > MAX_DIGITS:
        raise AmountNotRepresentable(f"{str(value)[:40]} is out of range")
    return number


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units (kuruş, kopecks, tiyin) and an ISO 4217 code."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError(f"Money.amount must be int minor units, got {type(self.amount)!r}")
        if self.currency not in MINOR_UNITS:
            raise ValueError(f"unsupported currency {self.currency!r}")

    @property
    def exponent(self) -> int:
        return MINOR_UNITS[self.currency]

    def to_decimal(self) -> Decimal:
        """The amount in major units, exactly (1250 RUB minor -> Decimal('12.50'))."""
        return Decimal(self.amount).scaleb(-self.exponent)

    @classmethod
    def from_decimal(cls, value: Decimal | str | int, currency: str) -> Money:
        """Major units to Money; refuses values with more decimals than the currency has, and
        anything that is not a finite number ('inf', 'NaN', '1e999999')."""
        if currency not in MINOR_UNITS:
            raise AmountNotRepresentable(f"unsupported currency {currency!r}")
        exponent = MINOR_UNITS[currency]
        number = _decimal(value)
        minor = number.scaleb(exponent)
        if minor != minor.to_integral_value():
            raise AmountNotRepresentable(f"{value} {currency} has more than {exponent} decimals")
        return cls(int(minor), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, times: int) -> Money:
        return Money(self.amount * times, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot mix {self.currency} and {other.currency}")

    def __str__(self) -> str:
        return f"{self.to_decimal()} {self.currency}"


class WireKind(StrEnum):
    """How a provider writes an amount."""

    MINOR = "minor"  # integer minor units: Payture's kopecks, Stars
    WHOLE = "whole"  # whole major units: Redoya by default
    DECIMAL = "decimal"  # major units with up to `decimals` places: KTWidget, the ERP, Pocket


def _exact(money: Money) -> Money:
    return money


@dataclass(frozen=True, slots=True)
class AmountFormat:
    """How a provider writes amounts on the wire, declared once per adapter.

    `minimum`/`maximum` bound the amount in minor units. `held` says what the bank will really
    hold for an amount when that differs from the amount asked (the Turkmen ERP loses a tiyin
    on some prices); the core compares a payment with it.
    """

    currencies: frozenset[str]
    kind: WireKind = WireKind.DECIMAL
    decimals: int = 2
    minimum: int = 1
    maximum: int | None = None
    held: Callable[[Money], Money] = field(default=_exact, compare=False)

    def places(self, currency: str) -> int:
        """Decimals the wire carries in major units for this currency."""
        if self.kind is WireKind.WHOLE:
            return 0
        if self.kind is WireKind.MINOR:
            return MINOR_UNITS[currency]
        return min(self.decimals, MINOR_UNITS[currency])

    def check(self, money: Money) -> None:
        """Raise AmountNotRepresentable when the provider cannot take this amount."""
        if money.currency not in self.currencies:
            raise AmountNotRepresentable(f"currency {money.currency} is not accepted")
        if money.amount < self.minimum:
            raise AmountNotRepresentable(
                f"{money} is below the minimum {Money(self.minimum, money.currency)}"
            )
        if self.maximum is not None and money.amount > self.maximum:
            raise AmountNotRepresentable(
                f"{money} is above the maximum {Money(self.maximum, money.currency)}"
            )
        places = self.places(money.currency)
        step = 10 ** (money.exponent - places)
        if step > 1 and money.amount % step:
            raise AmountNotRepresentable(
                f"{money} needs {money.exponent} decimals, the provider takes {places}"
            )

    def to_wire(self, money: Money) -> int | Decimal:
        """The amount as the provider writes it, checked first: an int for MINOR and WHOLE,
        a Decimal with the provider's places for DECIMAL."""
        self.check(money)
        if self.kind is WireKind.MINOR:
            return money.amount
        major = money.to_decimal()
        if self.kind is WireKind.WHOLE:
            return int(major)
        return major.quantize(Decimal(1).scaleb(-self.places(money.currency)), ROUND_DOWN)

    def to_json(self, money: Money) -> int | float:
        """The amount as a JSON number. JSON has one number type: a whole amount goes as an
        int; a decimal one as the float whose shortest repr is exactly that decimal."""
        wire = self.to_wire(money)
        if isinstance(wire, int) or wire == wire.to_integral_value():
            return int(wire)
        number = float(wire)  # money-ok: JSON's only number type, checked to print back exactly
        if Decimal(repr(number)) != wire:
            raise AmountNotRepresentable(f"{money} does not print back exactly as a JSON number")
        return number

    def from_wire(self, value: object, currency: str) -> Money:
        """What a provider wrote, back to Money: a string, an int, a Decimal or a JSON float
        (read through its shortest repr). Refuses NaN, infinities, bools and garbage."""
        if isinstance(value, float):
            value = repr(value)
        number = _decimal(value)
        if self.kind is WireKind.MINOR:
            if number != number.to_integral_value():
                raise AmountNotRepresentable(f"{number} is not whole minor units")
            return Money(int(number), currency)
        return Money.from_decimal(number, currency)
