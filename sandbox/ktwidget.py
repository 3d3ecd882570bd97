"""An emulator of the KTWidget / ktpay merchant widget API (Kazakhstan, KZT), written from its
document (seed 003, Russian) and the "KTWidget / ktpay" section of PROVIDERS.md only.

Where each behaviour comes from:
- seed 003: the order fields and their types (`order_id` string unique per transaction, `amount`
  a number with at most 2 decimals, `type` `ecom` | `service` with `service{service_id,
  contract_value}`, the `callback_*_url`s, `description`), `app_id` + a public Sodium `app_key`,
  `crypto_box_seal`, the merchant's own `callback_post_url` used when an order has none (the
  knob `merchant_callback_post_url`), the callback body (`merchant_id`, `order_id`,
  `description`, `amount`, `transaction_hash`, `created_at`, `updated_at`, `status{status,
  created_at, updated_at, error{error_type, error_message}}`, dates like
  `2019-02-05T14:22:53+06:00`), the statuses (`pending`, `authorized`, `success` and the final
  `error`, `denied`, `completed`), callbacks only at final statuses, the expected answer
  `{"status": "ok"}` with `Content-Type: application/json`, and the retries after 15 s, 60 s,
  3 min, 10 min, 30 min and 60 min.
- PROVIDERS.md: the endpoint `POST /api/v1/merchant-widget/payment` with `Auth-Identifier`, the
  body (standard base64 of the sealed box of `{"order": {...}}`, an optional sibling `user`,
  `text/plain` or no content type, `\\/` escapes), the success answer, both error shapes and
  the codes (4010103 unknown app id, 4220002 validation, 4220101 bad data, 4220102 wrong
  encryption, 4220104 key expired, 5000xxx server errors), `show_close_button`, the
  `callback_force_*_url`s, the pay page `{widget}/payment-card?hash=...` and the receipt
  `GET /api/v1/merchant-widget/payment/{hash}/pdf`.
- neither (the emulator's own choices, so a test can tell): the HTTP statuses 401/422/500/404,
  the 404 code 4040001 of the receipt, the wording of messages and hints, which topic a
  non-validation message is filed under (`messages.request`), a bare host name accepted as a
  return URL (the seed's own example sends `callback_back_url: "widget.nplus.tech"`), and the
  optional posting of non-final statuses (`post_intermediate`).

The customer's side goes through `POST /sandbox/pay`, like the other emulators: it records the
outcome, answers the URL the widget would send the browser to, and starts the callback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from sandbox.base import FakeServer

API = "/api/v1/merchant-widget/payment"
ALMATY = timezone(timedelta(hours=6))  # the seed's dates carry +06:00
RETRY_AFTER = (15, 60, 180, 600, 1800, 3600)  # seconds, the seed's schedule
FINAL = ("completed", "error", "denied")
OUTCOMES = ("pending", "authorized", "success", *FINAL)
URL_FIELDS = (
    "callback_back_url",
    "callback_success_url",
    "callback_failed_url",
    "callback_post_url",
    "callback_force_success_url",
    "callback_force_failed_url",
)
DEFAULT_ERRORS = {
    "error": ("ERROR_PAYMENT", "KKB rejected payment"),  # the seed's example
    "denied": ("ERROR_SYSTEM", "The transaction was denied by ktpay"),
}
MESSAGES = {
    4010103: (
        "Unknown application identifier.",
        "Send the app_id you were given in Auth-Identifier.",
    ),
    4220002: ("The given data was invalid.", "Fix the fields listed in messages."),
    4220101: ("The data cannot be read.", 'Seal a JSON object {"order": {...}}.'),
    4220102: (
        "Wrong encryption.",
        "Send the standard base64 of crypto_box_seal(JSON, app_key).",
    ),
    4220104: ("The application key has expired.", "Ask your ktpay manager for a new app_key."),
    4040001: ("The payment receipt was not found.", "Receipts exist for completed payments only."),
}
KNOBS = (
    "fail_next_create",
    "status_override",
    "old_error_shape",
    "key_expired",
    "post_intermediate",
    "retry_scale",
    "callback_timeout",
    "pdf_fails",
    "merchant_callback_post_url",
)


def now() -> str:
    return datetime.now(ALMATY).replace(microsecond=0).isoformat()


@dataclass
class Transaction:
    transaction_hash: str
    order: dict[str, Any]
    user: dict[str, Any] | None
    amount: Decimal
    created_at: str
    status: str = "pending"
    status_created_at: str = ""
    updated_at: str | None = None
    error: dict[str, str] | None = None
    reported_amount: Decimal | None = None  # /sandbox/pay's "amount": a callback that lies


@dataclass
class Delivery:
    """One attempt to post a callback: what was sent and what the merchant answered."""

    at: float
    status: str  # the transaction status the body carried
    body: dict[str, Any]
    http_status: int | None = None  # None: no answer (connection refused, timeout)
    answer: str = ""
    accepted: bool = False


def number(value: Decimal) -> int | float:
    """A JSON number as the service writes it: 1000, 1000.5."""
    return int(value) if value == value.to_integral_value() else float(value)


def well_formed(url: str, *, bare_host_ok: bool) -> bool:
    parts = urlsplit(url)
    if parts.scheme:
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    host = url.split("/", 1)[0]
    return bare_host_ok and "." in host and " " not in url and not host.startswith(".")


def validate(order: Any, user: Any) -> dict[str, list[str]]:
    """The checks of the seed's "Параметры транзакции", Laravel-style messages per field."""
    problems: dict[str, list[str]] = {}

    def bad(name: str, message: str) -> None:
        problems.setdefault(name, []).append(message)

    if not isinstance(order, dict):
        return {"order": ["The order must be an object."]}
    order_id = order.get("order_id")
    if order_id is None or order_id == "":
        bad("order_id", "The order id field is required.")
    elif not isinstance(order_id, str):
        bad("order_id", "The order id must be a string.")
    amount = order.get("amount")
    if amount is None:
        bad("amount", "The amount field is required.")
    elif isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        bad("amount", "The amount must be a number.")
    elif amount <= 0:
        bad("amount", "The amount must be greater than 0.")
    elif Decimal(amount).normalize().as_tuple().exponent < -2:
        bad("amount", "The amount may have at most 2 decimal places.")
    kind = order.get("type")
    if kind is None or kind == "":
        bad("type", "The type field is required.")
    elif kind not in ("ecom", "service"):
        bad("type", "The selected type is invalid (ecom or service).")
    elif kind == "service":
        service = order.get("service")
        if not isinstance(service, dict):
            bad("service", "The service field is required when type is service.")
        else:
            service_id = service.get("service_id")
            if isinstance(service_id, bool) or not isinstance(service_id, int):
                bad("service.service_id", "The service id must be a number.")
            contract = service.get("contract_value")
            if not isinstance(contract, str) or not contract:
                bad("service.contract_value", "The contract value must be a string.")
    for name in URL_FIELDS:
        url = order.get(name)
        if url is None:
            continue
        bare_ok = name != "callback_post_url"  # it is posted to: it needs a scheme
        if not isinstance(url, str) or not well_formed(url, bare_host_ok=bare_ok):
            bad(name, f"The {name.replace('_', ' ')} format is invalid.")
    description = order.get("description")
    if description is not None and not isinstance(description, str):
        bad("description", "The description must be a string.")
    close = order.get("show_close_button")
    if close is not None and not isinstance(close, bool):
        bad("show_close_button", "The show close button field must be true or false.")
    if user is not None and not isinstance(user, dict):
        bad("user", "The user must be an object.")
    return problems


def receipt_pdf(lines: list[str]) -> bytes:
    """A one-page PDF 1.4 with the lines in Helvetica, offsets counted by hand."""

    def text(s: str) -> str:
        s = s.encode("ascii", "replace").decode()
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 12 Tf", "14 TL", "50 790 Td"]
    for line in lines:
        ops += [f"({text(line)}) Tj", "T*"]
    ops.append("ET")
    stream = "\n".join(ops).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


class KtwidgetServer(FakeServer):
    name = "ktwidget"
    knobs = KNOBS

    def __init__(
        self,
        app_id: str = "e2d3d70d53c67bcd377266f74e98587c",
        merchant_id: int = 4217,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.app_id = app_id
        self.merchant_id = merchant_id
        self.private_key = PrivateKey.generate()  # the pair stays for the server's life
        self.app_key = base64.b64encode(bytes(self.private_key.public_key)).decode()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # the delivery in flight, by hash
        self.reset()
        self.app.router.add_post(API, self._create)
        self.app.router.add_get(API + "/{hash}/pdf", self._pdf)
        self.app.router.add_get("/payment-card", self._card_page)
        self.app.router.add_post("/sandbox/pay", self._pay)

    def env(self) -> dict[str, str]:
        return {
            "KTWIDGET_APP_ID": self.app_id,
            "KTWIDGET_APP_KEY": self.app_key,
            "KTWIDGET_MERCHANT_ID": str(self.merchant_id),
            "KTWIDGET_API_URL": self.url,
            "KTWIDGET_WIDGET_URL": self.url,
        }

    def hints(self) -> list[str]:
        return [
            f"# pay (ktwidget): open the Pay URL ({self.url}/payment-card?hash=...), or "
            f"curl -XPOST {self.url}/sandbox/pay -H 'content-type: application/json' "
            '-d \'{"url": "<Pay URL>", "outcome": "completed"}\'  (or error, denied)',
            f"# receipt (ktwidget): curl -H 'Auth-Identifier: {self.app_id}' "
            f"{self.url}{API}/<hash>/pdf -o receipt.pdf",
        ]

    def reset(self) -> None:
        """Also cancels every callback delivery still in flight or waiting for its retry."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks = {}
        self.transactions: dict[str, Transaction] = {}
        self.order_ids: dict[str, str] = {}  # order_id -> transaction_hash (unique per app)
        self.deliveries: dict[str, list[Delivery]] = {}
        self.create_calls = 0
        self.fail_next_create: int | None = None  # answer this error code once
        self.status_override: int | None = None  # every API call answers this raw HTTP status
        self.old_error_shape = False  # error.message + error.validation instead of messages
        self.key_expired = False  # every create answers 4220104
        self.post_intermediate = False  # also post pending/authorized/success
        self.retry_scale = 1.0  # 0.001 turns the 15 s retry into 15 ms
        self.callback_timeout = 10.0
        self.pdf_fails = 0  # the next N receipts answer 500
        self.merchant_callback_post_url: str | None = None  # the merchant's settings

    # --- answers ------------------------------------------------------------------------

    def _error(self, code: int, messages: dict[str, list[str]] | None = None) -> web.Response:
        text, hint = MESSAGES.get(code, ("Server error.", "Try again later."))
        status = {401: 401, 404: 404, 422: 422}.get(code // 10000, 500)
        if self.old_error_shape:
            error: dict[str, Any] = {"code": code, "message": text, "validation": messages or []}
        else:
            error = {"code": code, "messages": messages or {"request": [text]}, "hint": hint}
        return web.json_response({"success": False, "data": [], "error": error}, status=status)

    def _raw_failure(self) -> web.Response | None:
        if self.status_override:
            return web.Response(
                status=self.status_override,
                text=f"<html><body><h1>{self.status_override}</h1>nginx</body></html>",
                content_type="text/html",
            )
        return None

    # --- the API ------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        self.create_calls += 1
        raw = self._raw_failure()
        if raw is not None:
            return raw
        if request.headers.get("Auth-Identifier") != self.app_id:
            return self._error(4010103)
        if self.fail_next_create:
            code, self.fail_next_create = self.fail_next_create, None
            messages = {"order": ["The order is invalid."]} if code == 4220002 else None
            return self._error(code, messages)
        if self.key_expired:
            return self._error(4220104)
        sealed = (await request.read()).strip()
        try:
            box = base64.b64decode(sealed + b"=" * (-len(sealed) % 4), validate=True)
            plain = SealedBox(self.private_key).decrypt(box)
        except (binascii.Error, ValueError, CryptoError):
            return self._error(4220102)
        try:
            content = json.loads(plain.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError):
            return self._error(4220101)
        if not isinstance(content, dict) or "order" not in content:
            return self._error(4220101)
        order, user = content["order"], content.get("user")
        problems = validate(order, user)
        if not problems and order["order_id"] in self.order_ids:
            problems = {"order_id": ["The order id has already been taken."]}
        if problems:
            return self._error(4220002, problems)
        transaction = Transaction(
            transaction_hash=secrets.token_hex(20),
            order=order,
            user=user,
            amount=Decimal(order["amount"]),
            created_at=now(),
        )
        transaction.status_created_at = transaction.created_at
        self.transactions[transaction.transaction_hash] = transaction
        self.order_ids[order["order_id"]] = transaction.transaction_hash
        return web.json_response(
            {
                "error": [],
                "response": {
                    "success": True,
                    "data": {
                        "transaction_hash": transaction.transaction_hash,
                        "show_close_button": order.get("show_close_button", False),
                    },
                },
            }
        )

    async def _pdf(self, request: web.Request) -> web.Response:
        raw = self._raw_failure()
        if raw is not None:
            return raw
        if request.headers.get("Auth-Identifier") != self.app_id:
            return self._error(4010103)
        if self.pdf_fails > 0:
            self.pdf_fails -= 1
            return self._error(5000001)
        transaction = self.transactions.get(request.match_info["hash"])
        if transaction is None or transaction.status != "completed":
            return self._error(4040001)
        order = transaction.order
        pdf = receipt_pdf(
            [
                "KTWidget sandbox - payment receipt",
                f"Order: {order['order_id']}",
                f"Amount: {transaction.amount} KZT",
                f"Description: {order.get('description') or ''}",
                f"Transaction: {transaction.transaction_hash}",
                f"Status: completed at {transaction.status_created_at}",
            ]
        )
        return web.Response(
            body=pdf,
            content_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{order["order_id"]}.pdf"'},
        )

    # --- the customer on the widget ---------------------------------------------------

    async def _card_page(self, request: web.Request) -> web.Response:
        transaction = self.transactions.get(request.query.get("hash", ""))
        if transaction is None:
            return web.Response(
                status=404,
                content_type="text/html",
                text="<!doctype html><title>KTWidget</title><h1>Transaction not found</h1>",
            )
        esc = html.escape
        buttons = "".join(f'<button name="outcome" value="{o}">{o}</button>' for o in FINAL)
        return web.Response(
            content_type="text/html",
            text=(
                "<!doctype html><meta charset=utf-8><title>KTWidget sandbox</title>"
                "<h1>KTWidget sandbox payment</h1>"
                f"<p>Amount: <b>{esc(str(transaction.amount))} KZT</b></p>"
                f"<p>Description: {esc(str(transaction.order.get('description') or ''))}</p>"
                f"<p>Order: {esc(str(transaction.order['order_id']))}; "
                f"status: {esc(transaction.status)}</p>"
                '<form method="post" action="/sandbox/pay">'
                f'<input type="hidden" name="hash" value="{esc(transaction.transaction_hash)}">'
                '<input name="card" value="4400 4300 0000 0000" aria-label="card">'
                f"{buttons}</form>"
            ),
        )

    def _redirect(self, transaction: Transaction) -> str:
        order = transaction.order
        if transaction.status in ("completed", "authorized", "success"):
            keys = ("callback_force_success_url", "callback_success_url", "callback_back_url")
        elif transaction.status in ("error", "denied"):
            keys = ("callback_force_failed_url", "callback_failed_url", "callback_back_url")
        else:
            keys = ("callback_back_url",)
        for key in keys:
            if order.get(key):
                return str(order[key])
        return f"{self.url}/payment-card?hash={transaction.transaction_hash}"  # its own page

    async def _pay(self, request: web.Request) -> web.Response:
        """`{"hash" or "url", "outcome", "amount"?, "error_type"?, "error_message"?}` as JSON
        (answers `{"redirect": ...}`) or as the card page's form (answers 303 to it)."""
        from_form = request.content_type != "application/json"
        body: dict[str, Any] = dict(await request.post()) if from_form else await request.json()
        key = str(body.get("hash") or "") or str(body.get("url", "")).rpartition("hash=")[2]
        transaction = self.transactions.get(key.split("&")[0])
        outcome = body.get("outcome")
        if transaction is None or outcome not in OUTCOMES:
            return web.json_response(
                {"error": f"unknown transaction or outcome (one of {', '.join(OUTCOMES)})"},
                status=400,
            )
        if transaction.status in FINAL:
            return web.json_response(
                {"error": f"the transaction is already {transaction.status}"}, status=409
            )
        if body.get("amount") not in (None, ""):
            transaction.reported_amount = Decimal(str(body["amount"]))
        if outcome != transaction.status:
            self._set_status(transaction, outcome, body)
        redirect = self._redirect(transaction)
        if from_form:
            raise web.HTTPSeeOther(redirect)
        return web.json_response(
            {"redirect": redirect, "transaction_hash": transaction.transaction_hash}
        )

    def _set_status(self, transaction: Transaction, status: str, body: dict[str, Any]) -> None:
        if transaction.status != "pending":
            transaction.updated_at = now()  # a direct pending -> final keeps null, as the seed
        transaction.status, transaction.status_created_at = status, now()
        if status in DEFAULT_ERRORS:
            kind, message = DEFAULT_ERRORS[status]
            transaction.error = {
                "error_type": str(body.get("error_type") or kind),
                "error_message": str(body.get("error_message") or message),
            }
        if status in FINAL or self.post_intermediate:
            self._deliver(transaction)

    # --- callbacks ----------------------------------------------------------------------

    def callback_body(self, transaction: Transaction) -> dict[str, Any]:
        order = transaction.order
        amount = transaction.reported_amount or transaction.amount
        return {
            "merchant_id": self.merchant_id,
            "order_id": order["order_id"],
            "description": order.get("description"),
            "amount": number(amount),
            "transaction_hash": transaction.transaction_hash,
            "created_at": transaction.created_at,
            "updated_at": transaction.updated_at,
            "status": {
                "status": transaction.status,
                "created_at": transaction.status_created_at,
                "updated_at": None,
                "error": transaction.error,
            },
        }

    def _deliver(self, transaction: Transaction) -> None:
        """Post the status now; a newer status replaces a delivery still waiting to retry."""
        url = transaction.order.get("callback_post_url") or self.merchant_callback_post_url
        if not url:
            return
        key = transaction.transaction_hash
        old = self._tasks.pop(key, None)
        if old is not None:
            old.cancel()
        task = asyncio.create_task(self._post_until_ok(url, key, self.callback_body(transaction)))
        self._tasks[key] = task
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._tasks.items()):
            if running is task:
                del self._tasks[key]

    async def _post_until_ok(self, url: str, key: str, body: dict[str, Any]) -> None:
        attempts = self.deliveries.setdefault(key, [])
        timeout = aiohttp.ClientTimeout(total=self.callback_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for wait in (0, *RETRY_AFTER):
                await asyncio.sleep(wait * self.retry_scale)
                attempt = Delivery(time.monotonic(), body["status"]["status"], body)
                attempts.append(attempt)
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.post(url, json=body) as answer:
                        attempt.http_status = answer.status
                        attempt.answer = await answer.text()
                        attempt.accepted = answer.status == 200 and self._ok(answer, attempt.answer)
                if attempt.accepted:
                    return

    @staticmethod
    def _ok(answer: aiohttp.ClientResponse, text: str) -> bool:
        if answer.content_type != "application/json":
            return False
        try:
            return json.loads(text) == {"status": "ok"}
        except ValueError:
            return False

    async def settle(self) -> None:
        """Wait for the deliveries in flight, retries included (tests, with a small
        retry_scale)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().stop()
