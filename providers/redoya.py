"""Redoya (Turkey, TRY): a JWT order token in the Pay URL, the customer's return with Redoya's
order id, and a verify call that is the only source of truth.

Seed: 001_504fafcf2e5ab239.txt; corrections in PROVIDERS.md. Redoya has no server callback and
no refund API. Anyone holding a Pay link may be able to mint a token with another price, so the
amount, currency and test mode of every verify answer are checked (here and in confirm).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt

from money import AmountFormat, AmountNotRepresentable, Money, WireKind
from providers.base import (
    Ack,
    BadCallback,
    Capability,
    Checkout,
    CheckoutRequest,
    Inbound,
    InboundRequest,
    PaymentRef,
    PaymentState,
    PaymentStatus,
    ProviderRejected,
    ProviderUnavailable,
    RefundResult,
)
from providers.http import classify, parse_json, send, with_query

NAME = "redoya"
# verify answers with a body `status`
STATUS_MAP: dict[str, PaymentState] = {
    "success": PaymentState.PAID,
    "failed": PaymentState.FAILED,
}
# MoleculerError `type`s of the document; 404 UNKNOWN_ORDER is raised as ProviderRejected
ERROR_MAP: dict[str, PaymentState] = {
    "NOT_CONFIRMED_YET": PaymentState.PENDING,
    "ORDER_TIMED_OUT": PaymentState.EXPIRED,
}
FINAL_ERRORS = {
    "UNKNOWN_ORDER": "Redoya does not know this order",
    "UNKNOWN_ERROR": "Redoya failed to answer",
}
ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")
URL_LENGTH = (16, 1200)  # the seed says 10; Redoya's own client validates 16
LIFETIME = (timedelta(minutes=11), timedelta(days=365))  # what Redoya's client accepts
KURUS = AmountFormat(frozenset({"TRY"}), WireKind.MINOR)  # payment_amount: lira x100, a string


class RedoyaProvider:
    name = NAME
    display_name = "Redoya"
    capabilities = frozenset({Capability.RETURN, Capability.STATUS_API})
    confirm_window = timedelta(minutes=5)  # a payment made in the token's last second settles

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_url: str,
        pay_url: str,
        secret: str,
        identifier: str,
        test_mode: bool = False,
        token_lifetime: timedelta = timedelta(minutes=15),
        decimal_prices: bool = False,
    ) -> None:
        if not LIFETIME[0] <= token_lifetime <= LIFETIME[1]:
            raise ValueError("Redoya token lifetime must be between 11 minutes and 1 year")
        self._client = client
        self._api_url = api_url.rstrip("/")
        self._pay_url = pay_url.rstrip("/")
        self._secret = secret
        self._identifier = identifier
        self.test_mode = test_mode
        self.token_lifetime = token_lifetime
        self.amount_format = AmountFormat(
            currencies=frozenset({"TRY"}),
            kind=WireKind.DECIMAL if decimal_prices else WireKind.WHOLE,
            minimum=300,
            maximum=100_000,
        )

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        now = datetime.now(UTC)
        expires = now + self.token_lifetime
        claims = {
            # whole lira by default; with decimal prices on, a JSON number that prints back
            # exactly (to_json refuses one that would not)
            "price": self.amount_format.to_json(request.amount),
            "successfulURL": with_query(request.return_url, "result=success&order_id={order_id}"),
            "failURL": with_query(request.return_url, "result=fail&order_id={order_id}"),
            "isInTestMode": 1 if self.test_mode else 0,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        for key in ("successfulURL", "failURL"):
            if not URL_LENGTH[0] <= len(claims[key]) <= URL_LENGTH[1]:
                raise ProviderRejected(
                    f"{key} must be {URL_LENGTH[0]}..{URL_LENGTH[1]} characters",
                    provider=NAME,
                    code="URL_LENGTH",
                )
        token = jwt.encode(claims, self._secret, algorithm="HS256")
        return Checkout(f"{self._pay_url}/checkout#{token}#{self._identifier}", None, expires)

    async def parse_return(self, request: InboundRequest) -> Inbound:
        order_id = request.query.get("order_id", "")
        if not ORDER_ID.match(order_id):
            raise BadCallback("the return carries no valid Redoya order id", provider=NAME)
        return Inbound(PaymentRef(order_id), hint=request.query.get("result", "")[:20])

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        raise BadCallback("Redoya sends no callbacks", provider=NAME, http_status=404)

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        order_id = ref.payment_id
        if not ORDER_ID.match(order_id):
            raise ProviderRejected("not a Redoya order id", provider=NAME, code="BAD_ID")
        response = await send(
            self._client,
            NAME,
            "POST",
            f"{self._api_url}/api/v1/order/verify/{order_id}",
            json={"identifier": self._identifier},
            keep_5xx=True,  # a MoleculerError body says what went wrong
        )
        try:
            body = parse_json(response.content)
        except ValueError:
            raise ProviderUnavailable(
                "verify answered something that is not JSON",
                provider=NAME,
                http_status=response.status_code,
            ) from None
        if not isinstance(body, dict):
            raise ProviderUnavailable(
                "verify answered an unexpected shape",
                provider=NAME,
                http_status=response.status_code,
            )
        if "status" in body and response.status_code == 200:
            return self._payment(body)
        return self._error(response.status_code, body)

    def _payment(self, body: dict[str, Any]) -> PaymentStatus:
        status = str(body.get("status", "")).lower()
        state = STATUS_MAP.get(status, PaymentState.PENDING)
        if state is PaymentState.FAILED:
            reason = f"{body.get('failed_reason_code', '')} {body.get('failed_reason_msg', '')}"
            return PaymentStatus(state, provider_status=status, detail=reason.strip()[:200])
        if state is not PaymentState.PAID:
            return PaymentStatus(state, provider_status=status)
        paid = _kurus(body.get("payment_amount"))
        if paid is None:
            return _review(None, status, "no payment_amount")
        currency = str(body.get("currency", ""))
        if currency.upper() not in ("TL", "TRY"):
            return _review(paid, status, f"currency {currency!r} is not TL")
        test_mode = str(body.get("testMode", "0")).strip() in ("1", "true", "True")
        if test_mode != self.test_mode:
            setup = "test" if self.test_mode else "live"
            return _review(paid, status, f"testMode={int(test_mode)} on a {setup} setup")
        return PaymentStatus(
            PaymentState.PAID, paid, provider_status=status, detail=f"uses={body.get('uses', '')}"
        )

    def _error(self, http_status: int, body: dict[str, Any]) -> PaymentStatus:
        kind = str(body.get("type", ""))
        if kind in ERROR_MAP:
            return PaymentStatus(ERROR_MAP[kind], provider_status=kind)
        if kind in FINAL_ERRORS or http_status in (401, 403, 404) or http_status >= 500:
            raise classify(
                NAME,
                http_status,
                kind,
                message=FINAL_ERRORS.get(kind, "verify failed"),
                unavailable_codes={"UNKNOWN_ERROR"},
                rejected_codes={"UNKNOWN_ORDER"},
            )
        return PaymentStatus(PaymentState.PENDING, provider_status=kind or f"HTTP {http_status}")

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult:
        raise ProviderRejected(
            "Redoya has no refund API; refund by hand", provider=NAME, code="UNSUPPORTED"
        )

    def ack(self, ok: bool) -> Ack:
        return Ack(200, "text/plain", b"OK")


def _review(paid: Money | None, status: str, why: str) -> PaymentStatus:
    return PaymentStatus(PaymentState.NEEDS_REVIEW, paid, provider_status=status, detail=why)


def _kurus(value: object) -> Money | None:
    """'15000' (lira x100, a string in the document; tolerate numbers) -> 150.00 TRY."""
    try:
        paid = KURUS.from_wire(value, "TRY")
    except AmountNotRepresentable:
        return None
    return paid if paid.amount >= 0 else None
