"""KTWidget / ktpay (Kazakhstan, KZT): a sealed transaction, KTWidget's hosted card page, and
a callback at the final status that is the only truth there is.

Seed: 003_842f113339f473e6.txt (Russian); corrections in PROVIDERS.md. The transaction is made
server-side as KTWidget's own JS client makes it in the browser: the order as compact JSON,
sealed with the merchant's public Sodium key (`crypto_box_seal`), base64, posted as text.
There is no status, cancel or refund API: the callback (authenticated by the per-order key in
its URL, and checked against the order by the core) is stored and is the truth; refunds are
made in the back office. The receipt PDF is sent to the customer once the order is paid.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox

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

NAME = "ktwidget"
API = "/api/v1/merchant-widget/payment"
# the callback's `status.status`; the seed's final ones are completed, error and denied
STATUS_MAP: dict[str, PaymentState] = {
    "completed": PaymentState.PAID,
    "error": PaymentState.FAILED,
    "denied": PaymentState.FAILED,
    "pending": PaymentState.PENDING,
    "authorized": PaymentState.PENDING,  # money held, clearing to come
    "success": PaymentState.PENDING,  # not cleared yet
}
# unknown app id; our sealing does not open (the app key is not the app's); the key expired
MISCONFIGURED_CODES = {"4010103", "4220102", "4220104"}
TENGE = AmountFormat(frozenset({"KZT"}), WireKind.DECIMAL, decimals=2, minimum=100)
# KTWidget retries a callback after 15 s, 60 s, 3 min, 10 min, 30 min and 60 min: the last try
# comes 1 h 44 min 15 s after the first. An order does not expire before it could arrive.
RETRIES = timedelta(seconds=15 + 60 + 180 + 600 + 1800 + 3600)
OK = json.dumps({"status": "ok"}, separators=(",", ":")).encode()
ID_LIMIT = 100
HASH = re.compile(r"[A-Za-z0-9_-]{8,100}")  # goes into our URLs as it is: nothing else passes


class KTWidgetProvider:
    name = NAME
    display_name = "Bank card (KTWidget)"
    capabilities = frozenset(
        {Capability.CALLBACKS, Capability.STATUS_IN_CALLBACK, Capability.RETURN, Capability.RECEIPT}
    )
    amount_format = TENGE
    confirm_window = RETRIES + timedelta(minutes=15)

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_url: str,
        widget_url: str,
        app_id: str,
        app_key: str,
        merchant_id: int,
        lifetime: timedelta = timedelta(minutes=30),
    ) -> None:
        try:
            self._box = SealedBox(PublicKey(base64.b64decode(app_key, validate=True)))
        except (binascii.Error, ValueError, CryptoError, TypeError):
            raise ValueError("KTWIDGET_APP_KEY is not a base64 Sodium public key") from None
        self._client = client
        self._api_url = api_url.rstrip("/")
        self._widget_url = widget_url.rstrip("/")
        self._app_id = app_id
        self._merchant_id = merchant_id
        self._lifetime = lifetime

    # --- the transaction ----------------------------------------------------------------

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        order_id = f"{request.order_id}-{secrets.token_hex(4)}"  # ours, unique per attempt
        order = {
            "order_id": order_id,
            "amount": TENGE.to_json(request.amount),
            "type": "ecom",
            "description": request.description[:250],
            "callback_post_url": request.callback_url,
            # straight back to us, past the widget's own receipt page
            "callback_force_success_url": with_query(request.return_url, "result=success"),
            "callback_force_failed_url": with_query(request.return_url, "result=failed"),
            "callback_back_url": request.return_url,
            "show_close_button": True,
        }
        plain = json.dumps({"order": order}, ensure_ascii=False, separators=(",", ":"))
        sealed = base64.b64encode(self._box.encrypt(plain.encode())).decode()
        response = await send(
            self._client,
            NAME,
            "POST",
            f"{self._api_url}{API}",
            content=sealed,
            headers={"Content-Type": "text/plain", "Auth-Identifier": self._app_id},
            keep_5xx=True,  # the body carries a 5000xxx code
        )
        data = _created(response)
        transaction = str(data.get("transaction_hash") or "")
        if not HASH.fullmatch(transaction):
            raise ProviderUnavailable("no transaction hash in the answer", provider=NAME)
        return Checkout(
            f"{self._widget_url}/payment-card?hash={transaction}",
            PaymentRef(transaction, {"order_id": order_id}),
            datetime.now(UTC) + self._lifetime,
        )

    # --- the callback: the truth --------------------------------------------------------

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        """The seed's JSON body at a final status (or an intermediate one: stored, not acted
        on). Whether it is about this order is the core's check against what it stored."""
        try:
            body = parse_json(request.body)
        except ValueError:
            raise BadCallback("the callback is not JSON", provider=NAME) from None
        if not isinstance(body, dict) or not isinstance(body.get("status"), dict):
            raise BadCallback("the callback has no status", provider=NAME)
        if str(body.get("merchant_id", "")) != str(self._merchant_id):
            raise BadCallback("another merchant's callback", provider=NAME, http_status=403)
        transaction, order_id = _text(body, "transaction_hash"), _text(body, "order_id")
        word = str(body["status"].get("status") or "").lower()[:20]
        state = STATUS_MAP.get(word, PaymentState.PENDING)
        try:
            amount = TENGE.from_wire(body.get("amount"), "KZT")
        except AmountNotRepresentable:
            raise BadCallback("the callback's amount is not a number", provider=NAME) from None
        ref = PaymentRef(transaction, {"order_id": order_id})
        status = PaymentStatus(
            state,
            paid=amount,
            provider_status=word,
            detail=_error_of(body["status"]) if state is PaymentState.FAILED else "",
            ref=ref,
        )
        return Inbound(ref, status=status, event_key=f"{transaction}:{word}")

    async def parse_return(self, request: InboundRequest) -> Inbound:
        """The customer's browser: it names nothing we did not give it; the stored callback
        decides."""
        return Inbound(None, hint=request.query.get("result", "")[:20])

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        raise ProviderRejected("KTWidget has no status API", provider=NAME, code="UNSUPPORTED")

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult:
        raise ProviderRejected(
            "KTWidget has no refund API; refund in its back office",
            provider=NAME,
            code="UNSUPPORTED",
        )

    def ack(self, ok: bool) -> Ack:
        """What KTWidget takes as "received": anything else and it tries again later."""
        if ok:
            return Ack(200, "application/json", OK)
        return Ack(503, "application/json", b'{"status":"retry"}')

    # --- the receipt --------------------------------------------------------------------

    async def receipt(self, ref: PaymentRef) -> bytes:
        """The payment's receipt as KTWidget renders it (a PDF)."""
        response = await send(
            self._client,
            NAME,
            "GET",
            f"{self._api_url}{API}/{ref.payment_id}/pdf",
            headers={"Auth-Identifier": self._app_id},
        )
        if response.status_code == 404:  # the PDF may be made a moment after the callback
            raise ProviderUnavailable("no receipt yet", provider=NAME, http_status=404)
        if response.status_code != 200 or not response.content.startswith(b"%PDF-"):
            raise classify(NAME, response.status_code, message="no receipt for this payment")
        return response.content


def _created(response: httpx.Response) -> dict[str, Any]:
    """The transaction's `data` from the success envelope, or the error either shape says:
    `{"response": {"success": true, "data": {...}}}` against `{"success": false, "error":
    {"code", "messages"|"message"}}`."""
    try:
        body = parse_json(response.content)
    except ValueError:
        raise classify(NAME, response.status_code, message="an answer that is not JSON") from None
    if not isinstance(body, dict):
        raise classify(NAME, response.status_code, message="an answer of another shape")
    answer = body.get("response") if isinstance(body.get("response"), dict) else body
    if answer.get("success") is True and response.is_success:  # the envelope, or bare
        data = answer.get("data")
        return data if isinstance(data, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    code = str(error.get("code", ""))
    if code.startswith("5000"):
        raise ProviderUnavailable("KTWidget failed", provider=NAME, code=code)
    raise classify(
        NAME,
        response.status_code,
        code,
        message=_refusal(error),
        misconfigured_codes=MISCONFIGURED_CODES,  # the admins are told, once
        rejected_codes={code} if code.startswith("422") else (),  # whatever the HTTP status
    )


def _refusal(error: dict[str, Any]) -> str:
    """Our words for the refusal, with the fields KTWidget names (never its text, which may
    echo what we sent)."""
    fields = error.get("messages") or error.get("validation") or {}
    names = sorted(str(k)[:40] for k in fields) if isinstance(fields, dict) else []
    return "KTWidget refused the transaction" + (f" (fields: {', '.join(names)})" if names else "")


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise BadCallback(f"the callback has no {key}", provider=NAME)
    text = str(value)
    if not text or len(text) > ID_LIMIT or not text.isprintable():
        raise BadCallback(f"the callback's {key} is not one", provider=NAME)
    return text


def _error_of(status: dict[str, Any]) -> str:
    error = status.get("error") if isinstance(status.get("error"), dict) else {}
    words = f"{error.get('error_type', '')}: {error.get('error_message', '')}".strip(": ")
    return words[:200]
