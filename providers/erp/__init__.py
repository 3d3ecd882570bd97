"""Halkbank and TFEB through the Turkmen ERP's online-payment API (TMT): four calls, and no
callback or return ever reaches us.

Seed: 000_b117657e90990f9f.txt; PROVIDERS.md's notes from the ERP's own server code win where
they disagree. One class serves both banks (`online_payment_type` `halkbank` /
`foreign_affairs_bank`, in the query string). A checkout is gen-reg-no -> checkout-sale-order-
inv (the cart, re-checked by the ERP against its stock) -> order-payment-register-request (the
bank's page and OrderId). The reference keeps what validation needs: the bank's OrderId, the
invoice number as the ERP last named it (Halkbank's are renamed when "already used"), the bank.
Confirmation is order-inv-validation, from the "Check payment" button and the sweep. The
banks' URLs carry the merchant's bank login: they are never logged. Refunds are made by hand.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx

from money import Money
from providers.base import (
    Ack,
    BadCallback,
    Capability,
    Checkout,
    CheckoutRequest,
    Inbound,
    InboundRequest,
    LinesRefused,
    PaymentRef,
    PaymentStatus,
    ProviderMisconfigured,
    ProviderRejected,
    RefundResult,
)
from providers.erp import wire
from providers.http import classify, send


class Bank(StrEnum):
    HALKBANK = "halkbank"
    TFEB = "foreign_affairs_bank"


NAMES = {Bank.HALKBANK: ("halkbank", "Halkbank"), Bank.TFEB: ("tfeb", "TFEB")}


class ErpProvider:
    capabilities = frozenset({Capability.STATUS_API})
    confirm_window = timedelta(minutes=15)

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        bank: Bank,
        api_url: str,
        token: str,
        auth_header: str = "bearer",
        pm_id: int,
        rp_acc_guid: str,
        login: str = "",
        password: str = "",
        lifetime: timedelta = timedelta(minutes=30),
    ) -> None:
        self.bank = Bank(bank)
        self.name, self.display_name = NAMES[self.bank]
        held = wire.halkbank_holds if self.bank is Bank.HALKBANK else None
        self.amount_format = replace(wire.MANAT, held=held) if held else wire.MANAT
        self._client = client
        self._api = api_url.rstrip("/")
        self._auth = (
            {"x-access-token": token}
            if auth_header == "x-access-token"
            else {"Authorization": f"Bearer {token}"}
        )
        self._pm_id = pm_id
        self._rp_acc_guid = rp_acc_guid
        self._login = (login, password)
        self._session: str | None = None  # TFEB: the ERP's web session cookie
        self._logging_in = asyncio.Lock()
        self.lifetime = lifetime

    # --- checkout -------------------------------------------------------------------------

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        self.amount_format.check(request.amount)
        try:
            lines = [wire.order_line(x.sku, x.quantity, x.unit_price) for x in request.lines]
        except ProviderRejected as exc:  # a catalog product without its ERP resource id
            raise ProviderMisconfigured(str(exc), provider=self.name, code="SKU") from None
        if not lines:
            raise ProviderRejected("the ERP needs the order's lines", provider=self.name)
        numbered = await self._post(
            wire.GEN_REG_NO,
            "gen-reg-no",
            {"RegNumTypeId": wire.SALE_ORDER_NUMBERS, "random_mode": 1},
        )
        if wire.status_word(numbered) != 1:
            raise classify(self.name, None, message="gen-reg-no gave no number")
        reg_no = wire.good_id(numbered.get("data"), "invoice number", self.name)
        await self._checkout(reg_no, lines, request)
        registered = await self._register(reg_no, request)
        data = registered.get("data") if isinstance(registered.get("data"), dict) else {}
        order_id = wire.good_id(data.get("OrderId"), "OrderId", self.name)
        renamed = wire.good_id(data.get("OInvRegNo") or reg_no, "invoice number", self.name)
        pay_url = data.get("checkout_url")
        if not isinstance(pay_url, str) or not pay_url.startswith(("https://", "http://")):
            raise classify(self.name, None, message="the ERP gave no checkout_url")
        ref = PaymentRef(
            order_id,
            {"reg_no": renamed, "bank": self.bank.value, "total": str(request.amount.amount)},
        )
        return Checkout(pay_url, ref, datetime.now(UTC) + self.lifetime)

    async def _checkout(
        self, reg_no: str, lines: list[dict[str, Any]], request: CheckoutRequest
    ) -> None:
        order_inv = {
            "OInvRegNo": reg_no,
            "InvStatId": wire.AWAITING_PAYMENT,  # never a PaymStatusId: the ERP would trust it
            "PmId": self._pm_id,
            "RpAccGuid": self._rp_acc_guid,
            "CurrencyCode": request.amount.currency,
            "OInvDesc": request.description[:250],
            "OrderInvLines": lines,
        }
        response = await self._send(
            "POST", wire.CHECKOUT, json={"orderInv": order_inv, "RpAccGuid": self._rp_acc_guid}
        )
        body = wire.body_of(response, "checkout-sale-order-inv", self.name)
        if response.status_code == 201 and wire.status_word(body) == 1:
            changed = wire.changed_lines(body, lines, request.amount)
            if changed:  # fewer in stock: the ERP cut a quantity and said nothing
                raise LinesRefused("the ERP changed lines of the cart", changed, provider=self.name)
            return
        refused = wire.refusals(body)
        if refused:  # status 2 (some lines) or 0 "Fail" (all): the ERP's stock says no
            raise LinesRefused("the ERP refused lines of the cart", refused, provider=self.name)
        raise classify(self.name, response.status_code, message="checkout-sale-order-inv refused")

    async def _register(self, reg_no: str, request: CheckoutRequest) -> dict[str, Any]:
        body = {
            "OInvRegNo": reg_no,
            "TotalPrice": wire.MANAT.to_json(request.amount),
            "OrderDesc": wire.order_desc(request.order_id, request.description),
            "CurrencyCode": request.amount.currency,
        }
        path = f"{wire.REGISTER}?online_payment_type={self.bank.value}"
        for attempt in range(2):
            headers = await self._session_headers(fresh=attempt > 0)
            response = await self._send("POST", path, json=body, headers=headers)
            answer = wire.body_of(response, "order-payment-register-request", self.name)
            if response.status_code == 200 and wire.status_word(answer) == 1:
                return answer
            if self.bank is not Bank.TFEB:
                break  # TFEB's 400 may be a session that ended: log in again, once
        raise classify(self.name, response.status_code, message="the bank refused to register")

    # --- TFEB's web session ------------------------------------------------------------------

    async def _session_headers(self, *, fresh: bool) -> dict[str, str]:
        if self.bank is not Bank.TFEB:
            return {}
        async with self._logging_in:
            if self._session is None or fresh:
                self._session = await self._log_in()
        return {"Cookie": f"session={self._session}"}

    async def _log_in(self) -> str:
        user, password = self._login
        response = await send(
            self._client,
            self.name,
            "POST",
            f"{self._api}{wire.LOGIN}",
            json={"username": user, "password": password},
        )
        session = response.cookies.get("session")
        if response.status_code in (401, 403) or (response.status_code == 200 and not session):
            raise ProviderMisconfigured(
                "the ERP refused ERP_LOGIN / ERP_PASSWORD", provider=self.name, http_status=401
            )
        if response.status_code != 200 or not session:
            raise classify(self.name, response.status_code, message="the ERP's login failed")
        self._client.cookies.delete("session")  # kept here, sent to the ERP's register only
        return session

    # --- the truth ---------------------------------------------------------------------------

    async def fetch_status(self, ref: PaymentRef) -> PaymentStatus:
        reg_no, bank = ref.data.get("reg_no", ""), ref.data.get("bank", self.bank.value)
        if not reg_no or not wire.ID.fullmatch(ref.payment_id):
            raise ProviderRejected("not an ERP payment", provider=self.name, code="BAD_REF")
        body = {
            "OrderId": ref.payment_id,
            "OInvRegNo": reg_no,
            "online_payment_type": bank,
            "RpAccGuid": self._rp_acc_guid,
        }
        response = await self._send("POST", wire.VALIDATE, json=body)
        total = Money(int(ref.data.get("total") or 0), "TMT")
        return wire.validation(
            response,
            provider=self.name,
            halkbank=bank == Bank.HALKBANK.value,
            order_id=ref.payment_id,
            reg_no=reg_no,
            total=total,
        )

    async def parse_callback(self, request: InboundRequest) -> Inbound:
        raise BadCallback("the ERP sends no callbacks", provider=self.name, http_status=404)

    async def parse_return(self, request: InboundRequest) -> Inbound:
        raise BadCallback("the banks return to the ERP, never to us", provider=self.name)

    async def refund(self, ref: PaymentRef, amount: Money, key: str) -> RefundResult:
        raise ProviderRejected(
            "the ERP has no refund call; refund at the bank", provider=self.name, code="UNSUPPORTED"
        )

    def ack(self, ok: bool) -> Ack:
        return Ack(404, "text/plain", b"no callbacks here")

    # --- calls -------------------------------------------------------------------------------

    async def _post(self, path: str, call: str, body: dict[str, Any]) -> dict[str, Any]:
        return wire.body_of(await self._send("POST", path, json=body), call, self.name)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._auth, **kwargs.pop("headers", {})}
        return await send(
            self._client, self.name, method, f"{self._api}{path}", headers=headers, **kwargs
        )
