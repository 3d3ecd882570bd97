"""The Turkmen ERP's wire: its routes, the bodies it takes, and how its answers read.

From seed 000 and PROVIDERS.md's notes on the ERP's own server code, which win where they
disagree: the state is `InvStatId: 13`, never a `PaymStatusId` (the ERP would take a client's
"paid"); validation answers 201 for status 1 and 200 for status 0; a second validation of a
fully paid invoice says "Payment successfully done!"; an empty message means the bank could
not be asked.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx

from money import AmountFormat, AmountNotRepresentable, Money, WireKind
from providers.base import (
    LineRefusal,
    PaymentState,
    PaymentStatus,
    ProviderRejected,
    ProviderUnavailable,
)
from providers.http import classify, parse_json

API = "/api/v1"
GEN_REG_NO = f"{API}/gen-reg-no/"
CHECKOUT = f"{API}/checkout-sale-order-inv/"
REGISTER = f"{API}/order-payment-register-request/"
VALIDATE = f"{API}/order-inv-validation/"
LOGIN = "/api/login/"
AWAITING_PAYMENT = 13  # InvStatId "Tölege garaşylýar"
SALE_ORDER_NUMBERS = 9  # RegNumTypeId of sale order invoices
DONE = "payment successfully done"
# error_type_id of checkout's fails[]
REFUSALS = {
    1: LineRefusal.GONE,
    2: LineRefusal.INACTIVE,
    3: LineRefusal.SOLD_OUT,
    4: LineRefusal.PRICE,
}
# Halkbank's OrderStatus in "Payment Validation: failed (OrderStatus = N)"
HALKBANK_STATUS: dict[int, PaymentState] = {
    0: PaymentState.PENDING,  # registered
    5: PaymentState.PENDING,  # in 3-D Secure
    6: PaymentState.FAILED,  # declined
    3: PaymentState.FAILED,  # reversed
    4: PaymentState.FAILED,  # refunded
}
ORDER_STATUS = re.compile(r"OrderStatus\s*=\s*(\d+)")
ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # a bank's OrderId; an invoice number (renamed to a
# timestamp such as 1700000000.123456 by the ERP)
MANAT = AmountFormat(frozenset({"TMT"}), WireKind.DECIMAL, decimals=2)


def halkbank_holds(money: Money) -> Money:
    """What the ERP hands Halkbank for an invoice of `money`: `int(round(float(TotalPrice), 2)
    * 100)` tiyin, its own float arithmetic, which loses a tiyin on some prices (0.29 -> 28,
    1.15 -> 114). Reproduced exactly, so that the bank's amount can be told from a short one."""
    tiyin = int(round(float(money.to_decimal()), 2) * 100)  # money-ok: the ERP's own arithmetic
    return Money(tiyin, money.currency)


def body_of(response: httpx.Response, call: str, provider: str) -> dict[str, Any]:
    """The JSON object the ERP answered; a 401 is our token, anything unreadable a provider
    that cannot answer now."""
    if response.status_code == 401:
        raise classify(provider, 401, message=f"the ERP refused ERP_TOKEN at {call}")
    try:
        body = parse_json(response.content)
    except ValueError:
        raise ProviderUnavailable(
            f"{call} answered no JSON", provider=provider, http_status=response.status_code
        ) from None
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"{call} answered another shape", provider=provider)
    return body


def status_word(body: dict[str, Any]) -> int | None:
    value = body.get("status")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def order_line(sku: str, quantity: int, price: Money) -> dict[str, Any]:
    """An OrderInvLine: whole quantities (the ERP cuts them with int()), its resource id."""
    if not sku.isdigit():
        raise ProviderRejected("a product has no ERP resource id (the catalog's sku)", code="SKU")
    return {
        "ResId": int(sku),
        "OInvLineAmount": quantity,
        "OInvLinePrice": MANAT.to_json(price),
    }


def refusals(body: dict[str, Any]) -> tuple[tuple[str, LineRefusal], ...]:
    """checkout's `fails[]` as (ResId, why)."""
    found = []
    fails = body.get("fails")
    for fail in fails if isinstance(fails, list) else []:
        if not isinstance(fail, dict):
            continue
        line = fail.get("data")
        res_id = line.get("ResId") if isinstance(line, dict) else None
        kind = fail.get("error_type_id")
        why = REFUSALS.get(kind, LineRefusal.UNKNOWN) if isinstance(kind, int) else None
        found.append((str(res_id), why or LineRefusal.UNKNOWN))
    return tuple(found)


def changed_lines(
    body: dict[str, Any], sent: list[dict[str, Any]], total: Money
) -> tuple[tuple[str, LineRefusal], ...]:
    """Lines of a checkout the ERP took but changed (it cuts a quantity to what is in stock,
    and says nothing): compared with what we sent, and its total with ours."""
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    booked = data.get("OrderInvLines")
    amounts = {}
    for line in booked if isinstance(booked, list) else []:
        if isinstance(line, dict):
            amounts[str(line.get("ResId"))] = decimal_of(line.get("OInvLineAmount"))
    changed = [
        (str(line["ResId"]), LineRefusal.SOLD_OUT)
        for line in sent
        if str(line["ResId"]) in amounts and amounts[str(line["ResId"])] != line["OInvLineAmount"]
    ]
    their_total = decimal_of(data.get("OInvFTotal", data.get("OInvTotal")))
    if not changed and their_total is not None and their_total != total.to_decimal():
        changed = [(str(line["ResId"]), LineRefusal.PRICE) for line in sent]
    return tuple(changed)


def decimal_of(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | str | float | Decimal):
        return None
    try:
        return Decimal(repr(value) if isinstance(value, float) else str(value))
    except ArithmeticError:
        return None


def order_desc(order_id: int, description: str) -> str:
    """OrderDesc: the ERP puts it unescaped into Halkbank's register URL, where `#`, `&`, `?`,
    `=`, `%` and `+` would cut or add parameters."""
    text = f"Order {order_id}: {description}"
    return "".join(" " if c in "#&?=%+" else c for c in text)[:250]


def good_id(value: object, what: str, provider: str) -> str:
    text = str(value).strip() if isinstance(value, str | int) else ""
    if not ID.fullmatch(text):
        raise ProviderUnavailable(f"the ERP answered no usable {what}", provider=provider)
    return text


def validation(
    response: httpx.Response,
    *,
    provider: str,
    halkbank: bool,
    order_id: str,
    reg_no: str,
    total: Money,
) -> PaymentStatus:
    """order-inv-validation's answer as our status. 201 + status 1: the bank holds money; how
    much is the bank's figure (Halkbank tiyin, TFEB manat), checked against what we registered.
    200 + status 0: not paid yet, declined, or "Payment successfully done!" (paid before)."""
    body = body_of(response, "order-inv-validation", provider)
    message = str(body.get("message") or "").strip()
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    if response.status_code == 201 and status_word(body) == 1:
        return _paid(data, halkbank=halkbank, order_id=order_id, reg_no=reg_no)
    if status_word(body) != 0 or response.status_code != 200:  # 200 with status 1, a 4xx...
        raise ProviderUnavailable(
            "order-inv-validation answered neither paid nor not paid",
            provider=provider,
            http_status=response.status_code,
        )
    if message.lower().startswith(DONE):
        # the invoice is paid in full (PaymStatusId 2): a second validation, never a failure
        return PaymentStatus(PaymentState.PAID, total, provider_status="done", detail=message)
    if not message:
        raise ProviderUnavailable("the ERP could not ask the bank", provider=provider)
    if (
        "not found" in message.lower()
        or "is none" in message.lower()
        or "rp acc" in message.lower()
    ):
        # our reference is stale or the account wrong: never expire an order the bank may hold
        return PaymentStatus(
            PaymentState.NEEDS_REVIEW, provider_status="not found", detail=message[:200]
        )
    if halkbank:
        number = ORDER_STATUS.search(message)
        code = int(number.group(1)) if number else -1
        state = HALKBANK_STATUS.get(code, PaymentState.PENDING)
        return PaymentStatus(state, provider_status=f"OrderStatus={code}")
    result = data.get("response") if isinstance(data.get("response"), dict) else {}
    code = str(result.get("operationResult") or "")[:20]
    # TFEB's not-paid answer is a text, and which of its codes are final is documented nowhere:
    # the order waits, and expires at its deadline
    return PaymentStatus(
        PaymentState.PENDING, provider_status=code or "not paid", detail=message[:200]
    )


def _paid(data: dict[str, Any], *, halkbank: bool, order_id: str, reg_no: str) -> PaymentStatus:
    if halkbank:
        number = str(data.get("OrderNumber") or "")
        if number != reg_no:
            return _review(None, f"the bank's order is for invoice {number[:40] or 'none'}")
        paid = _amount(data.get("Amount"), tiyin=True)
        deposit = _amount(data.get("depositAmount"), tiyin=True)
        if deposit is not None and paid is not None and deposit != paid:
            return _review(deposit, f"the bank holds {deposit} of {paid} registered")
    else:
        transaction = data.get("transaction") if isinstance(data.get("transaction"), dict) else {}
        bank_order = str(transaction.get("orderId") or "")
        if bank_order != order_id:
            return _review(None, f"the bank answered about order {bank_order[:40] or 'none'}")
        paid = _amount(transaction.get("totalAmount"), tiyin=False)
    if paid is None:
        return _review(None, "paid, but no amount")
    return PaymentStatus(PaymentState.PAID, paid, provider_status="status 1")


def _review(paid: Money | None, why: str) -> PaymentStatus:
    return PaymentStatus(PaymentState.NEEDS_REVIEW, paid, provider_status="status 1", detail=why)


def _amount(value: object, *, tiyin: bool) -> Money | None:
    try:
        if tiyin:
            if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
                return None
            amount = Money(int(str(value)), "TMT")
        else:
            amount = MANAT.from_wire(value, "TMT")
    except (AmountNotRepresentable, ValueError):
        return None
    return amount if amount.amount >= 0 else None
