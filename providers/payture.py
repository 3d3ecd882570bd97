"""Payture (Russia, RUB in kopecks): InPay one-off payments, GetState as the only truth, API
refunds, and saved cards through EWallet (seed 004 and PROVIDERS.md).

Every command is a form POST to `{host}/{apim|vwapi}/{Command}` answered with one XML element
`<Command Success="True|False|3DS" .../>`, parsed with defusedxml. The `{success}` flag in the
return URL and the unsigned notifications only say which order to look at.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote
from xml.etree.ElementTree import Element, ParseError

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from money import AmountFormat, Money, WireKind
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
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
    RefundOutcome,
    RefundResult,
    SavedCardInfo,
)
from providers.http import send

NAME = "payture"
SESSION_LIFETIME = timedelta(minutes=60)
# GetState's State, per Payture's current reference; anything else stays pending.
STATUS_MAP: dict[str, PaymentState] = {
    "Charged": PaymentState.PAID,
    "Refunded": PaymentState.REFUNDED,
    "Voided": PaymentState.FAILED,
    "Rejected": PaymentState.FAILED,
    "Error": PaymentState.FAILED,
    "Chargeback": PaymentState.NEEDS_REVIEW,
    "New": PaymentState.PENDING,
    "PreAuthorized3DS": PaymentState.PENDING,
    "PreAuthorizedAF": PaymentState.PENDING,
    "Authorized": PaymentState.PENDING,  # blocked, not charged: a Pay session charges next
    "Forwarded": PaymentState.PENDING,
    "Obsolete": PaymentState.PENDING,  # session ended unpaid; our deadline expires the order
    "AuthorizationClosed": PaymentState.PENDING,
}
REFUND_ERRORS = {
    "ILLEGAL_ORDER_STATE": "the order is not charged (nothing to refund)",
    "AMOUNT_ERROR": "the amount exceeds what is left on the order",
    "ORDER_NOT_FOUND": "Payture does not know this order",
    "ORDER_TIME_OUT": "the order is too old to refund",
    "ACCESS_DENIED": "Payture refused our terminal credentials",
    "WRONG_PARAMS": "Payture refused the request parameters",
}
WALLET = {"wallet": "1"}  # PaymentRef.data of an EWallet payment: status and refund go to vwapi
KOPECKS = AmountFormat(frozenset({"RUB"}), WireKind.MINOR, minimum=100)


class PaytureProvider:
    name = NAME
    display_name = "Bank card (Payture)"
    amount_format = KOPECKS
    confirm_window = timedelta(minutes=10)  # GetState may lag the end of a 3-D Secure step

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        key: str,
        password: str,
        wallet_key: str | None = None,
        wallet_password: str | None = None,
        wallet_secret: str | None = None,
        session_type: str = "Pay",
        order_prefix: str = "tg",
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._key = key
        self._password = password
        self._wallet_key = wallet_key
        self._wallet_password = wallet_password or ""
        self._wallet_secret = wallet_secret
        self._session_type = session_type
        self._prefix = order_prefix
        caps = {
            Capability.CALLBACKS,
            Capability.RETURN,
            Capability.STATUS_API,
            Capability.REFUND,
            Capability.PARTIAL_REFUND,
        }
        if self.wallet_enabled:
            caps.add(Capability.SAVED_CARDS)
        self.capabilities = frozenset(caps)

    @property
    def wallet_enabled(self) -> bool:
        return bool(self._wallet_key and self._wallet_secret)

    # --- checkout -----------------------------------------------------------------------

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        amount = str(self.amount_format.to_wire(request.amount))
        wallet = request.saved_card_id is not None
        if wallet:
            self._need_wallet()
        order_id = f"{self._prefix}-{request.order_id}-{secrets.token_hex(4)}"
        data = {
            "SessionType": self._session_type,
            "OrderId": order_id,
            "Amount": amount,
            "IP": request.customer_ip,
            "Url": _with_query(request.return_url, "orderid={orderid}&success={success}"),
            "Language": "RU" if request.locale == "ru" else "EN",
        }
        if wallet:
            data |= {
                **self._wallet_user(request.customer_ref),
                "CardId": str(request.saved_card_id),
            }
            answer = await self._call("vwapi", "Init", VWID=self._wallet_key, DATA=_data(data))
            page = f"{self._base}/vwapi/Pay?SessionId="
        else:
            data |= {
                "Product": request.description[:50],
                "Total": str(request.amount.to_decimal()),
                "Description": request.description[:250],
            }
            answer = await self._call("apim", "Init", Key=self._key, Data=_data(data))
            page = f"{self._base}/apim/Pay?SessionId="
        self._require_success(answer, "Init")
        session = answer.get("sessionid", "")
        if not session:
            raise ProviderUnavailable("Init answered without a SessionId", provider=NAME)
        ref = PaymentRef(order_id, WALLET if wallet else {})
        return Checkout(page + quote(session), ref, datetime.now(UTC) + SESSION_LIFETIME)

    async def parse_return(self, request: InboundRequest) -> Inbound:
        """The orderid only names the payment; the order's stored ref says which API it is on."""
        order_id = request.query.get("orderid", "")
        if not order_id or len(order_id) > 50:
            raise BadCallback("the return carries no Payture orderid", provider=NAME)
        hint = f"success={request.query.get('success', '')[:10]}"
        return Inbound(PaymentRef(order_id), hint=hint)

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        try:
            fields = form_fields(request.body.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadCallback("notification is not UTF-8 form data", provider=NAME) from None
        notification, order_id = fields.get("Notification", ""), fields.get("OrderId", "")
        if not notification or not order_id or len(order_id) > 50:
            raise BadCallback("not a Payture notification", provider=NAME)
        when = fields.get("TransactionDate", "")
        key = f"{notification}:{order_id}:{fields.get('Amount', '')}:{when}"
        return Inbound(PaymentRef(order_id), event_key=key[:200], hint=notification)

    def ack(self, ok: bool) -> Ack:
        return Ack(200, "text/plain", b"OK")

    # --- status and refunds -------------------------------------------------------------

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        """GetState. Its Amount is what is left on the payment: after a partial refund the
        State stays Charged with the reduced Amount. So it is reported as `remaining`."""
        order_id = ref.payment_id
        if self._on_wallet(ref):
            answer = await self._call("vwapi", "GetState", VWID=self._wallet_key, OrderId=order_id)
        else:
            answer = await self._call("apim", "GetState", Key=self._key, OrderId=order_id)
        if answer.get("success", "").lower() != "true":
            code = answer.get("errcode", "")
            if code in ("", "NONE"):  # seen for orders still being paid
                return PaymentStatus(PaymentState.PENDING, provider_status="NONE")
            if code == "ORDER_NOT_FOUND":
                raise ProviderRejected("Payture does not know this order", provider=NAME, code=code)
            if code == "ACCESS_DENIED":
                raise ProviderMisconfigured(REFUND_ERRORS[code], provider=NAME, code=code)
            raise ProviderUnavailable("GetState failed", provider=NAME, code=code)
        state = answer.get("state", "")
        mapped = STATUS_MAP.get(state, PaymentState.PENDING)
        return PaymentStatus(
            mapped, remaining=_kopecks(answer.get("amount")), provider_status=state
        )

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult:
        payment_id = ref.payment_id
        if self._on_wallet(ref):
            data = _data(
                {
                    "OrderId": payment_id,
                    "Amount": str(amount.amount),
                    "Password": self._wallet_password,
                }
            )
            answer = await self._call("vwapi", "Refund", VWID=self._wallet_key, DATA=data)
        else:
            answer = await self._call(
                "apim",
                "Refund",
                Key=self._key,
                Password=self._password,
                OrderId=payment_id,
                Amount=str(amount.amount),
            )
        if answer.get("success", "").lower() == "true":
            return RefundResult(
                RefundOutcome.DONE, amount, _kopecks(answer.get("newamount")), "NONE"
            )
        code = answer.get("errcode", "UNKNOWN")
        return RefundResult(
            RefundOutcome.REJECTED,
            Money(0, "RUB"),
            None,
            code,
            REFUND_ERRORS.get(code, f"Payture refused the refund ({code})"),
        )

    # --- saved cards (EWallet) ----------------------------------------------------------

    async def open_card_session(self, customer_ref: str, *, ip: str, return_url: str) -> Checkout:
        """An EWallet `Add` session: the customer enters a card on Payture's page, which sends
        the browser back to `return_url` with `result=True|False`."""
        self._need_wallet()
        data = {
            "SessionType": "Add",
            **self._wallet_user(customer_ref),
            "IP": ip,
            "Url": _with_query(return_url, "result={success}"),
        }
        answer = await self._call("vwapi", "Init", VWID=self._wallet_key, DATA=_data(data))
        self._require_success(answer, "Init")
        session = answer.get("sessionid", "")
        return Checkout(
            f"{self._base}/vwapi/Add?SessionId={quote(session)}",
            None,
            datetime.now(UTC) + SESSION_LIFETIME,
        )

    async def list_cards(self, customer_ref: str) -> list[SavedCardInfo]:
        self._need_wallet()
        element = await self._element(
            "vwapi", "GetList", VWID=self._wallet_key, DATA=_data(self._wallet_user(customer_ref))
        )
        attrs = _attrs(element)
        if attrs.get("success", "").lower() != "true":
            code = attrs.get("errcode", "")
            if code == "USER_NOT_FOUND":
                return []
            raise ProviderUnavailable("GetList failed", provider=NAME, code=code)
        cards = []
        for item in element:
            card = _attrs(item)
            usable = (
                card.get("status", "IsActive") == "IsActive"
                and card.get("expired", "false").lower() != "true"
            )
            if usable and card.get("cardid") and card.get("cardname"):
                cards.append(SavedCardInfo(card["cardid"], card["cardname"]))
        return cards

    def _wallet_user(self, customer_ref: str) -> dict[str, str]:
        """The customer's wallet login and password, derived from our secret: never stored,
        never shown."""
        assert self._wallet_secret is not None
        digest = hmac.new(self._wallet_secret.encode(), customer_ref.encode(), hashlib.sha256)
        return {
            "VWUserLgn": f"{self._prefix}{digest.hexdigest()[:24]}",
            "VWUserPsw": digest.hexdigest()[24:56],
        }

    def _on_wallet(self, ref: PaymentRef) -> bool:
        return ref.data.get("wallet") == "1" and self.wallet_enabled

    def _need_wallet(self) -> None:
        if not self.wallet_enabled:
            raise ProviderRejected(
                "saved cards need the EWallet terminal", provider=NAME, code="NO_WALLET"
            )

    # --- wire ---------------------------------------------------------------------------

    async def _call(self, api: str, command: str, **fields: str | None) -> dict[str, str]:
        return _attrs(await self._element(api, command, **fields))

    async def _element(self, api: str, command: str, **fields: str | None) -> Element:
        response = await send(
            self._client,
            NAME,
            "POST",
            f"{self._base}/{api}/{command}",
            data={k: v for k, v in fields.items() if v is not None},
        )
        try:
            element = fromstring(response.content)
        except (ParseError, DefusedXmlException, ValueError):
            raise ProviderUnavailable(
                f"malformed answer to {command} from Payture",
                provider=NAME,
                http_status=response.status_code,
            ) from None
        if element.tag.lower() != command.lower():
            raise ProviderUnavailable(
                f"unexpected answer <{element.tag}> to {command}", provider=NAME
            )
        return element

    @staticmethod
    def _require_success(answer: dict[str, str], command: str) -> None:
        if answer.get("success", "").lower() != "true":
            raise ProviderRejected(
                f"{command} refused", provider=NAME, code=answer.get("errcode", "")
            )


def _attrs(element: Element) -> dict[str, str]:
    return {k.lower(): v for k, v in element.attrib.items()}


def form_fields(text: str) -> dict[str, str]:
    """A form body's fields, as `parse_qsl` with blank values kept (the last of a repeated
    name wins). A notification with nothing escaped is split as it is: parse_qsl unquotes
    every name and value, three times the cost, on every callback."""
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    return {
        name: value for name, _, value in (part.partition("=") for part in text.split("&") if part)
    }


def _data(fields: dict[str, str]) -> str:
    """Payture's `k=v;k=v` with each value percent-encoded (safe when a value has ; or =)."""
    return ";".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _kopecks(value: str | None) -> Money | None:
    if value is None or not value.strip().isascii() or not value.strip().isdigit():
        return None
    return KOPECKS.from_wire(value, "RUB")
