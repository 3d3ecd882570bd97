"""Properties over many generated cases (hypothesis): money never loses a minor unit, providers
take exactly the amounts their documents allow, and storage follows the order state table for
any sequence of changes."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from money import MINOR_UNITS, AmountNotRepresentable, Money
from providers.payture import PaytureProvider, form_fields
from providers.redoya import RedoyaProvider
from storage import storage_from_url
from storage.base import (
    IllegalTransition,
    NewOrder,
    OrderItem,
    OrderState,
    Storage,
    can_transition,
)

currencies = st.sampled_from(sorted(MINOR_UNITS))
amounts = st.integers(min_value=-(10**15), max_value=10**15)


@given(amount=amounts, currency=currencies)
def test_money_round_trips_through_major_units(amount: int, currency: str) -> None:
    money = Money(amount, currency)
    assert Money.from_decimal(money.to_decimal(), currency) == money
    assert Money.from_decimal(str(money.to_decimal()), currency) == money


@given(amount=amounts, currency=currencies, digit=st.integers(min_value=1, max_value=9))
def test_money_refuses_a_decimal_the_currency_does_not_have(
    amount: int, currency: str, digit: int
) -> None:
    exponent = MINOR_UNITS[currency]
    value = Money(amount, currency).to_decimal() + Decimal(digit).scaleb(-(exponent + 1))
    with pytest.raises(AmountNotRepresentable):
        Money.from_decimal(value, currency)


@pytest.fixture(scope="module")
async def adapters() -> AsyncIterator[tuple[RedoyaProvider, PaytureProvider]]:
    """The adapters as configured for production; no call leaves this process here."""
    async with httpx.AsyncClient() as client:
        yield (
            RedoyaProvider(
                client,
                api_url="http://127.0.0.1",
                pay_url="http://127.0.0.1",
                secret="s",
                identifier="i",
            ),
            PaytureProvider(client, base_url="http://127.0.0.1", key="k", password="p"),
        )


# form bodies built mostly of the characters that have a meaning in one, and any text
form_signs = st.sampled_from("&=%+ab;?#\x00é2F")
form_text = st.text(alphabet=form_signs, max_size=40) | st.text(max_size=40)


@given(text=form_text)
def test_payture_reads_a_form_as_parse_qsl_does(text: str) -> None:
    assert form_fields(text) == dict(parse_qsl(text, keep_blank_values=True))


@given(amount=st.integers(min_value=-(10**7), max_value=10**7))
async def test_redoya_takes_exactly_whole_lira_from_3_to_1000(
    adapters: tuple[RedoyaProvider, PaytureProvider], amount: int
) -> None:
    redoya = adapters[0]
    money = Money(amount, "TRY")
    allowed = amount % 100 == 0 and 300 <= amount <= 100_000
    if allowed:
        redoya.amount_format.check(money)
        assert redoya.amount_format.to_wire(money) * 100 == amount
    else:
        with pytest.raises(AmountNotRepresentable):
            redoya.amount_format.check(money)


@given(amount=st.integers(min_value=-(10**9), max_value=10**12))
async def test_payture_takes_any_kopeck_amount_from_one_rouble(
    adapters: tuple[RedoyaProvider, PaytureProvider], amount: int
) -> None:
    payture = adapters[1]
    money = Money(amount, "RUB")
    if amount >= 100:
        payture.amount_format.check(money)
        assert payture.amount_format.to_wire(money) == amount
    else:
        with pytest.raises(AmountNotRepresentable):
            payture.amount_format.check(money)
    with pytest.raises(AmountNotRepresentable):
        payture.amount_format.check(Money(max(amount, 100), "TRY"))


@pytest.fixture(scope="module")
async def shared_storage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Storage]:
    """One SQLite file for every generated case; each case makes its own order."""
    store = storage_from_url(f"sqlite:///{tmp_path_factory.mktemp('props')}/props.db")
    await store.open()
    yield store
    await store.close()


@settings(max_examples=60, deadline=None)
@given(targets=st.lists(st.sampled_from(list(OrderState)), max_size=8))
async def test_any_sequence_of_changes_follows_the_state_table(
    shared_storage: Storage, targets: list[OrderState]
) -> None:
    order = await shared_storage.create_order(
        NewOrder(
            user_id=1,
            chat_id=1,
            provider="redoya",
            total=Money(500, "TRY"),
            token=uuid.uuid4().hex,
            items=[OrderItem("x", "X", 1, 500)],
        )
    )
    state, moves = OrderState.CREATED, 1  # creating the order is the first audit row
    for target in targets:
        if not can_transition(state, target):
            with pytest.raises(IllegalTransition):
                await shared_storage.transition(order.id, state, target, actor="prop")
            continue
        moved = await shared_storage.transition(order.id, state, target, actor="prop")
        assert moved is not None
        assert moved.state is target
        state, moves = target, moves + 1
    trail = await shared_storage.audit_trail(order.id)
    assert len(trail) == moves
    assert trail[-1].to_state is state
    assert all(a.to_state == b.from_state for a, b in itertools.pairwise(trail))
    assert (await shared_storage.get_order(order.id)).state is state  # type: ignore[union-attr]
