"""Telegram Stars (XTR): a native invoice in the chat, paid without leaving Telegram.

The Bot API is the provider, reached through the `TelegramPayments` port that bot/ injects.
Telegram's `successful_payment` is the truth (the Bot API authenticates it) and its
`telegram_payment_charge_id` is the payment's id; the bot's star ledger (`getStarTransactions`)
lists every charge and refund under that id, so it answers for a lost update and for a
refund whose answer was cut off. Refunds are whole (`refundStarPayment`).

The invoice payload names the order and carries an HMAC, so a payload cannot be forged into
paying (or confirming) another order. PROVIDERS.md, "Telegram Stars".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from money import AmountFormat, Money, WireKind
from providers.base import (
    Ack,
    BadCallback,
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
    StarTransaction,
    TelegramPayments,
)

NAME = "stars"
STARS = AmountFormat(frozenset({"XTR"}), WireKind.MINOR, minimum=1, maximum=100_000)
PAYLOAD_PREFIX = "s1"  # the payload's version: "s1.<order id>.<signature>"
SIGNATURE_CHARS = 22  # 132 bits of HMAC-SHA256, base64url
DESCRIPTION_LIMIT = 255  # Telegram's
ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"
PAGE = 100  # getStarTransactions' largest page
SEARCH_PAGES = 50  # how far back a charge is looked for before "the ledger does not say"


class StarsProvider:
    name = NAME
    display_name = "Telegram Stars"
    capabilities = frozenset(
        {Capability.IN_CHAT, Capability.REFUND, Capability.STATUS_API}  # the ledger
    )
    amount_format = STARS
    confirm_window = timedelta(minutes=5)

    def __init__(
        self,
        payments: TelegramPayments,
        *,
        secret: str,
        invoice_lifetime: timedelta = timedelta(hours=1),
    ) -> None:
        if not secret:
            raise ValueError("Stars needs a secret to sign invoice payloads")
        self._payments = payments
        self._secret = secret.encode()
        self._lifetime = invoice_lifetime

    # --- the payload ----------------------------------------------------------------------

    def _signature(self, order_id: int) -> str:
        digest = hmac.new(self._secret, f"{NAME}:{order_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]

    def payload(self, order_id: int) -> str:
        return f"{PAYLOAD_PREFIX}.{order_id}.{self._signature(order_id)}"

    def order_of(self, payload: str) -> int | None:
        version, _, rest = payload.partition(".")
        order, _, signature = rest.partition(".")
        if version != PAYLOAD_PREFIX or not (order.isascii() and order.isdigit()):
            return None
        if len(order) > 18 or order != str(int(order)):  # one spelling per order
            return None
        if not hmac.compare_digest(signature, self._signature(int(order))):
            return None
        return int(order)

    # --- the contract ---------------------------------------------------------------------

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """An invoice message in the customer's chat; its Pay button is the order's. Sent
        again for the same order, it carries the same payload."""
        STARS.check(request.amount)
        await self._payments.send_invoice(
            chat_id=request.user_id,
            order_id=request.order_id,
            locale=request.locale,
            description=_clip(request.description or f"Order {request.order_id}"),
            payload=self.payload(request.order_id),
            amount=request.amount,
        )
        # the charge id comes with the payment: until then the order has no payment id
        return Checkout("", None, datetime.now(UTC) + self._lifetime)

    def parse_chat_payment(self, payment: ChatPayment) -> Inbound:
        ref = _ref(payment.charge_id, payment.user_id, payment.at)
        status = PaymentStatus(
            PaymentState.PAID,
            paid=_paid(payment.total_amount, payment.currency),
            provider_status="successful_payment",
            ref=ref,
        )
        return Inbound(ref, status=status, event_key=payment.charge_id)

    async def listed_payments(self, since: datetime) -> list[ListedPayment]:
        """The users' payments to the bot since then, with whether each was refunded."""
        lines = await self._tail(since)
        refunded = {t.id for t in lines if not t.incoming}
        return [
            ListedPayment(_as_payment(t), refunded=t.id in refunded)
            for t in lines
            if t.incoming and t.user_id is not None and t.at >= since
        ]

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        """What the ledger says of one charge: paid, or refunded; ProviderRejected when it is
        not found where it should be."""
        since = _at(ref) - timedelta(days=1)
        lines = [t for t in await self._tail(since, SEARCH_PAGES) if t.id == ref.payment_id]
        paid = next((t for t in lines if t.incoming), None)
        if paid is None:
            raise ProviderRejected("the star ledger does not list this charge", provider=NAME)
        amount = Money(paid.amount, "XTR")
        if any(not t.incoming for t in lines):
            return PaymentStatus(PaymentState.REFUNDED, amount, Money.zero("XTR"), "refunded")
        return PaymentStatus(PaymentState.PAID, amount, amount, "paid")

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult:
        """Whole charges only (the core refuses a partial amount before this). Telegram's
        "already refunded" is an outcome, not an error: the money is back with the user."""
        user_id = ref.data.get("user_id", "")
        if not user_id.isdigit():
            raise ProviderRejected("the charge does not say who paid", provider=NAME)
        try:
            await self._payments.refund_star_payment(int(user_id), ref.payment_id)
        except ProviderRejected as exc:
            if exc.code != ALREADY_REFUNDED:
                raise
            zero = Money.zero("XTR")
            return RefundResult(RefundOutcome.DONE, amount, zero, ALREADY_REFUNDED, already=True)
        return RefundResult(RefundOutcome.DONE, amount, Money.zero("XTR"), "REFUNDED")

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        raise BadCallback("Stars payments arrive in the chat", provider=NAME, http_status=404)

    async def parse_return(self, request: InboundRequest) -> Inbound:
        raise BadCallback("Stars payments have no return page", provider=NAME, http_status=404)

    def ack(self, ok: bool) -> Ack:
        return Ack()

    # --- the ledger -----------------------------------------------------------------------

    async def _tail(self, since: datetime, pages: int | None = None) -> list[StarTransaction]:
        """The ledger's lines from `since` on (oldest first), read backwards from its end; at
        most `pages` pages back when given."""
        end = await self._length()
        lines: list[StarTransaction] = []
        offset, read = end, 0
        while offset > 0 and (pages is None or read < pages):
            offset = max(offset - PAGE, 0)
            page = await self._payments.star_transactions(offset, PAGE)
            lines[:0] = page
            read += 1
            if page and page[0].at < since:
                break
        return [t for t in lines if t.at >= since]

    async def _length(self) -> int:
        """How many lines the ledger has: Telegram says no total, so its end is found by
        doubling the offset and then halving the gap (a few calls for thousands of lines)."""
        low, high = 0, PAGE  # low: a page known to be full; high: one not known to be
        while True:
            size = len(await self._payments.star_transactions(high, PAGE))
            if 0 < size < PAGE:
                return high + size
            if size == 0:
                break
            low, high = high, high * 2
        first = len(await self._payments.star_transactions(0, PAGE))
        if first < PAGE:
            return first
        while high - low > 1:
            middle = (low + high) // 2
            size = len(await self._payments.star_transactions(middle, PAGE))
            if 0 < size < PAGE:
                return middle + size
            if size == PAGE:
                low = middle
            else:
                high = middle
        return low + PAGE


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"


def _ref(charge_id: str, user_id: int, at: datetime | None) -> PaymentRef:
    data = {"user_id": str(user_id)}
    if at is not None:
        data["at"] = at.astimezone(UTC).isoformat()
    return PaymentRef(charge_id, data)


def _at(ref: PaymentRef) -> datetime:
    try:
        return datetime.fromisoformat(ref.data["at"])
    except (KeyError, ValueError):
        return datetime.now(UTC) - timedelta(days=30)


def _paid(total_amount: int, currency: str) -> Money | None:
    """What Telegram says was paid; None for a currency we cannot name (the core reviews)."""
    try:
        return Money(total_amount, currency)
    except (ValueError, TypeError):
        return None


def _as_payment(line: StarTransaction) -> ChatPayment:
    assert line.user_id is not None
    return ChatPayment(line.user_id, "XTR", line.amount, line.payload, line.id, at=line.at)
