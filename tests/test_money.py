"""money: one converter between our amounts and every wire kind, refusing what is not exact."""

from __future__ import annotations

from decimal import Decimal

import pytest

from money import AmountFormat, AmountNotRepresentable, Money, WireKind

TRY = frozenset({"TRY"})


@pytest.mark.parametrize(
    ("kind", "decimals", "amount", "wire"),
    [
        (WireKind.MINOR, 2, 12345, 12345),
        (WireKind.WHOLE, 0, 15000, 150),
        (WireKind.DECIMAL, 2, 1570, Decimal("15.70")),
        (WireKind.DECIMAL, 1, 1570, Decimal("15.7")),
    ],
)
def test_each_wire_kind_writes_the_amount_exactly(
    kind: WireKind, decimals: int, amount: int, wire: int | Decimal
) -> None:
    fmt = AmountFormat(TRY, kind, decimals)
    assert fmt.to_wire(Money(amount, "TRY")) == wire
    assert fmt.from_wire(str(wire), "TRY") == Money(amount, "TRY")


def test_a_format_refuses_what_it_cannot_write() -> None:
    whole = AmountFormat(TRY, WireKind.WHOLE, minimum=300, maximum=100_000)
    for amount in (299, 100_100, 15050):
        with pytest.raises(AmountNotRepresentable):
            whole.check(Money(amount, "TRY"))
    with pytest.raises(AmountNotRepresentable, match="currency"):
        whole.check(Money(1500, "RUB"))


def test_json_numbers_are_ints_when_whole_and_exact_floats_otherwise() -> None:
    decimal = AmountFormat(TRY, WireKind.DECIMAL, 2)
    assert decimal.to_json(Money(15000, "TRY")) == 150
    assert isinstance(decimal.to_json(Money(15000, "TRY")), int)
    assert decimal.to_json(Money(1570, "TRY")) == 15.7
    assert decimal.from_wire(15.7, "TRY") == Money(1570, "TRY")  # read through its repr


@pytest.mark.parametrize("bad", ["inf", "-Infinity", "NaN", "sNaN", "1e999999", "", "12,5", True])
def test_nothing_that_is_not_a_finite_number_becomes_money(bad: object) -> None:
    with pytest.raises(AmountNotRepresentable):
        Money.from_decimal(bad, "TRY")  # type: ignore[arg-type]
    with pytest.raises(AmountNotRepresentable):
        AmountFormat(TRY, WireKind.DECIMAL).from_wire(bad, "TRY")


def test_floats_never_enter_money_directly() -> None:
    with pytest.raises(AmountNotRepresentable):
        Money.from_decimal(15.7, "TRY")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(15.7, "TRY")  # type: ignore[arg-type]


def test_minor_units_on_the_wire_must_be_whole() -> None:
    with pytest.raises(AmountNotRepresentable):
        AmountFormat(TRY, WireKind.MINOR).from_wire("150.5", "TRY")


def test_a_format_may_declare_what_the_bank_will_hold() -> None:
    """The Turkmen ERP hands Halkbank int(round(float(price), 2) * 100): a tiyin less on some
    prices. An adapter declares it; the core compares a payment with it."""

    def erp_hold(money: Money) -> Money:
        rounded = round(float(money.to_decimal()), 2)  # money-ok: the ERP's own float arithmetic
        return Money(int(rounded * 100), money.currency)

    tmt = AmountFormat(frozenset({"TMT"}), WireKind.DECIMAL, 2, held=erp_hold)
    assert tmt.held(Money(29, "TMT")) == Money(28, "TMT")
    assert tmt.held(Money(115, "TMT")) == Money(114, "TMT")
    assert tmt.held(Money(100, "TMT")) == Money(100, "TMT")
    assert AmountFormat(TRY).held(Money(29, "TRY")) == Money(29, "TRY")


def test_money_compares_only_within_a_currency() -> None:
    assert Money(100, "TRY") < Money(200, "TRY")
    with pytest.raises(ValueError, match="cannot mix"):
        _ = Money(100, "TRY") < Money(100, "RUB")
