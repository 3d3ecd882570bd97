"""The Redoya adapter against the Redoya emulator over loopback: token, return, verify mapping,
amount rules, and secrets kept out of logs and errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from money import AmountNotRepresentable, Money
from providers.base import (
    BadCallback,
    CheckoutRequest,
    Inbound,
    InboundRequest,
    PaymentRef,
    PaymentState,
    ProviderRejected,
    ProviderUnavailable,
)
from providers.http import logging_hooks
from providers.redoya import ERROR_MAP, STATUS_MAP, RedoyaProvider
from sandbox.redoya import RedoyaServer

TRY = "TRY"


@pytest.fixture
async def client(redoya: RedoyaServer) -> AsyncIterator[httpx.AsyncClient]:
    hooks = logging_hooks([redoya.secret, redoya.identifier])
    async with httpx.AsyncClient(
        transport=AiohttpTransport(), timeout=1.0, event_hooks=hooks
    ) as http:
        yield http


def adapter(client: httpx.AsyncClient, redoya: RedoyaServer, **kw: object) -> RedoyaProvider:
    return RedoyaProvider(
        client,
        api_url=redoya.url,
        pay_url=redoya.url,
        secret=redoya.secret,
        identifier=redoya.identifier,
        **kw,  # type: ignore[arg-type]
    )


def request(amount: int = 15000) -> CheckoutRequest:
    return CheckoutRequest(
        order_id=1,
        amount=Money(amount, TRY),
        description="Turkish coffee",
        return_url="http://127.0.0.1:9/return/redoya/tok-abcdefghijklmnop",
        callback_url="http://127.0.0.1:9/callbacks/redoya?t=tok",
        token="tok-abcdefghijklmnop",
    )


async def paid_via_page(
    client: httpx.AsyncClient, redoya: RedoyaServer, provider: RedoyaProvider, outcome: str
) -> tuple[str, Inbound]:
    checkout = await provider.create_checkout(request())
    answer = (
        await client.post(
            f"{redoya.url}/sandbox/pay", json={"url": checkout.pay_url, "outcome": outcome}
        )
    ).json()
    redirect = httpx.URL(answer["redirect"])
    inbound = await provider.parse_return(
        InboundRequest("GET", redirect.path, dict(redirect.params), {}, b"")
    )
    return str(redirect), inbound


async def test_paid_order_verifies_with_its_amount(client, redoya) -> None:
    provider = adapter(client, redoya)
    redirect, inbound = await paid_via_page(client, redoya, provider, "paid")
    assert "result=success" in redirect
    assert inbound.hint == "success"
    status = await provider.fetch_status(inbound.ref)
    assert status.state is PaymentState.PAID
    assert status.paid == Money(15000, TRY)


@pytest.mark.parametrize(
    ("outcome", "state"),
    [("failed", PaymentState.FAILED), ("cancelled", PaymentState.PENDING)],
)
async def test_failed_and_cancelled(client, redoya, outcome: str, state: PaymentState) -> None:
    provider = adapter(client, redoya)
    redirect, inbound = await paid_via_page(client, redoya, provider, outcome)
    assert "result=fail" in redirect
    assert (await provider.fetch_status(inbound.ref)).state is state


async def test_pending_orders_time_out(client) -> None:
    server = RedoyaServer(order_lifetime=timedelta(seconds=0))
    await server.start()
    try:
        provider = adapter(client, server)
        _, inbound = await paid_via_page(client, server, provider, "pending")
        assert (await provider.fetch_status(inbound.ref)).state is PaymentState.EXPIRED
    finally:
        await server.stop()


async def test_not_confirmed_yet_then_paid(client, redoya) -> None:
    provider = adapter(client, redoya)
    redoya.not_confirmed_verifies = 1
    _, inbound = await paid_via_page(client, redoya, provider, "paid")
    assert (await provider.fetch_status(inbound.ref)).state is PaymentState.PENDING
    assert (await provider.fetch_status(inbound.ref)).state is PaymentState.PAID


async def test_outages_are_unavailable_not_answers(client, redoya) -> None:
    provider = adapter(client, redoya)
    _, inbound = await paid_via_page(client, redoya, provider, "paid")
    redoya.verify_status_override = 500
    with pytest.raises(ProviderUnavailable):
        await provider.fetch_status(inbound.ref)
    redoya.verify_status_override = None
    redoya.verify_delay = 1.5
    with pytest.raises(ProviderUnavailable, match="timed out"):
        await provider.fetch_status(inbound.ref)


async def test_forged_amount_currency_and_test_mode(client, redoya) -> None:
    provider = adapter(client, redoya)
    _, inbound = await paid_via_page(client, redoya, provider, "paid")
    redoya.paid_amount_override = 300
    status = await provider.fetch_status(inbound.ref)
    assert status.paid == Money(300, TRY)  # confirm compares it with the order
    redoya.paid_amount_override = None
    redoya.currency_override = "USD"
    assert (await provider.fetch_status(inbound.ref)).state is PaymentState.NEEDS_REVIEW
    redoya.currency_override = None
    redoya.test_mode_override = 1
    status = await provider.fetch_status(inbound.ref)
    assert status.state is PaymentState.NEEDS_REVIEW
    assert "testMode" in status.detail


async def test_unknown_and_malformed_ids(client, redoya) -> None:
    provider = adapter(client, redoya)
    with pytest.raises(ProviderRejected) as caught:
        await provider.fetch_status(PaymentRef("AAAAAAAAAAAAAAAA"))
    assert caught.value.code == "UNKNOWN_ORDER"
    with pytest.raises(BadCallback):
        await provider.parse_return(InboundRequest("GET", "/", {"order_id": "../../etc"}))


def test_amount_rules() -> None:
    provider = RedoyaProvider(
        httpx.AsyncClient(), api_url="x", pay_url="x", secret="s" * 32, identifier="i"
    )
    provider.amount_format.check(Money(300, TRY))
    provider.amount_format.check(Money(100_000, TRY))
    for amount in (250, 299, 100_100, 1570):
        with pytest.raises(AmountNotRepresentable):
            provider.amount_format.check(Money(amount, TRY))
    with pytest.raises(AmountNotRepresentable):
        provider.amount_format.check(Money(1500, "RUB"))
    decimal = RedoyaProvider(
        httpx.AsyncClient(),
        api_url="x",
        pay_url="x",
        secret="s" * 32,
        identifier="i",
        decimal_prices=True,
    )
    decimal.amount_format.check(Money(1570, TRY))
    for lifetime in (timedelta(minutes=10), timedelta(days=366)):
        with pytest.raises(ValueError, match="lifetime"):
            RedoyaProvider(
                httpx.AsyncClient(),
                api_url="x",
                pay_url="x",
                secret="s",
                identifier="i",
                token_lifetime=lifetime,
            )


async def test_decimal_prices_reach_the_page_when_enabled(client, redoya) -> None:
    redoya.decimal_prices = True
    provider = adapter(client, redoya, decimal_prices=True)
    checkout = await provider.create_checkout(request(1570))
    answer = await client.post(
        f"{redoya.url}/sandbox/pay", json={"url": checkout.pay_url, "outcome": "paid"}
    )
    order_id = answer.json()["order_id"]
    status = await provider.fetch_status(PaymentRef(order_id))
    assert status.paid == Money(1570, TRY)


@pytest.mark.parametrize("status", sorted(STATUS_MAP))
async def test_every_status_of_the_map(client, redoya, status: str) -> None:
    provider = adapter(client, redoya)
    outcome = {"success": "paid", "failed": "failed"}[status]
    _, inbound = await paid_via_page(client, redoya, provider, outcome)
    assert (await provider.fetch_status(inbound.ref)).state is STATUS_MAP[status]


def test_every_error_type_of_the_document_is_mapped() -> None:
    assert set(ERROR_MAP) == {
        "NOT_CONFIRMED_YET",
        "ORDER_TIMED_OUT",
    }  # + UNKNOWN_ORDER/_ERROR raise


async def test_the_emulator_accepts_a_form_body(client, redoya) -> None:
    provider = adapter(client, redoya)
    _, inbound = await paid_via_page(client, redoya, provider, "paid")
    answer = await client.post(
        f"{redoya.url}/api/v1/order/verify/{inbound.ref.payment_id}",
        data={"identifier": redoya.identifier},
    )
    assert answer.json()["status"] == "success"


async def test_secrets_never_reach_logs_or_errors(client, redoya, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    provider = adapter(client, redoya)
    _, inbound = await paid_via_page(client, redoya, provider, "paid")
    await provider.fetch_status(inbound.ref)
    redoya.verify_status_override = 500
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.fetch_status(inbound.ref)
    text = caplog.text + str(caught.value)
    assert "verify" in caplog.text  # the calls are logged...
    assert redoya.secret not in text  # ...without the secret or the identifier
    assert redoya.identifier not in text
