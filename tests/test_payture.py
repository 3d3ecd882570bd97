"""The Payture adapter against the Payture emulator over loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from money import Money
from providers.base import (
    CheckoutRequest,
    InboundRequest,
    PaymentRef,
    PaymentState,
    ProviderRejected,
    ProviderUnavailable,
    RefundOutcome,
)
from providers.http import logging_hooks
from providers.payture import STATUS_MAP, PaytureProvider
from sandbox.payture import PaytureServer

RUB = "RUB"
WALLET_SECRET = "wallet-secret-for-tests"


@pytest.fixture
async def client(payture: PaytureServer) -> AsyncIterator[httpx.AsyncClient]:
    secrets = [payture.password, payture.wallet_password, WALLET_SECRET]
    async with httpx.AsyncClient(
        transport=AiohttpTransport(), timeout=2.0, event_hooks=logging_hooks(secrets)
    ) as http:
        yield http


@pytest.fixture
def provider(client: httpx.AsyncClient, payture: PaytureServer) -> PaytureProvider:
    return PaytureProvider(
        client,
        base_url=payture.url,
        key=payture.key,
        password=payture.password,
        wallet_key=payture.wallet_key,
        wallet_password=payture.wallet_password,
        wallet_secret=WALLET_SECRET,
    )


def request(order_id: int = 1, amount: int = 45000, card: str | None = None) -> CheckoutRequest:
    return CheckoutRequest(
        order_id=order_id,
        amount=Money(amount, RUB),
        description="Ivan-chai 100 g x1",
        return_url="http://127.0.0.1:9/return/payture/tok",
        callback_url="http://127.0.0.1:9/callbacks/payture?t=tok",
        token="tok",
        customer_ref="tg1001",
        saved_card_id=card,
    )


async def pay(
    client: httpx.AsyncClient, payture: PaytureServer, url: str, outcome: str
) -> httpx.URL:
    answer = await client.post(f"{payture.url}/sandbox/pay", json={"url": url, "outcome": outcome})
    assert answer.status_code == 200, answer.text
    return httpx.URL(answer.json()["redirect"])


def inbound(url: httpx.URL) -> InboundRequest:
    return InboundRequest("GET", url.path, dict(url.params), {}, b"")


async def test_happy_path_and_forged_success_flag(client, payture, provider) -> None:
    checkout = await provider.create_checkout(request())
    assert "/apim/Pay?SessionId=" in checkout.pay_url
    ref = await provider.parse_return(
        InboundRequest("GET", "/", {"orderid": checkout.ref.payment_id, "success": "True"})
    )
    assert (await provider.fetch_status(ref.ref)).state is PaymentState.PENDING
    redirect = await pay(client, payture, checkout.pay_url, "paid")
    assert redirect.params["success"] == "True"
    ref = await provider.parse_return(inbound(redirect))
    status = await provider.fetch_status(ref.ref)
    assert status.state is PaymentState.PAID
    assert status.remaining == Money(45000, RUB)


async def test_failed_payment(client, payture, provider) -> None:
    checkout = await provider.create_checkout(request())
    ref = await provider.parse_return(
        inbound(await pay(client, payture, checkout.pay_url, "failed"))
    )
    assert (await provider.fetch_status(ref.ref)).state is PaymentState.FAILED


async def test_outage_and_garbage_answers_are_unavailable(client, payture, provider) -> None:
    checkout = await provider.create_checkout(request())
    ref = checkout.ref
    payture.getstate_status_override = 503
    with pytest.raises(ProviderUnavailable):
        await provider.fetch_status(ref)
    payture.getstate_status_override = None
    payture.malformed_xml = True
    with pytest.raises(ProviderUnavailable, match="malformed answer to GetState"):
        await provider.fetch_status(ref)


@pytest.mark.parametrize(
    "body",
    [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        '<GetState Success="True" State="&e;"/>',
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        '<GetState Success="True" State="&b;"/>',
    ],
)
async def test_hostile_xml_is_refused(payture, provider, body: str) -> None:
    payture.raw_answer = body  # external entities, entity expansion: refused, never resolved
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await provider.fetch_status(PaymentRef("tg-1-x"))


async def test_retried_checkouts_get_fresh_order_ids(client, payture, provider) -> None:
    first = await provider.create_checkout(request())
    second = await provider.create_checkout(request())
    assert first.ref.payment_id != second.ref.payment_id
    reused = await client.post(
        f"{payture.url}/apim/Init",
        data={
            "Key": payture.key,
            "Data": f"SessionType=Pay;OrderId={first.ref.payment_id};Amount=100",
        },
    )
    assert 'ErrCode="DUPLICATE_ORDER_ID"' in reused.text


@pytest.mark.parametrize(
    "data",
    [
        "SessionType=Pay;OrderId=raw-1;Amount=100;Url=http://x/r?a=1",
        "SessionType=Pay;OrderId=enc-1;Amount=100;Url=http%3A%2F%2Fx%2Fr%3Fa%3D1",
        "SessionType%3DPay%3BOrderId%3Dtwice-1%3BAmount%3D100",
    ],
)
async def test_the_emulator_reads_data_encoded_three_ways(client, payture, data: str) -> None:
    answer = await client.post(f"{payture.url}/apim/Init", data={"Key": payture.key, "Data": data})
    assert 'Success="True"' in answer.text


async def test_notifications_parse_and_dedupe(provider) -> None:
    body = (
        b"Notification=EnginePaySuccess&OrderId=tg-1-ab&Success=True&Amount=12677&ErrCode=NONE"
        b"&TransactionDate=08.05.2019+15%3A36%3A27&MerchantContract=Merchant"
    )
    first = await provider.parse_callback(
        InboundRequest("POST", "/callbacks/payture", {}, {}, body)
    )
    again = await provider.parse_callback(
        InboundRequest("POST", "/callbacks/payture", {}, {}, body)
    )
    assert first.ref.payment_id == "tg-1-ab"
    assert first.event_key == again.event_key
    assert first.hint == "EnginePaySuccess"


async def test_partial_then_full_refund(client, payture, provider) -> None:
    checkout = await provider.create_checkout(request())
    await pay(client, payture, checkout.pay_url, "paid")
    order_id = checkout.ref
    unpaid = await provider.create_checkout(request(2))
    refused = await provider.refund(unpaid.ref, Money(100, RUB), "k0")
    assert (refused.outcome, refused.provider_code) == (
        RefundOutcome.REJECTED,
        "ILLEGAL_ORDER_STATE",
    )

    partial = await provider.refund(order_id, Money(15000, RUB), "k1")
    assert partial.outcome is RefundOutcome.DONE
    assert partial.remaining == Money(30000, RUB)
    status = await provider.fetch_status(order_id)
    assert (status.state, status.remaining) == (PaymentState.PAID, Money(30000, RUB))
    beyond = await provider.refund(order_id, Money(30001, RUB), "k2")
    assert (beyond.outcome, beyond.provider_code) == (RefundOutcome.REJECTED, "AMOUNT_ERROR")
    full = await provider.refund(order_id, Money(30000, RUB), "k3")
    assert full.remaining == Money(0, RUB)
    status = await provider.fetch_status(order_id)
    assert status.state is PaymentState.REFUNDED


async def test_save_a_card_and_pay_with_it(client, payture, provider) -> None:
    session = await provider.open_card_session(
        "tg1001", ip="127.0.0.1", return_url="http://x/cards/t"
    )
    redirect = await pay(client, payture, session.pay_url, "paid")
    assert redirect.params["result"] == "True"
    cards = await provider.list_cards("tg1001")
    assert [c.card_name for c in cards] == ["411111xxxxxx1111"]
    assert await provider.list_cards("tg2002") == []
    checkout = await provider.create_checkout(request(card=cards[0].card_id))
    assert "/vwapi/Pay?SessionId=" in checkout.pay_url
    await pay(client, payture, checkout.pay_url, "paid")
    assert checkout.ref.data == {"wallet": "1"}
    status = await provider.fetch_status(checkout.ref)
    assert status.state is PaymentState.PAID
    refund = await provider.refund(checkout.ref, Money(45000, RUB), "k")
    assert refund.outcome is RefundOutcome.DONE


async def test_without_a_wallet_saved_cards_are_refused(client, payture) -> None:
    bare = PaytureProvider(client, base_url=payture.url, key=payture.key, password=payture.password)
    with pytest.raises(ProviderRejected):
        await bare.list_cards("tg1")


@pytest.mark.parametrize("state", sorted(STATUS_MAP))
async def test_every_state_of_the_map(client, payture, provider, state: str) -> None:
    checkout = await provider.create_checkout(request())
    payture.orders[checkout.ref.payment_id].state = state
    status = await provider.fetch_status(PaymentRef(checkout.ref.payment_id))
    assert status.state is STATUS_MAP[state]
    assert status.provider_status == state


async def test_unknown_states_stay_pending(client, payture, provider) -> None:
    checkout = await provider.create_checkout(request())
    payture.orders[checkout.ref.payment_id].state = "PendingSomethingNew"
    status = await provider.fetch_status(PaymentRef(checkout.ref.payment_id))
    assert status.state is PaymentState.PENDING


async def test_secrets_never_reach_logs_or_errors(client, payture, provider, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    checkout = await provider.create_checkout(request())
    await pay(client, payture, checkout.pay_url, "paid")
    await provider.refund(checkout.ref, Money(100, RUB), "k")
    await provider.open_card_session("tg1001", ip="127.0.0.1", return_url="http://x/c")
    payture.malformed_xml = True
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.refund(checkout.ref, Money(100, RUB), "k2")
    text = caplog.text + str(caught.value)
    assert "Refund" in caplog.text
    for secret in (payture.password, payture.wallet_password, WALLET_SECRET):
        assert secret not in text
