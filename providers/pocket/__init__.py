"""Pocket / Invescore (Mongolia, MNT): a merchant token from Keycloak, an invoice that needs the
customer's own token (which exists only inside the Pocket app), a webhook that is a hint, and a
check that is the truth.

Seed: 002_eea3831ad8a84e60.txt (Mongolian); corrections and the v2 API in PROVIDERS.md.
The Pay button opens our bridge page `/pay/pocket/{token}`. Inside Pocket, pocket.js gives the
page the customer's token, the page posts it here, and we open `POST /merchant/consumer/invoice`
with it once it holds (RS256, the realm's key). Outside Pocket, the page says how to open it
there, or (mode "qr" or "both") shows a v2 invoice's QR code and deeplink. The webhook URL is
one per merchant, set at start-up through pg/config; its body only says which invoice to check.
Refunds are made in Pocket's merchant portal (no refund API is published).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx

from money import Money
from providers.base import (
    Ack,
    BadCallback,
    BridgeResult,
    BridgeWords,
    Capability,
    Checkout,
    CheckoutRequest,
    Inbound,
    InboundRequest,
    PaymentRef,
    PaymentStatus,
    ProviderError,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
    RefundResult,
)
from providers.http import TokenCache, call_with_token, parse_json, send
from providers.pocket import page, wire
from providers.pocket.wire import NAME, TUGRIK

OK = json.dumps({"status": "ok"}).encode()
DEEPLINK_SCHEMES = frozenset({"pocket", "https"})  # what the "Open Pocket" button may open
BODY_LIMIT = 16_384  # a post of the page carries two tokens


class Mode(StrEnum):
    APP = "app"  # the seed's flow: the page runs inside the Pocket app
    QR = "qr"  # Pocket's v2 invoice: a QR code and a deeplink, from any browser
    BOTH = "both"  # inside Pocket as "app"; outside it, the QR code is offered


class PocketProvider:
    name = NAME
    display_name = "Pocket"
    capabilities = frozenset(
        {Capability.BRIDGE_PAGE, Capability.CALLBACKS, Capability.STATUS_API, Capability.RETURN}
    )
    amount_format = TUGRIK
    confirm_window = timedelta(minutes=15)

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        sso_url: str,
        api_url: str,
        script_url: str,
        client_id: str,
        client_secret: str,
        terminal_id: str,
        public_key: str,
        issuer: str,
        mode: Mode = Mode.BOTH,
        lifetime: timedelta = timedelta(minutes=30),
    ) -> None:
        self._client = client
        self._api = api_url.rstrip("/")
        self._script_url = script_url
        self._terminal_id = terminal_id
        self._public_key = wire.public_key_of(public_key)
        self._issuer = issuer.rstrip("/")
        self.mode = Mode(mode)
        self.lifetime = lifetime  # Pocket gives invoices no deadline: the order has one
        sso = sso_url.rstrip("/")
        self.tokens = TokenCache(
            lambda refresh: wire.fetch_token(client, sso, client_id, client_secret, refresh)
        )

    # --- checkout: the page we host ------------------------------------------------------

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        TUGRIK.check(request.amount)  # under 500 MNT: refused before the customer is sent on
        expires = datetime.now(UTC) + self.lifetime
        return Checkout(pay_url=request.bridge_url, ref=None, expires_at=expires)

    async def bridge(
        self,
        request: InboundRequest,
        checkout: CheckoutRequest,
        words: BridgeWords,
        opened: PaymentRef | None,
    ) -> BridgeResult:
        if opened is not None:  # one invoice per order, whatever the page is asked again
            return self._again(request, checkout, words, opened)
        if request.method == "POST":
            return await self._open_in_app(request, checkout, words)
        if self.mode is Mode.QR or (self.mode is Mode.BOTH and "qr" in request.query):
            return await self._open_qr(checkout, words)
        qr_url = f"{checkout.bridge_url}?qr=1" if self.mode is Mode.BOTH else None
        return BridgeResult(
            page.app_page(
                words, script_url=self._script_url, page_url=checkout.bridge_url, qr_url=qr_url
            )
        )

    def _again(
        self,
        request: InboundRequest,
        checkout: CheckoutRequest,
        words: BridgeWords,
        opened: PaymentRef,
    ) -> BridgeResult:
        qr_url = f"{checkout.bridge_url}?qr=1"
        if request.method == "POST":  # inside Pocket: to the QR page's deeplink, if it was one
            follow = qr_url if opened.data.get("qr") else None
            return BridgeResult(page.posted(words.opened, ok=True, follow=follow), opened)
        if opened.data.get("qr"):
            ack = page.qr_page(
                words,
                qr=opened.data["qr"],
                deeplink=opened.data.get("deeplink"),
                check_url=checkout.return_url,
            )
            return BridgeResult(ack, opened)
        return BridgeResult(page.notice(words, words.opened), opened)

    async def _open_in_app(
        self, request: InboundRequest, checkout: CheckoutRequest, words: BridgeWords
    ) -> BridgeResult:
        if self.mode is Mode.QR:
            return BridgeResult(page.posted(words.unavailable, ok=False, status=405))
        tokens = _posted_tokens(request.body)
        if tokens is None:
            return BridgeResult(page.posted(words.refused, ok=False, status=400))
        access, refresh = tokens
        try:
            wire.customer_of(access, self._public_key, self._issuer)
        except BadCallback:
            return BridgeResult(page.posted(words.refused, ok=False, status=403))
        body: dict[str, Any] = {
            "amount": TUGRIK.to_json(checkout.amount),
            "info": _info(checkout),
            "consumerToken": access,
        }
        if refresh:
            body["consumerRefreshToken"] = refresh  # as Pocket's own merchant example sends it
        unavailable = page.posted(words.unavailable, ok=False, status=503)
        try:
            answer = await self._call("POST", wire.CONSUMER_INVOICE, "invoice", json=body)
        except (ProviderUnavailable, ProviderMisconfigured) as exc:
            return BridgeResult(unavailable, problem=exc)
        except ProviderRejected as exc:  # Pocket refused the customer's token after all
            return BridgeResult(page.posted(words.refused, ok=False, status=403), problem=exc)
        try:
            ref = PaymentRef(wire.invoice_id(answer.get("id")), {"api": "consumer"})
        except ProviderRejected as exc:  # made, but we cannot tell which: a payment of it is
            return BridgeResult(unavailable, problem=exc)  # one no order has, told when paid
        return BridgeResult(page.posted(words.opened, ok=True), ref)

    async def _open_qr(self, checkout: CheckoutRequest, words: BridgeWords) -> BridgeResult:
        body = {
            "terminalId": self._terminal_id,
            "amount": TUGRIK.to_json(checkout.amount),
            "info": _info(checkout),
            # new per attempt: an invoice whose answer was lost was never shown, so never paid
            "orderNumber": f"tg-{checkout.order_id}-{secrets.token_hex(4)}",
            "invoiceType": "PURCHASE",
            "channel": "ecommerce",
        }
        try:
            answer = await self._call("POST", wire.V2_GENERATE, "generate-invoice", json=body)
            qr = answer.get("qr")
            if not isinstance(qr, str) or not qr or len(qr) > 2000:
                raise ProviderUnavailable("generate-invoice answered no QR", provider=NAME)
            data = {"api": "v2", "qr": qr}
            deeplink = _deeplink(answer.get("deeplink"))
            if deeplink:
                data["deeplink"] = deeplink
            ref = PaymentRef(wire.invoice_id(answer.get("id")), data)
        except ProviderError as exc:
            return BridgeResult(page.notice(words, words.unavailable, status=503), problem=exc)
        ack = page.qr_page(words, qr=qr, deeplink=deeplink, check_url=checkout.return_url)
        return BridgeResult(ack, ref)

    # --- the webhook and the truth --------------------------------------------------------

    async def set_callback_url(self, url: str) -> bool:
        """pg/config's fallBackUrl, posted only when it is not ours already."""
        current = await self._call("GET", wire.PG_CONFIG, "pg/config")
        if current.get("fallBackUrl") == url:
            return False
        await self._call("POST", wire.PG_CONFIG, "pg/config", json={"fallBackUrl": url})
        return True

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        """`{id, amount, info, invoiceId, invoiceState, phoneNumber}`, unsigned: it only says
        which invoice to check. (It comes to the URL we set, with our key: the core checks it.)"""
        try:
            body = parse_json(request.body)
        except ValueError:
            raise BadCallback("the webhook is not JSON", provider=NAME) from None
        if not isinstance(body, dict):
            raise BadCallback("the webhook is not a JSON object", provider=NAME)
        try:
            invoice = wire.invoice_id(body.get("invoiceId"))
        except ProviderRejected:
            raise BadCallback("the webhook names no invoice", provider=NAME) from None
        state = str(body.get("invoiceState") or "").strip().lower()[:40]
        return Inbound(PaymentRef(invoice), event_key=f"{invoice}:{state}", hint=state)

    async def parse_return(self, request: InboundRequest) -> Inbound:
        """'I have paid' on the QR page: nothing in it but the order's own link."""
        return Inbound(None, hint="return")

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        invoice = wire.invoice_id(ref.payment_id)
        if ref.data.get("api") == "v2":
            body = {"terminalId": self._terminal_id, "invoiceId": invoice}
            answer = await self._call("POST", wire.V2_STATE, "invoice state", json=body)
            return wire.status_of(answer, "state")
        answer = await self._call("GET", wire.CHECK.format(id=invoice), "invoice check")
        return wire.status_of(answer, "invoiceState")

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult:
        raise ProviderRejected(
            "Pocket publishes no refund API; refund in the merchant portal",
            provider=NAME,
            code="UNSUPPORTED",
        )

    def ack(self, ok: bool) -> Ack:
        if ok:
            return Ack(200, "application/json", OK)
        return Ack(503, "text/plain", b"not stored, try again")

    # --- calls -----------------------------------------------------------------------------

    async def _call(self, method: str, path: str, call: str, **kwargs: Any) -> dict[str, Any]:
        """One call with the merchant's token, renewed and retried once on a 401."""
        url = f"{self._api}{path}"

        async def do(token: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"}
            return await send(self._client, NAME, method, url, headers=headers, **kwargs)

        return wire.answer(await call_with_token(self.tokens, do), call)


def _info(checkout: CheckoutRequest) -> str:
    """The invoice's note, which Pocket shows the customer and the merchant's portal lists:
    our order number first, so that any invoice can be traced to its order by a person."""
    return f"#{checkout.order_id} {checkout.description}"[: wire.INFO_LIMIT]


def _posted_tokens(body: bytes) -> tuple[str, str] | None:
    """The page's post: `{accessToken, refreshToken}` from getToken's `data`."""
    if len(body) > BODY_LIMIT:
        return None
    try:
        posted = parse_json(body)
    except ValueError:
        return None
    if not isinstance(posted, dict):
        return None
    access, refresh = posted.get("accessToken"), posted.get("refreshToken") or ""
    if not isinstance(access, str) or not access or not isinstance(refresh, str):
        return None
    return access, refresh


def _deeplink(value: object) -> str | None:
    """Pocket's deeplink, when it is one a button may open (never `javascript:`)."""
    if not isinstance(value, str) or len(value) > 1000:
        return None
    return value if urlsplit(value).scheme.lower() in DEEPLINK_SCHEMES else None
