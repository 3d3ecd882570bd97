"""Redoya (Turkey, TRY): a JWT order token in the Pay URL, the customer's return with Redoya's
order id, and a verify call that is the only source of truth.

Seed: 001_504fafcf2e5ab239.txt; corrections in PROVIDERS.md. Redoya has no server callback and
no refund API. Anyone holding a Pay link may be able to mint a token with another price, so the
amount, currency and test mode of every verify answer are checked (here and in confirm).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import jwt

from providers.base import (
    Ack,
    AmountFormat,
    BadCallback,
    Capability,
    Checkout,
    CheckoutRequest,
    InboundRequest,
    Money,
    PaymentRef,
    PaymentState,
    PaymentStatus,
    ProviderRejected,
    ProviderUnavailable,
    RefundResult,
    send,
)

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
ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")
URL_LENGTH = (16, 1200)  # the seed says 10; Redoya's own client validates 16
LIFETIME = (timedelta(minutes=11), timedelta(days=365))  # what Redoya's client accepts


class RedoyaProvider:
    name = NAME

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
        self.capabilities = frozenset({Capability.RETURN, Capability.POLLING})
        self.amount_format = AmountFormat(
            currencies=frozenset({"TRY"}),
            decimals=2 if decimal_prices else 0,
            minimum=300,
            maximum=100_000,
        )

    def check_amount(self, amount: Money) -> None:
        self.amount_format.check(amount)

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        price = self.amount_format.to_wire(request.amount)
        now = datetime.now(UTC)
        expires = now + self.token_lifetime
        claims = {
            # JSON has one number type. Whole lira go as an int; with decimal prices on, a float
            # of at most 1000.00 is written back exactly (Python prints the shortest repr).
            "price": int(price) if self.amount_format.decimals == 0 else float(price),
            "successfulURL": _with_query(request.return_url, "result=success&order_id={order_id}"),
            "failURL": _with_query(request.return_url, "result=fail&order_id={order_id}"),
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

    async def parse_return(self, request: InboundRequest) -> PaymentRef:
        order_id = request.query.get("order_id", "")
        if not ORDER_ID.match(order_id):
            raise BadCallback("the return carries no valid Redoya order id", provider=NAME)
        return PaymentRef(order_id, hint=request.query.get("result", "")[:20])

    async def parse_callback(self, request: InboundRequest) -> PaymentRef:
        raise BadCallback("Redoya sends no callbacks", provider=NAME, http_status=404)

    async def fetch_status(self, ref: PaymentRef, expected: Money) -> PaymentStatus:
        order_id = ref.provider_payment_id or ""
        if not ORDER_ID.match(order_id):
            raise ProviderRejected("not a Redoya order id", provider=NAME, code="BAD_ID")
        response = await send(
            self._client,
            NAME,
            "POST",
            f"{self._api_url}/api/v1/order/verify/{order_id}",
            json={"identifier": self._identifier},
        )
        try:
            body = response.json()
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
            return self._payment(order_id, body)
        return self._error(order_id, response.status_code, body)

    def _payment(self, order_id: str, body: dict[str, Any]) -> PaymentStatus:
        status = str(body.get("status", "")).lower()
        state = STATUS_MAP.get(status, PaymentState.PENDING)
        if state is PaymentState.FAILED:
            reason = f"{body.get('failed_reason_code', '')} {body.get('failed_reason_msg', '')}"
            return PaymentStatus(state, order_id, None, status, reason.strip()[:200])
        if state is not PaymentState.PAID:
            return PaymentStatus(state, order_id, None, status)
        amount = _kurus(body.get("payment_amount"))
        if amount is None:
            return PaymentStatus(
                PaymentState.NEEDS_REVIEW, order_id, None, status, "no payment_amount"
            )
        paid = Money(amount, "TRY")
        currency = str(body.get("currency", ""))
        if currency.upper() not in ("TL", "TRY"):
            return PaymentStatus(
                PaymentState.NEEDS_REVIEW,
                order_id,
                paid,
                status,
                f"currency {currency!r} is not TL",
            )
        test_mode = str(body.get("testMode", "0")).strip() in ("1", "true", "True")
        if test_mode != self.test_mode:
            return PaymentStatus(
                PaymentState.NEEDS_REVIEW,
                order_id,
                paid,
                status,
                f"testMode={int(test_mode)} on a {'test' if self.test_mode else 'live'} setup",
            )
        return PaymentStatus(
            PaymentState.PAID, order_id, paid, status, f"uses={body.get('uses', '')}"
        )

    def _error(self, order_id: str, http_status: int, body: dict[str, Any]) -> PaymentStatus:
        kind = str(body.get("type", ""))
        if kind in ERROR_MAP:
            return PaymentStatus(ERROR_MAP[kind], order_id, None, kind)
        if kind == "UNKNOWN_ORDER" or http_status == 404:
            raise ProviderRejected(
                "Redoya does not know this order",
                provider=NAME,
                http_status=http_status,
                code=kind or "UNKNOWN_ORDER",
            )
        if http_status >= 500 or kind == "UNKNOWN_ERROR":
            raise ProviderUnavailable(
                "Redoya failed to answer", provider=NAME, http_status=http_status, code=kind
            )
        if http_status in (401, 403):
            raise ProviderRejected(
                "Redoya refused our identifier", provider=NAME, http_status=http_status, code=kind
            )
        return PaymentStatus(PaymentState.PENDING, order_id, None, kind or f"HTTP {http_status}")

    async def refund(self, payment_id: str, amount: Money, key: str) -> RefundResult:
        raise ProviderRejected(
            "Redoya has no refund API; refund by hand", provider=NAME, code="UNSUPPORTED"
        )

    def ack(self, ok: bool) -> Ack:
        return Ack(200, "text/plain", b"OK")


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _kurus(value: object) -> int | None:
    """'15000' (lira x100, a string in the document; tolerate numbers) -> 15000."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if amount != amount.to_integral_value() or amount < 0:
        return None
    return int(amount)
