"""Test-only adapters for the provider kinds that have no real adapter yet: the callback is
the truth (like KTWidget), a bridge page we host (like Pocket) and a payment made in the chat
(like Stars). Each implements the Provider protocol and nothing of the core is replaced: tests
pass them to `BotApp(settings, providers=[...])`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import parse_qs

from money import AmountFormat, AmountNotRepresentable, Money, WireKind
from providers.base import (
    Ack,
    BadCallback,
    BridgeResult,
    BridgeWords,
    Capability,
    ChatPayment,
    Checkout,
    CheckoutRequest,
    Inbound,
    InboundRequest,
    ListedPayment,
    PaymentRef,
    PaymentState,
    PaymentStatus,
    ProviderRejected,
    RefundOutcome,
    RefundResult,
)

C = Capability


class CallbackTruthProvider:
    """Like KTWidget: no status API; the authenticated callback body is the truth."""

    name = "fake_ct"
    display_name = "Fake callback truth"
    capabilities = frozenset({C.CALLBACKS, C.STATUS_IN_CALLBACK})
    amount_format = AmountFormat(frozenset({"KZT"}), WireKind.DECIMAL, decimals=2)
    confirm_window = timedelta(hours=2)  # the provider retries its callback ~1 h 45 min

    def __init__(self) -> None:
        self.callback_urls: dict[int, str] = {}  # order id -> the URL we were told to post to
        self.status_queries = 0

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        self.callback_urls[request.order_id] = request.callback_url
        return Checkout(
            pay_url=f"http://fake-ct.invalid/pay/{request.order_id}",
            ref=PaymentRef(f"ct-{request.order_id}"),
        )

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        try:
            body = json.loads(request.body)
            order_id = int(body["order_id"])
            word = str(body["status"])
            paid = self.amount_format.from_wire(str(body["amount"]), "KZT")
        except (ValueError, KeyError, TypeError, AmountNotRepresentable):
            raise BadCallback("not a callback of ours", provider=self.name) from None
        state = {"completed": PaymentState.PAID, "error": PaymentState.FAILED}.get(
            word, PaymentState.PENDING
        )
        status = PaymentStatus(state, paid=paid, provider_status=word)
        key = f"ct:{order_id}:{word}:{body['amount']}"
        return Inbound(PaymentRef(f"ct-{order_id}"), status=status, event_key=key, hint=word)

    async def parse_return(self, request: InboundRequest) -> Inbound:
        return Inbound(None)

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        self.status_queries += 1
        raise ProviderRejected("no status API", provider=self.name)

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult:
        raise ProviderRejected("no refund API", provider=self.name)

    def ack(self, ok: bool) -> Ack:
        return Ack(200, "application/json", json.dumps({"status": "ok"}).encode())


class BridgeProvider:
    """Like Pocket: the Pay button opens our bridge page, whose POST (the customer's token)
    creates the invoice; a status API is the truth. Refunds too, for the refund tests.

    The test drives it: `states[payment_id] = (state, paid)` is what fetch_status answers,
    `status_error` / `refund_error` make those calls raise.
    """

    name = "fake_bridge"
    display_name = "Fake bridge"
    capabilities = frozenset({C.BRIDGE_PAGE, C.STATUS_API, C.CALLBACKS, C.REFUND, C.PARTIAL_REFUND})
    amount_format = AmountFormat(frozenset({"MNT"}), WireKind.DECIMAL, decimals=2)
    confirm_window = timedelta(minutes=5)
    PAGE = b"<!doctype html><html><body><form method=post><input name=token></form></body></html>"

    def __init__(self) -> None:
        self.invoices = 0
        self.states: dict[str, tuple[PaymentState, Money | None]] = {}
        self.status_error: Exception | None = None
        self.refund_error: Exception | None = None
        self.status_queries: list[PaymentRef] = []
        self.refunds: list[tuple[str, Money, str]] = []

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        return Checkout(pay_url=request.bridge_url, ref=None)

    async def bridge(
        self,
        request: InboundRequest,
        checkout: CheckoutRequest,
        words: BridgeWords,
        opened: PaymentRef | None,
    ) -> BridgeResult:
        if request.method == "GET":
            return BridgeResult(Ack(200, "text/html", self.PAGE))
        form = parse_qs(request.body.decode("utf-8", "replace"))
        if form.get("token") != ["good"]:
            return BridgeResult(Ack(400, "text/html", b"<p>That token was refused.</p>"))
        self.invoices += 1
        ref = PaymentRef(f"inv-{self.invoices}", {"terminal": "t1"})
        self.states.setdefault(ref.payment_id, (PaymentState.PENDING, None))
        return BridgeResult(Ack(200, "text/html", b"<p>Invoice opened.</p>"), ref)

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        try:
            payment_id = str(json.loads(request.body)["invoice_id"])
        except (ValueError, KeyError, TypeError):
            raise BadCallback("not a callback of ours", provider=self.name) from None
        return Inbound(PaymentRef(payment_id, {"terminal": "t1"}), hint="callback")

    async def parse_return(self, request: InboundRequest) -> Inbound:
        return Inbound(None)

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        self.status_queries.append(ref)
        if self.status_error is not None:
            raise self.status_error
        if dict(ref.data) != {"terminal": "t1"}:
            raise ProviderRejected("the ref's data did not come back", provider=self.name)
        if ref.payment_id not in self.states:
            raise ProviderRejected("unknown invoice", provider=self.name, code="NOT_FOUND")
        state, paid = self.states[ref.payment_id]
        return PaymentStatus(state, paid=paid, provider_status=state.value)

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult:
        if self.refund_error is not None:
            raise self.refund_error
        self.refunds.append((ref.payment_id, amount, key))
        return RefundResult(RefundOutcome.DONE, amount)

    def ack(self, ok: bool) -> Ack:
        return Ack(200, "application/json", b'{"ok":true}')


class InChatProvider:
    """Like Telegram Stars: the invoice is paid inside the chat and Telegram's
    `successful_payment` (authenticated by the Bot API) is the truth."""

    name = "fake_chat"
    display_name = "Fake stars"
    capabilities = frozenset({C.IN_CHAT})
    amount_format = AmountFormat(frozenset({"XTR"}), WireKind.MINOR, decimals=0)
    confirm_window = timedelta(minutes=5)

    def __init__(self) -> None:
        self.status_queries = 0

    @staticmethod
    def payload(order_id: int) -> str:
        return f"order-{order_id}"

    def order_of(self, payload: str) -> int | None:
        prefix, _, order_id = payload.partition("-")
        return int(order_id) if prefix == "order" and order_id.isdigit() else None

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        return Checkout("https://t.me/invoice/fake", None)  # the charge id comes with the payment

    def parse_chat_payment(self, payment: ChatPayment) -> Inbound:
        ref = PaymentRef(payment.charge_id, {"user_id": str(payment.user_id)})
        status = PaymentStatus(
            PaymentState.PAID, paid=Money(payment.total_amount, payment.currency), ref=ref
        )
        return Inbound(ref, status=status, event_key=payment.charge_id)

    async def listed_payments(self, since: datetime) -> list[ListedPayment]:
        return []

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        raise BadCallback("payments arrive in the chat", provider=self.name)

    async def parse_return(self, request: InboundRequest) -> Inbound:
        return Inbound(None)

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        self.status_queries += 1
        raise ProviderRejected("no status API", provider=self.name)

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult:
        raise ProviderRejected("no refund here", provider=self.name)

    def ack(self, ok: bool) -> Ack:
        return Ack()


def bridge_words(order: object, provider: object) -> BridgeWords:
    """The words of a bridge page, each its own name: what tests of the core pass."""
    names = BridgeWords.__dataclass_fields__
    return BridgeWords(**{name: name for name in names})
