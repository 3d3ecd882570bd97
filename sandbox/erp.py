"""An emulator of the Turkmen ERP's online-payment API and its two banks, Halkbank and TFEB
(Türkmenistanyň Daşary ykdysady iş banky, `foreign_affairs_bank`), in TMT; written from seed
000 and the "Turkmen ERP online payment (Halkbank / TFEB, TMT)" section of PROVIDERS.md only
(its "More from the ERP's server code" overrides the rest where they disagree).

Where each behaviour comes from:
- seed 000: the four calls `gen-reg-no` `{RegNumTypeId: 9, random_mode: 1}` -> `{status, data:
  "<RegNo>", message: "Pred Reg_no generation"}` (numbers shaped like "ANSSFK09381"),
  `checkout-sale-order-inv`, `order-payment-register-request?online_payment_type=halkbank|
  foreign_affairs_bank` `{OInvRegNo, TotalPrice, OrderDesc}` -> `checkout_url`, `OrderId`,
  `online_payment_type`, `RegNo`, and `order-inv-validation` `{OrderId, OInvRegNo,
  online_payment_type, RpAccGuid}` with "Validation success"; state 13 (awaiting payment).
- PROVIDERS.md: routes under `/api/v1/` with their trailing slash (else 308); `Authorization:
  Bearer` or `x-access-token`, 401 "Token is missing!" / "Token is invalid!", checkout's own
  "Failed to checkout with anonymous user!", device and customer-account (rp_acc) tokens, user
  tokens refused by checkout and validation; 400 "Error. Not a JSON data."; gen-reg-no always
  200; checkout's `{"orderInv": ...}` with `InvStatId` (the server forces `OInvTypeId` 2), `PmId`,
  `RpAccGuid`, `OrderInvLines[] {ResId, OInvLineAmount, OInvLinePrice}`, `OInvRegNo` (one
  gen-reg-no issued, else 400), `CurrencyCode`; line amounts cut with `int()`; the ERP re-checks
  lines against its resources: 201 only for `status: 1`, 400 for `status: 2` (`fails[]` with
  `error_type_id` / `error_type_message`: 0 unknown, 1 deleted, 2 inactive, 3 resource ended, 4
  false price; the order is deleted) and for `status: 0` "Fail" (no good line); a client's
  `PaymStatusId` accepted as sent (2: validation says "Payment successfully done!" with nothing
  paid); register: the payment type from the query string only (default halkbank), `OrderDesc`
  required, `TotalPrice` never compared with the invoice, everything inside `data`, 400 `{status:
  0, data: {}}`, Halkbank only when the request's `CurrencyCode` (default TMT) is TMT, TFEB only
  with the web session of `/api/login/`, the "already used" number renamed (Halkbank only) and
  registered again, Halkbank handed `int(round(float(TotalPrice), 2) * 100)` tiyin; validation:
  HTTP 201 when `status` is 1, 200 when 0, `{data, status, message, total}`, Halkbank `data.
  OrderStatus` (2 paid; 0 registered, 5 3-D Secure, 6 declined, 3 reversed, 4 refunded: "Payment
  Validation: failed (OrderStatus = N)") and `data.Amount` in tiyin, TFEB `data.response.
  operationResult` "GEN-00000" and `data.transaction.totalAmount` in TMT, a text for TFEB's
  not-paid answers, an empty message when the bank cannot be asked or does not know the OrderId,
  "Payment Validation: failed, Order not found" (an old number, another account), "(Reg no or
  OrderId is None)", "(Connection error)" for an unknown payment type; the invoice found by
  account and number, OrderId never checked against it; an amount below the invoice total
  booked as a part payment (`PaymStatusId` 3, answering 201 / status 1 every time), a full one
  as `PaymStatusId` 2 (every later validation: status 0, `data: {}`, "Payment successfully
  done!", the bank not asked again); the banks' return to the ERP's own `/payment-validation/`
  page, Halkbank's carrying the merchant's bank login.
- neither (the emulator's own choices, so a test can tell): the token strings (HS256 JWTs whose
  validity the server keeps), no expiry unless `token_seconds` is set (the ERP's default is 30
  min); `/api/login/` taking Basic auth, JSON or a form `{username, password}` and answering
  `{status, message, token}` (a user token) with a `session` cookie, or 401 "Could not
  verify!"; JSON read whatever the content type; the shape of checkout's `data` and of each
  `fails[]` item's `data` (the line as sent), `fails[]` also beside "Fail", an unknown `ResId`
  or an unreadable line as error 0, the messages of refusals the documents do not word
  (`message` beside `{status: 0, data: {}}`), other `RegNumTypeId`s answering status 0; the
  banks' own fields (Halkbank RBS-like `orderId`, `formUrl`, `ErrorCode`, `currency` "934";
  TFEB's register `response` and `order`, its codes "GEN-0000N" and texts in `TFEB_TEXTS`),
  Halkbank saying "already used" for a number it has seen (a second registration) or when the
  knob `rename_next` says so, the rename happening once per register call, the pages
  (`/halkbank/payment_ru.html?mdOrder=`, `/tfeb/payment?orderId=`, `/payment-validation/`),
  which bank states may follow which, the merchant's bank login in Halkbank's return URL as
  `userName` / `password` (PROVIDERS.md: the return URL), the return page validating only
  with the knob `page_validates` (it needs a login the customer does not have), and which 401
  a user token gets (checkout: the anonymous message; validation: "Token is invalid!").

The ERP's resource table (`ResId` -> price in TMT, state), `RESOURCES`, copied into
`self.resources` at every reset; a test adds or changes one with `resource(res_id, price=...,
state=...)` or `POST /sandbox/scenario {"resources": {"110": {"price": "2.50"}}}`:
  101 green tea sachet 0.29 · 102 chorek 1.15 · 103 green tea 250 g 17.50 · 104 carpet coaster
  45.00 · 105 melon jam 1 kg 120.00 (states: active, deleted, inactive, ended).

The customer's side goes through `POST /sandbox/pay`, like the other emulators.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import html
import json
import secrets
import string
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from aiohttp import web

from sandbox.base import FakeServer

API = "/api/v1"
LOGIN = "/api/login/"
GEN_REG_NO = f"{API}/gen-reg-no/"
CHECKOUT = f"{API}/checkout-sale-order-inv/"
REGISTER = f"{API}/order-payment-register-request/"
VALIDATE = f"{API}/order-inv-validation/"
RETURN_PAGE = "/payment-validation/"
HALKBANK = "halkbank"
TFEB = "foreign_affairs_bank"
BANKS = (HALKBANK, TFEB)
REG_NUM_TYPE = 9  # sale_order_invoice_code
AWAITING_PAYMENT = 13  # InvStatId "Tölege garaşylýar"
ORDER_INV_TYPE = 2  # what the server forces OInvTypeId to
NOT_PAID, PAID, PART_PAID = 1, 2, 3  # PaymStatusId

ACTIVE, DELETED, INACTIVE, ENDED = "active", "deleted", "inactive", "ended"
STATES = (ACTIVE, DELETED, INACTIVE, ENDED)
UNKNOWN_ERROR, FALSE_PRICE = 0, 4
ERROR_TYPES = {
    0: "Unknown error",
    1: "Resource deleted",
    2: "Resource inactive",
    3: "Resource ended",
    4: "False price",
}
STATE_ERRORS = {DELETED: 1, INACTIVE: 2, ENDED: 3}

# (name, price in TMT): the ERP's resources, by ResId.
RESOURCES: dict[int, tuple[str, str]] = {
    101: ("Green tea sachet", "0.29"),
    102: ("Chorek", "1.15"),
    103: ("Green tea 250 g", "17.50"),
    104: ("Carpet coaster", "45.00"),
    105: ("Melon jam 1 kg", "120.00"),
}

# A bank order's states; /sandbox/pay's outcomes lead to them.
REGISTERED, SECURE_3DS, BANK_PAID, DECLINED, REVERSED, REFUNDED = (
    "registered",
    "pending_3ds",
    "paid",
    "declined",
    "reversed",
    "refunded",
)
OUTCOMES = ("paid", "declined", "part", "pending_3ds", "reversed", "refunded")
ORDER_STATUS = {REGISTERED: 0, BANK_PAID: 2, REVERSED: 3, REFUNDED: 4, SECURE_3DS: 5, DECLINED: 6}
TFEB_PAID = ("GEN-00000", "Successful")
TFEB_TEXTS = {  # TFEB's answer for an order that is not paid: (operationResult, description)
    REGISTERED: ("GEN-00001", "Order is not paid"),
    SECURE_3DS: ("GEN-00001", "Order is not paid"),
    DECLINED: ("GEN-00002", "Payment declined"),
    REVERSED: ("GEN-00003", "Payment reversed"),
    REFUNDED: ("GEN-00004", "Payment refunded"),
}
DONE = "Payment successfully done!"
NOT_FOUND = "Payment Validation: failed, Order not found"
NONE_GIVEN = "Payment Validation: failed (Reg no or OrderId is None)"
CONNECTION = "Payment Validation: failed (Connection error)"
KNOBS = (
    "rename_next",
    "halkbank_tmt_only",
    "bank_down",
    "delay",
    "token_seconds",
    "token_expired",
    "expire_session",
    "session_seconds",
    "part_amount",
    "page_validates",
)

Json = dict[str, Any]


def decimal_of(value: Any) -> Decimal | None:
    """A JSON number (or a numeric string) as a Decimal; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str | float):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def num(value: Decimal) -> int | float:
    """A number as the ERP writes it in JSON (17.5, 120)."""
    return int(value) if value == value.to_integral_value() else float(value)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return num(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def answer(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(
        payload, status=status, dumps=functools.partial(json.dumps, default=_default)
    )


def halkbank_tiyin(total_price: Any) -> int:
    """What the ERP hands Halkbank: its own float arithmetic, which loses a tiyin on some
    prices (0.29 -> 28, 1.15 -> 114). The only float in this emulator."""
    return int(round(float(total_price), 2) * 100)


@dataclass
class Resource:
    res_id: int
    name: str
    price: Decimal
    state: str = ACTIVE


@dataclass
class Token:
    kind: str  # "device", "rp_acc" (a customer account) or "user" (from /api/login/)
    rp_acc_guid: str | None = None


@dataclass
class Invoice:
    reg_no: str
    rp_acc_guid: str
    pm_id: Any
    currency: str
    inv_stat_id: Any
    lines: list[Json]
    total: Decimal
    sent: Json  # the orderInv as the client sent it
    paym_status_id: Any = NOT_PAID
    guid: str = field(default_factory=lambda: str(uuid.uuid4()))
    old_numbers: list[str] = field(default_factory=list)  # before each rename
    order_ids: list[str] = field(default_factory=list)  # every bank order registered for it
    validations: int = 0


@dataclass
class BankOrder:
    order_id: str
    bank: str
    reg_no: str  # the invoice number the bank was given
    total_price: Any  # TotalPrice as the client sent it
    amount: int | Decimal  # what the bank asks: tiyin (Halkbank) or TMT (TFEB)
    description: str
    checkout_url: str
    return_url: str
    state: str = REGISTERED
    paid: int | Decimal = 0  # what the bank holds, in the same unit as amount


@dataclass
class Call:
    """One API request as the ERP received it (tests look at what a client sent)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0


class ErpServer(FakeServer):
    name = "erp"
    knobs = KNOBS

    def __init__(
        self,
        login: str = "sandbox-shop",
        password: str = "erp-sandbox-password",
        pm_id: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.login = login
        self.password = password
        self.pm_id = pm_id
        self.rp_acc_guid = str(uuid.uuid4())  # the shop's customer account at the ERP
        self.halkbank_login = "sandbox_halk_merchant"  # the merchant's bank login the ERP
        self.halkbank_password = f"halk-{secrets.token_hex(6)}"  # puts in Halkbank's URLs
        self.token_header = "bearer"  # what env() says (the server takes both headers)
        self._secret = secrets.token_bytes(32)
        self._first_tokens = (self._mint("device"), self._mint("rp_acc"))
        self.reset()
        self.app.middlewares.append(self._api_middleware)
        r = self.app.router
        for path, handler in (
            (GEN_REG_NO, self._gen_reg_no),
            (CHECKOUT, self._checkout),
            (REGISTER, self._register),
            (VALIDATE, self._validate_route),
            (LOGIN, self._login),
        ):
            r.add_post(path, handler)
            r.add_route("*", path.rstrip("/"), self._slash)
        r.add_get(RETURN_PAGE, self._return_page)
        r.add_route("*", RETURN_PAGE.rstrip("/"), self._slash)
        r.add_get("/halkbank/payment_ru.html", self._bank_page)
        r.add_get("/tfeb/payment", self._bank_page)
        r.add_post("/sandbox/pay", self._pay)

    # --- settings ---------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            "ERP_API_URL": self.url,
            "ERP_TOKEN": self.device_token,
            "ERP_TOKEN_HEADER": self.token_header,
            "ERP_PM_ID": str(self.pm_id),
            "ERP_RP_ACC_GUID": self.rp_acc_guid,
            "ERP_LOGIN": self.login,
            "ERP_PASSWORD": self.password,
        }

    def hints(self) -> list[str]:
        token = f"-H 'x-access-token: {self.device_token}'"
        json_type = "-H 'content-type: application/json'"
        return [
            f"# reg no (erp): curl -XPOST {self.url}{GEN_REG_NO} {token} {json_type} "
            '-d \'{"RegNumTypeId": 9, "random_mode": 1}\'',
            f"# pay (erp): open the checkout_url, or curl -XPOST {self.url}/sandbox/pay "
            f'{json_type} -d \'{{"order_id": "<OrderId>", "outcome": "paid"}}\' '
            f"(or {', '.join(o for o in OUTCOMES if o != 'paid')})",
            f"# resources (erp): {', '.join(f'{k}={v[1]} TMT' for k, v in RESOURCES.items())}; "
            f"knobs: curl -XPOST {self.url}/sandbox/scenario {json_type} "
            "-d '{\"rename_next\": 1}'",
        ]

    def reset(self) -> None:
        """The tokens go back to the first ones (env() is unchanged); sessions, invoices,
        bank orders, resources and knobs to the just-started state."""
        self.device_token, self.customer_token = self._first_tokens
        self.tokens: dict[str, Token] = {
            self.device_token: Token("device"),
            self.customer_token: Token("rp_acc", self.rp_acc_guid),
        }
        self.tokens_since = time.monotonic()
        self.accounts = {self.rp_acc_guid}
        self.sessions: dict[str, float] = {}  # session cookie -> when logged in (monotonic)
        self.reg_nos: set[str] = set()  # issued by gen-reg-no and not yet used
        self.spent_reg_nos: set[str] = set()  # used by a checkout (kept or deleted)
        self.invoices: dict[str, Invoice] = {}  # by current OInvRegNo
        self.renamed: dict[str, str] = {}  # old OInvRegNo -> the new one
        self.deleted: list[Json] = []  # orderInvs checked out with failed lines (status 2)
        self.orders: dict[str, BankOrder] = {}  # bank orders by OrderId
        self.halkbank_numbers: set[str] = set()  # order numbers Halkbank has seen
        self.resources: dict[int, Resource] = {
            res_id: Resource(res_id, name, Decimal(price))
            for res_id, (name, price) in RESOURCES.items()
        }
        self.calls: list[Call] = []
        self.rename_next = 0  # the next N Halkbank registrations hear "already used"
        self.halkbank_tmt_only = True  # Halkbank refuses a CurrencyCode other than TMT
        self.bank_down: bool | str = False  # True, or one bank's name: it cannot be reached
        self.delay = 0.0  # seconds every /api/ call takes
        self.token_seconds: float | None = None  # tokens end this long after (re)issue
        self.token_expired = False  # every token answers "Token is invalid!"
        self.expire_session = False  # the login sessions end (at the next look)
        self.session_seconds: float | None = None  # sessions end this long after login
        self.part_amount: Any = None  # TMT an "part" outcome pays (default: half)
        self.page_validates = False  # the ERP's return page validates the invoice itself

    @property
    def checkouts(self) -> list[Any]:
        """Every checkout body as received (the PaymStatusId a client must never send)."""
        return [c.body for c in self.calls if c.path == CHECKOUT]

    @property
    def registrations(self) -> list[Call]:
        return [c for c in self.calls if c.path == REGISTER]

    @property
    def validations(self) -> list[Any]:
        return [c.body for c in self.calls if c.path == VALIDATE]

    # --- knobs a test calls ----------------------------------------------------------

    def resource(
        self,
        res_id: int,
        *,
        price: Any = None,
        state: str | None = None,
        name: str | None = None,
    ) -> Resource:
        """Add a resource (price needed) or change one: re-price, mark deleted/inactive/ended."""
        current = self.resources.get(int(res_id))
        if current is None:
            amount = decimal_of(price)
            if amount is None:
                raise ValueError("a new resource needs a price")
            current = self.resources[int(res_id)] = Resource(
                int(res_id), name or f"Resource {res_id}", amount
            )
        elif price is not None:
            amount = decimal_of(price)
            if amount is None:
                raise ValueError(f"not a price: {price!r}")
            current.price = amount
        if state is not None:
            if state not in STATES:
                raise ValueError(f"state is one of {', '.join(STATES)}")
            current.state = state
        if name is not None:
            current.name = name
        return current

    def expire_token(self) -> None:
        """The configured tokens (and users' ones) answer "Token is invalid!" from now on."""
        self.token_expired = True

    def renew_tokens(self) -> None:
        """New device and customer tokens (env() prints the new one): the admin's fix."""
        self.device_token, self.customer_token = self._mint("device"), self._mint("rp_acc")
        self.tokens = {
            self.device_token: Token("device"),
            self.customer_token: Token("rp_acc", self.rp_acc_guid),
        }
        self.tokens_since = time.monotonic()
        self.token_expired = False

    def invoice(self, reg_no: str) -> Invoice | None:
        """The invoice by its current number, or by a number it had before a rename."""
        while reg_no in self.renamed:
            reg_no = self.renamed[reg_no]
        return self.invoices.get(reg_no)

    # --- plumbing ----------------------------------------------------------------------

    def _mint(self, kind: str) -> str:
        claims = {"typ": kind, "jti": secrets.token_hex(8), "iat": int(time.time())}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    @web.middleware
    async def _api_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/api/") or not request.path.endswith("/"):
            return await handler(request)
        call = Call(request.path, dict(request.query), dict(request.headers), None)
        raw = await request.read()
        try:
            call.body = json.loads(raw.decode("utf-8"), parse_float=Decimal) if raw else None
        except (UnicodeDecodeError, ValueError):
            call.body = raw.decode("utf-8", "replace")
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(float(self.delay))
        response = await handler(request)
        call.status = response.status
        return response

    async def _slash(self, request: web.Request) -> web.Response:
        """Flask's strict slashes: 308 (the method and body kept) to the slashed route."""
        slashed = request.url.with_path(request.path + "/").with_query(request.query)
        raise web.HTTPPermanentRedirect(str(slashed))

    def _token_of(self, request: web.Request) -> str | None:
        token = request.headers.get("x-access-token")
        auth = request.headers.get("Authorization", "")
        if not token and auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        return token or None

    def _auth(self, request: web.Request) -> Token | web.Response:
        token = self._token_of(request)
        if token is None:
            return answer({"message": "Token is missing!"}, 401)
        found = self.tokens.get(token)
        lifetime = self.token_seconds
        aged = lifetime is not None and time.monotonic() - self.tokens_since >= lifetime
        if found is None or self.token_expired or aged:
            return answer({"message": "Token is invalid!"}, 401)
        return found

    @staticmethod
    async def _body(request: web.Request) -> Json | None:
        try:
            body = json.loads((await request.read()).decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    @staticmethod
    def _not_json() -> web.Response:
        return answer({"message": "Error. Not a JSON data."}, 400)

    def _new_reg_no(self) -> str:
        while True:
            letters = "".join(secrets.choice(string.ascii_uppercase) for _ in range(6))
            reg_no = f"{letters}{secrets.randbelow(10**5):05d}"
            if reg_no not in self.reg_nos and reg_no not in self.spent_reg_nos:
                return reg_no

    def _down(self, bank: str) -> bool:
        return self.bank_down is True or self.bank_down == bank

    # --- gen-reg-no ----------------------------------------------------------------------

    async def _gen_reg_no(self, request: web.Request) -> web.Response:
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        body = await self._body(request)
        if body is None:
            return self._not_json()
        if str(body.get("RegNumTypeId")) != str(REG_NUM_TYPE):
            return answer({"status": 0, "data": None, "message": "Pred Reg_no generation"})
        reg_no = self._new_reg_no()
        self.reg_nos.add(reg_no)
        return answer({"status": 1, "data": reg_no, "message": "Pred Reg_no generation"})

    # --- checkout ------------------------------------------------------------------------

    def _checkout_refused(self, message: str) -> web.Response:
        return answer({"status": 0, "data": {}, "fails": [], "message": message}, 400)

    def _check_line(self, line: Any) -> tuple[Json | None, int | None]:
        """(the line as the ERP keeps it, None) or (None, error_type_id)."""
        if not isinstance(line, dict):
            return None, UNKNOWN_ERROR
        price = decimal_of(line.get("OInvLinePrice"))
        amount = decimal_of(line.get("OInvLineAmount"))
        try:
            res_id = int(str(line.get("ResId")))
        except ValueError:
            return None, UNKNOWN_ERROR
        resource = self.resources.get(res_id)
        if resource is None or price is None or amount is None:
            return None, UNKNOWN_ERROR
        if resource.state in STATE_ERRORS:
            return None, STATE_ERRORS[resource.state]
        if price != resource.price:
            return None, FALSE_PRICE
        whole = int(amount)  # the ERP's int(): 2.9 -> 2
        kept = dict(line, ResId=res_id, OInvLineAmount=whole, OInvLinePrice=price)
        kept["OInvLineTotal"] = whole * price
        return kept, None

    async def _checkout(self, request: web.Request) -> web.Response:
        if self._token_of(request) is None:
            return answer({"message": "Failed to checkout with anonymous user!"}, 401)
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        if token.kind == "user":
            return answer({"message": "Failed to checkout with anonymous user!"}, 401)
        body = await self._body(request)
        if body is None:
            return self._not_json()
        sent = body.get("orderInv")
        if not isinstance(sent, dict):
            return self._checkout_refused("orderInv is required")
        account = token.rp_acc_guid if token.kind == "rp_acc" else sent.get("RpAccGuid")
        if not account:
            return self._checkout_refused("RpAccGuid is required")
        if account not in self.accounts:
            return self._checkout_refused("RpAccGuid not found")
        if sent.get("PmId") in (None, ""):
            return self._checkout_refused("PmId is required")
        lines = sent.get("OrderInvLines")
        if not isinstance(lines, list) or not lines:
            return self._checkout_refused("OrderInvLines is required")
        reg_no = sent.get("OInvRegNo")
        if reg_no in (None, ""):
            reg_no = self._new_reg_no()  # the ERP numbers it itself
        elif str(reg_no) not in self.reg_nos:
            return self._checkout_refused(f"OInvRegNo {reg_no} was not generated or is used")
        reg_no = str(reg_no)
        self.reg_nos.discard(reg_no)
        self.spent_reg_nos.add(reg_no)
        kept, fails = [], []
        for line in lines:
            good, error = self._check_line(line)
            if good is not None:
                kept.append(good)
            else:
                fails.append(
                    {
                        "data": line,
                        "error_type_id": error,
                        "error_type_message": ERROR_TYPES[error or 0],
                    }
                )
        if not kept:
            return answer({"status": 0, "data": {}, "fails": fails, "message": "Fail"}, 400)
        invoice = Invoice(
            reg_no=reg_no,
            rp_acc_guid=str(account),
            pm_id=sent.get("PmId"),
            currency=str(sent.get("CurrencyCode") or "TMT"),
            inv_stat_id=sent.get("InvStatId"),
            lines=kept,
            total=sum((line["OInvLineTotal"] for line in kept), Decimal(0)),
            sent=sent,
            paym_status_id=sent.get("PaymStatusId", NOT_PAID),
        )
        data = self._invoice_data(invoice)
        if fails:
            self.deleted.append(sent)  # the ERP deletes an order with failed lines
            return answer(
                {"status": 2, "data": data, "fails": fails, "message": "Sale order checkout"},
                400,
            )
        self.invoices[reg_no] = invoice
        return answer(
            {"status": 1, "data": data, "fails": [], "message": "Sale order checkout"}, 201
        )

    @staticmethod
    def _invoice_data(invoice: Invoice) -> Json:
        return {
            "OInvGuid": invoice.guid,
            "OInvRegNo": invoice.reg_no,
            "OInvTypeId": ORDER_INV_TYPE,
            "InvStatId": invoice.inv_stat_id,
            "PaymStatusId": invoice.paym_status_id,
            "PmId": invoice.pm_id,
            "RpAccGuid": invoice.rp_acc_guid,
            "CurrencyCode": invoice.currency,
            "OInvTotal": invoice.total,
            "OInvFTotal": invoice.total,
            "OrderInvLines": invoice.lines,
        }

    # --- login (TFEB's web session) -------------------------------------------------------

    def _credentials(self, request: web.Request, body: Json | None, form: Any) -> tuple[str, str]:
        auth = request.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            with contextlib.suppress(ValueError, binascii.Error, UnicodeDecodeError):
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                return user, password
        source = body if body is not None else form
        return str(source.get("username", "")), str(source.get("password", ""))

    async def _login(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        form: Any = {}
        if body is None and request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
        user, password = self._credentials(request, body, form)
        if not secrets.compare_digest(user, self.login) or not secrets.compare_digest(
            password, self.password
        ):
            return answer({"message": "Could not verify!"}, 401)
        token = self._mint("user")
        self.tokens[token] = Token("user")
        session = secrets.token_urlsafe(24)
        self.sessions[session] = time.monotonic()
        response = answer({"status": 1, "message": "Login success", "token": token})
        response.set_cookie("session", session, httponly=True, path="/")
        return response

    def _session_ok(self, request: web.Request) -> bool:
        if self.expire_session:
            self.sessions.clear()
            self.expire_session = False
        since = self.sessions.get(request.cookies.get("session", ""))
        if since is None:
            return False
        return self.session_seconds is None or time.monotonic() - since < self.session_seconds

    # --- register ------------------------------------------------------------------------

    @staticmethod
    def _register_refused(message: str) -> web.Response:
        return answer({"status": 0, "data": {}, "message": message}, 400)

    def _rename(self, invoice: Invoice) -> None:
        """Halkbank said the number is already used: the ERP gives the invoice a new one."""
        old, new = invoice.reg_no, self._new_reg_no()
        self.spent_reg_nos.add(new)
        del self.invoices[old]
        invoice.old_numbers.append(old)
        invoice.reg_no = new
        self.invoices[new] = invoice
        self.renamed[old] = new

    async def _register(self, request: web.Request) -> web.Response:
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        body = await self._body(request)
        if body is None:
            return self._not_json()
        bank = request.query.get("online_payment_type") or HALKBANK  # never the body's
        if bank not in BANKS:
            return self._register_refused(f"unknown online_payment_type {bank}")
        reg_no, total_price, desc = (body.get(k) for k in ("OInvRegNo", "TotalPrice", "OrderDesc"))
        if not isinstance(desc, str) or not desc.strip():
            return self._register_refused("OrderDesc is required")
        price = decimal_of(total_price)
        if not reg_no or price is None or price <= 0:
            return self._register_refused("OInvRegNo and TotalPrice are required")
        invoice = self.invoices.get(str(reg_no))
        if invoice is None:
            return self._register_refused(f"order invoice {reg_no} not found")
        if bank == HALKBANK and self.halkbank_tmt_only:
            currency = str(body.get("CurrencyCode") or "TMT")  # the request's, not the invoice's
            if currency.upper() != "TMT":
                return self._register_refused("Halkbank takes TMT only")
        if bank == TFEB and not self._session_ok(request):
            return self._register_refused("login required")
        if self._down(bank):
            return self._register_refused("the bank cannot be reached")
        if bank == HALKBANK:
            if self.rename_next or invoice.reg_no in self.halkbank_numbers:
                self.rename_next = max(0, int(self.rename_next) - 1)
                self._rename(invoice)
            self.halkbank_numbers.add(invoice.reg_no)
            order = self._halkbank_order(invoice, total_price, desc)
            fields: Json = {"orderId": order.order_id, "formUrl": order.checkout_url}
        else:
            order = self._tfeb_order(invoice, total_price, price, desc)
            fields = {
                "response": {
                    "operationResult": TFEB_PAID[0],
                    "operationResultDescription": TFEB_PAID[1],
                },
                "order": {"orderId": order.order_id, "paymentUrl": order.checkout_url},
            }
        self.orders[order.order_id] = order
        invoice.order_ids.append(order.order_id)
        data = {
            **fields,
            "RegNo": invoice.reg_no,
            "OInvRegNo": invoice.reg_no,
            "TotalPrice": total_price,
            "OrderDesc": desc,
            "checkout_url": order.checkout_url,
            "OrderId": order.order_id,
            "online_payment_type": bank,
        }
        return answer({"status": 1, "data": data, "message": "Order payment register request"})

    def _halkbank_order(self, invoice: Invoice, total_price: Any, desc: str) -> BankOrder:
        order_id = str(uuid.uuid4())
        login = {"userName": self.halkbank_login, "password": self.halkbank_password}
        query = urlencode({"mdOrder": order_id})  # the bank's own page: the order only
        back = urlencode({"online_payment_type": HALKBANK, **login})  # the ERP's return URL
        return BankOrder(
            order_id=order_id,
            bank=HALKBANK,
            reg_no=invoice.reg_no,
            total_price=total_price,
            amount=halkbank_tiyin(total_price),
            description=desc,
            checkout_url=f"{self.url}/halkbank/payment_ru.html?{query}",
            return_url=f"{self.url}{RETURN_PAGE}?{back}&orderId={order_id}",
        )

    def _tfeb_order(
        self, invoice: Invoice, total_price: Any, price: Decimal, desc: str
    ) -> BankOrder:
        order_id = str(10**9 + secrets.randbelow(9 * 10**9))
        back = urlencode({"online_payment_type": TFEB, "orderId": order_id})
        return BankOrder(
            order_id=order_id,
            bank=TFEB,
            reg_no=invoice.reg_no,
            total_price=total_price,
            amount=price,
            description=desc,
            checkout_url=f"{self.url}/tfeb/payment?orderId={order_id}",
            return_url=f"{self.url}{RETURN_PAGE}?{back}",
        )

    # --- validation ----------------------------------------------------------------------

    @staticmethod
    def _validation(status: int, data: Any, message: str, total: Any) -> web.Response:
        payload = {"data": data, "status": status, "message": message, "total": total}
        return answer(payload, 201 if status == 1 else 200)

    async def _validate_route(self, request: web.Request) -> web.Response:
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        if token.kind == "user":
            return answer({"message": "Token is invalid!"}, 401)
        body = await self._body(request)
        if body is None:
            return self._not_json()
        bank = body.get("online_payment_type") or HALKBANK
        if bank not in BANKS:
            return self._validation(0, {}, CONNECTION, 0)
        reg_no, order_id = body.get("OInvRegNo"), body.get("OrderId")
        if not reg_no or not order_id:
            return self._validation(0, {}, NONE_GIVEN, 0)
        account = token.rp_acc_guid if token.kind == "rp_acc" else body.get("RpAccGuid")
        invoice = self.invoices.get(str(reg_no))
        if invoice is None or invoice.rp_acc_guid != account:
            return self._validation(0, {}, NOT_FOUND, 0)
        status, data, message = self.validate(invoice, bank, str(order_id))
        return self._validation(status, data, message, invoice.total)

    def validate(self, invoice: Invoice, bank: str, order_id: str) -> tuple[int, Any, str]:
        """What the ERP does once it found the invoice: (status, data, message). It asks the
        bank about the OrderId it was given, whichever invoice that order belongs to."""
        invoice.validations += 1
        if str(invoice.paym_status_id) == str(PAID):
            return 0, {}, DONE
        if self._down(bank):
            return 0, {}, ""
        order = self.orders.get(order_id)
        if order is None or order.bank != bank:
            unknown = {"ErrorCode": "6", "ErrorMessage": "Order not found"}
            return 0, unknown if bank == HALKBANK else {}, ""
        data = self._bank_answer(order)
        if order.state != BANK_PAID:
            if bank == HALKBANK:
                return 0, data, f"Payment Validation: failed (OrderStatus = {data['OrderStatus']})"
            return 0, data, f"Payment Validation: failed ({TFEB_TEXTS[order.state][1]})"
        owed = invoice.total * 100 if bank == HALKBANK else invoice.total
        invoice.paym_status_id = PAID if order.paid >= owed else PART_PAID
        return 1, data, "Validation success"

    def _bank_answer(self, order: BankOrder) -> Json:
        held = order.paid if order.state in (BANK_PAID, REVERSED, REFUNDED) else order.amount
        if order.bank == HALKBANK:
            paid = order.state == BANK_PAID
            return {
                "ErrorCode": "0",
                "ErrorMessage": "Success",
                "OrderStatus": ORDER_STATUS[order.state],
                "OrderNumber": order.reg_no,
                "Amount": held,
                "depositAmount": order.paid if paid else 0,
                "currency": "934",
                "Pan": "4111**1111" if paid else None,
                "cardholderName": "SANDBOX CUSTOMER" if paid else None,
            }
        result = TFEB_PAID if order.state == BANK_PAID else TFEB_TEXTS[order.state]
        return {
            "response": {"operationResult": result[0], "operationResultDescription": result[1]},
            "transaction": {"orderId": order.order_id, "totalAmount": held, "currency": "TMT"},
        }

    # --- the banks' pages and the customer --------------------------------------------

    def _order_of(self, key: Any) -> BankOrder | None:
        key = str(key or "")
        if "?" in key:
            query = parse_qs(urlsplit(key).query)
            key = (query.get("mdOrder") or query.get("orderId") or [""])[0]
        return self.orders.get(key)

    async def _bank_page(self, request: web.Request) -> web.Response:
        order = self._order_of(request.query.get("mdOrder") or request.query.get("orderId"))
        if order is None:
            return web.Response(status=404, content_type="text/html", text="<h1>No order</h1>")
        esc = html.escape
        bank = "Halkbank" if order.bank == HALKBANK else "TFEB"
        amount = Decimal(order.amount) / 100 if order.bank == HALKBANK else order.amount
        buttons = "".join(f'<button name="outcome" value="{o}">{o}</button>' for o in OUTCOMES)
        return web.Response(
            content_type="text/html",
            text=(
                f"<!doctype html><meta charset=utf-8><title>{bank} sandbox</title>"
                f"<h1>{bank} sandbox payment</h1>"
                f"<p>Amount: <b>{esc(str(amount))} TMT</b></p>"
                f"<p>Order {esc(order.reg_no)}: {esc(order.description)}; "
                f"state: {esc(order.state)}</p>"
                '<form method="post" action="/sandbox/pay">'
                f'<input type="hidden" name="order_id" value="{esc(order.order_id)}">'
                '<input name="amount" placeholder="part: TMT paid" aria-label="amount">'
                f"{buttons}</form>"
            ),
        )

    def _part(self, order: BankOrder, given: Any) -> int | Decimal | None:
        """What a part payment holds, in the order's unit; None when it is not less."""
        tmt = decimal_of(given if given not in (None, "") else self.part_amount)
        halkbank = order.bank == HALKBANK
        paid: int | Decimal
        if tmt is not None:
            paid = int(tmt * 100) if halkbank else tmt
        elif halkbank:
            paid = int(order.amount) // 2
        else:
            paid = (Decimal(order.amount) / 2).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        return paid if 0 < paid < order.amount else None

    async def _pay(self, request: web.Request) -> web.Response:
        """`{"order_id" or "url", "outcome": paid|declined|part|pending_3ds|reversed|refunded,
        "amount"? (TMT, for part)}` as JSON (answers the return URL) or the bank page's form
        (303 to the ERP's return page)."""
        from_form = request.content_type != "application/json"
        body: dict[str, Any] = dict(await request.post()) if from_form else await request.json()
        order = self._order_of(body.get("order_id") or body.get("url"))
        outcome = body.get("outcome")
        if order is None or outcome not in OUTCOMES:
            return answer(
                {"error": f"unknown order or outcome (one of {', '.join(OUTCOMES)})"}, 400
            )
        if outcome in (REVERSED, REFUNDED):
            if order.state != BANK_PAID:
                return answer({"error": f"the order is {order.state}, not paid"}, 409)
            order.state = outcome
        elif order.state not in (REGISTERED, SECURE_3DS):
            return answer({"error": f"the order is already {order.state}"}, 409)
        elif outcome == "part":
            paid = self._part(order, body.get("amount"))
            if paid is None:
                return answer({"error": "a part payment is more than 0 and less"}, 400)
            order.state, order.paid = BANK_PAID, paid
        elif outcome == "paid":
            order.state, order.paid = BANK_PAID, order.amount
        else:
            order.state = outcome
        if from_form:
            raise web.HTTPSeeOther(order.return_url)
        result: Json = {"order_id": order.order_id, "state": order.state, "paid": order.paid}
        result["redirect"] = order.return_url
        return answer(result)

    async def _return_page(self, request: web.Request) -> web.Response:
        """The ERP's own page the banks send the customer back to (it needs a login)."""
        order = self._order_of(request.query.get("orderId"))
        text = "Log in to the ERP to see your order."
        if order is not None and self.page_validates:
            invoice = self.invoices.get(order.reg_no)
            if invoice is not None:
                text = self.validate(invoice, order.bank, order.order_id)[2] or "Try again later."
        return web.Response(
            content_type="text/html",
            text=(
                "<!doctype html><meta charset=utf-8><title>ERP</title>"
                f"<h1>Payment validation</h1><p>{html.escape(text)}</p>"
            ),
        )

    async def _scenario(self, request: web.Request) -> web.Response:
        """Knobs by name; also `"resources": {"<ResId>": {price?, state?, name?}}` and
        `"renew_tokens": true`."""
        body = await request.json()
        resources = body.pop("resources", {})
        renew = body.pop("renew_tokens", False)
        error = self.unknown_knobs(body)
        if error:
            return answer({"error": error}, 400)
        try:
            for res_id, change in resources.items():
                self.resource(int(res_id), **change)
        except (TypeError, ValueError) as exc:
            return answer({"error": f"resources: {exc}"}, 400)
        for key, value in body.items():
            setattr(self, key, value)
        if renew:
            self.renew_tokens()
        state: Json = self.knob_values()
        state["resources"] = {
            str(r.res_id): {"name": r.name, "price": r.price, "state": r.state}
            for r in self.resources.values()
        }
        return answer(state)
