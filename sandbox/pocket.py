"""An emulator of Pocket / Invescore's merchant API (Mongolia, MNT), written from its document
(seed 002, Mongolian) and the "Pocket / Invescore" section of PROVIDERS.md only.

Where each behaviour comes from:
- seed 002: the Keycloak token endpoint `{sso}/auth/realms/invescore/protocol/openid-connect/token`
  (form `client_id`, `client_secret`, `grant_type=client_credentials`; the answer's fields
  `access_token`, `expires_in` 600, `refresh_expires_in` 604800, `refresh_token`, `token_type`,
  `not-before-policy`, `session_state`), `POST /merchant/consumer/invoice {amount (>= 500), info,
  consumerToken}` with the bearer merchant token, the customer token as an RS256 JWT checked with
  the realm's PUBLIC_KEY, `GET|POST /merchant/pg/config {"fallBackUrl"}`, the webhook body `{id,
  amount, info, invoiceId, invoiceState, phoneNumber}` posted once an invoice is paid,
  `GET /merchant/invoice/check/{invoiceId}`, and `pocket.js` defining `window.PocketMobile` and
  `window.Pocket.getToken({}, callback)` calling back `{error, errorMessage}` or `{data}`.
- PROVIDERS.md: `grant_type=refresh_token`, `data.accessToken` / `data.refreshToken` (sent on as
  `consumerRefreshToken`), the invoice answer `{id, info, amount, terminalId}`, the echo of
  pg/config, the newer webhook fields (`orderNumber`, `holdId`, a float `amount`, a string
  `invoiceId`: knob `webhook_newer_shape`), the states (`paid`; `unsuccess`, `cancelled`,
  `rejected`, `failed`; anything else pending; this emulator writes them lowercase), and the v2
  API: `POST /merchant/v2/invoicing/generate-invoice {terminalId, amount, info, orderNumber,
  invoiceType: "PURCHASE", channel: "ecommerce"}` -> `{id, qr, orderNumber, deeplink}` and
  `POST /merchant/v2/invoicing/invoices/invoice-id {terminalId, invoiceId}` -> `{state, amount,
  ...}` (also read as GET with the two in the query string).
- neither (the emulator's own choices, so a test can tell): Keycloak's error bodies
  (`unauthorized_client` 401, `invalid_grant` / `unsupported_grant_type` 400, `invalid_token`
  401 on the API), the API's error body `{"status", "error", "message"}` (Spring-like) with 400
  / 404, the customer token's claims (Keycloak-like: `iss` the realm URL, `sub` the user, `azp`
  `pocket-mobile`, `exp` 5 minutes, `phone_number`), the key given as base64 DER like Keycloak's
  realm page shows it, integer invoice ids (strings in v2), the `pocket://` deeplink, the QR
  text, the realm page and JWKS, and `/invoice/{id}`, a page to pay by hand.

The customer's side goes through `POST /sandbox/pay`, like the other emulators.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.base import FakeServer

REALM = "/auth/realms/invescore"
TOKEN_PATH = f"{REALM}/protocol/openid-connect/token"
MIN_AMOUNT = 500  # MNT, the seed's "доод дүн: 500₮"
PAID = "paid"
FAILED = ("unsuccess", "cancelled", "rejected", "failed")
OUTCOMES = (PAID, *FAILED)
REASONS = {400: "Bad Request", 404: "Not Found", 409: "Conflict", 503: "Service Unavailable"}
CUSTOMER_CLIENT = "pocket-mobile"  # the azp of customer tokens (the app's own client)
CUSTOMER_TOKEN_SECONDS = 300
KNOBS = (
    "expires_in",
    "refresh_expires_in",
    "revoke_next",
    "token_delay",
    "uppercase_states",
    "forge_state",
    "forge_amount",
    "post_twice",
    "webhook_on_failure",
    "webhook_newer_shape",
    "webhook_timeout",
    "js_user",
    "js_error",
    "js_in_app",
    "check_status",
    "check_delay",
    "check_amount",
)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_der_b64(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def pem_of(public_key_b64: str) -> str:
    """The PEM a verifier needs from POCKET_PUBLIC_KEY (base64 DER, Keycloak's `public_key`)."""
    body = "\n".join(public_key_b64[i : i + 64] for i in range(0, len(public_key_b64), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


@dataclass
class Invoice:
    id: int
    amount: int | float
    info: str
    terminal_id: str
    kind: str  # "consumer" (the seed's API) or "v2"
    phone: str | None = None
    order_number: str | None = None
    consumer: str | None = None  # the customer token's sub
    state: str = "pending"
    created_at: float = field(default_factory=time.time)
    paid_at: float | None = None
    transaction_id: int | None = None


@dataclass
class Webhook:
    """One post to the fallback URL: what was sent and what the merchant answered."""

    url: str
    body: dict[str, Any]
    http_status: int | None = None  # None: no answer (connection refused, timeout)
    answer: str = ""


class PocketServer(FakeServer):
    name = "pocket"
    knobs = KNOBS

    def __init__(
        self,
        client_id: str = "sandbox-merchant",
        client_secret: str = "pocket-sandbox-secret",
        terminal_id: str = "7001",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client_id = client_id
        self.client_secret = client_secret
        self.terminal_id = terminal_id
        self.kid = secrets.token_hex(8)
        self.private_key = new_key()  # the realm's key: signs every token
        self.other_key = new_key()  # for tokens a test wants signed by someone else
        self.public_key = public_der_b64(self.private_key)
        self._refresh_secret = secrets.token_bytes(32)
        self._tasks: set[asyncio.Task[None]] = set()
        self.reset()
        r = self.app.router
        r.add_get(REALM, self._realm)
        r.add_get(f"{REALM}/protocol/openid-connect/certs", self._certs)
        r.add_post(TOKEN_PATH, self._token)
        r.add_post("/merchant/consumer/invoice", self._consumer_invoice)
        r.add_get("/merchant/invoice/check/{invoice_id}", self._check)
        r.add_post("/merchant/v2/invoicing/generate-invoice", self._generate)
        r.add_post("/merchant/v2/invoicing/invoices/invoice-id", self._v2_state)
        r.add_get("/merchant/v2/invoicing/invoices/invoice-id", self._v2_state)
        r.add_get("/merchant/pg/config", self._get_config)
        r.add_post("/merchant/pg/config", self._set_config)
        r.add_get("/pocket.js", self._pocket_js)
        r.add_get("/sandbox/customer-token", self._customer_token)
        r.add_get("/invoice/{invoice_id}", self._invoice_page)
        r.add_post("/sandbox/pay", self._pay)

    @property
    def issuer(self) -> str:
        return f"{self.url}{REALM}"

    def env(self) -> dict[str, str]:
        return {
            "POCKET_CLIENT_ID": self.client_id,
            "POCKET_CLIENT_SECRET": self.client_secret,
            "POCKET_TERMINAL_ID": self.terminal_id,
            "POCKET_SSO_URL": self.url,
            "POCKET_API_URL": self.url,
            "POCKET_JS_URL": f"{self.url}/pocket.js",
            "POCKET_PUBLIC_KEY": self.public_key,
            "POCKET_ISSUER": self.issuer,
        }

    def hints(self) -> list[str]:
        pay = (
            f"curl -XPOST {self.url}/sandbox/pay -H 'content-type: application/json' "
            '-d \'{"invoice_id": <id>, "outcome": "paid"}\''
        )
        return [
            f"# pay (pocket): open {self.url}/invoice/<id>, or {pay}",
            f'# fail (pocket): the same with "outcome": one of {", ".join(FAILED)}',
            f"# customer token (pocket): curl '{self.url}/sandbox/customer-token?user=ada'",
        ]

    def reset(self) -> None:
        """Also cancels the webhooks in flight. Tokens issued before are no longer valid."""
        for task in self._tasks:
            task.cancel()
        self._tasks = set()
        self.access_tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.refresh_tokens: dict[str, float] = {}
        self.invoices: dict[int, Invoice] = {}
        self.order_numbers: dict[str, int] = {}
        self.webhooks: list[Webhook] = []
        self.fallback_url: str | None = None  # the merchant's pg/config
        self.token_requests = 0  # every call of the token endpoint, good or bad
        self.refresh_requests = 0  # of which grant_type=refresh_token
        self.api_calls = 0
        self._next_id = 100001
        self.expires_in = 600  # the seed's value; a test shortens it
        self.refresh_expires_in = 604800
        self.revoke_next = 0  # the next N API calls answer 401 and revoke the token they carry
        self.token_delay = 0.0  # seconds the token endpoint takes (single-flight tests)
        self.uppercase_states = False  # "PAID" instead of "paid" in every answer and webhook
        self.forge_state: str | None = None  # the webhook says this state, whatever happened
        self.forge_amount: int | float | None = None  # ... and this amount
        self.post_twice = False  # every webhook is posted twice
        self.webhook_on_failure = False  # also post failed states (the seed: paid only)
        self.webhook_newer_shape = False  # + orderNumber, holdId; float amount, string invoiceId
        self.webhook_timeout = 10.0
        self.js_user = "sandbox-customer"  # whom pocket.js's tokens name
        self.js_error: str | None = None  # getToken calls back {error: true, errorMessage}
        self.check_status: int | None = None  # check and v2 state answer this HTTP status
        self.check_delay = 0.0  # ... after this many seconds
        self.check_amount: int | float | None = None  # ... and report this amount paid
        self.js_in_app = True  # False: an ordinary browser, no app channel; getToken never answers

    # --- tokens -------------------------------------------------------------------------

    def customer_token(
        self,
        user: str = "sandbox-customer",
        *,
        expired: bool = False,
        other_key: bool = False,
        phone: str | None = None,
    ) -> str:
        """A customer's access token as getToken gives it: RS256, the realm's issuer."""
        now = int(time.time())
        exp = now - 60 if expired else now + CUSTOMER_TOKEN_SECONDS
        claims = {
            "exp": exp,
            "iat": exp - CUSTOMER_TOKEN_SECONDS,
            "jti": secrets.token_hex(16),
            "iss": self.issuer,
            "sub": user,
            "typ": "Bearer",
            "azp": CUSTOMER_CLIENT,
            "scope": "openid profile phone",
            "preferred_username": user,
            "phone_number": phone or self.phone_of(user),
        }
        key = self.other_key if other_key else self.private_key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    @staticmethod
    def phone_of(user: str) -> str:
        return "99" + str(int.from_bytes(user.encode(), "big") % 1000000).zfill(6)

    def _customer_refresh(self, user: str) -> str:
        claims = {"sub": user, "typ": "Refresh", "exp": int(time.time()) + 1800}
        return jwt.encode(claims, self._refresh_secret, algorithm="HS256")

    def _merchant_tokens(self) -> dict[str, Any]:
        now = int(time.time())
        session = secrets.token_hex(16)
        access = jwt.encode(
            {
                "exp": now + int(self.expires_in),
                "iat": now,
                "jti": secrets.token_hex(16),
                "iss": self.issuer,
                "sub": f"service-account-{self.client_id}",
                "typ": "Bearer",
                "azp": self.client_id,
                "clientId": self.client_id,
                "session_state": session,
            },
            self.private_key,
            algorithm="RS256",
            headers={"kid": self.kid},
        )
        refresh = jwt.encode(
            {"exp": now + int(self.refresh_expires_in), "typ": "Refresh", "jti": session},
            self._refresh_secret,
            algorithm="HS256",
        )
        self.access_tokens[access] = time.monotonic() + self.expires_in
        self.refresh_tokens[refresh] = time.monotonic() + self.refresh_expires_in
        return {
            "access_token": access,
            "expires_in": self.expires_in,
            "refresh_expires_in": self.refresh_expires_in,
            "refresh_token": refresh,
            "token_type": "bearer",
            "not-before-policy": 0,
            "session_state": session,
            "scope": "profile email",
        }

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic ") and client_id is None:  # Keycloak takes both forms
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            return web.json_response(
                {
                    "error": "unauthorized_client",
                    "error_description": "Invalid client or Invalid client credentials",
                },
                status=401,
            )
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return web.json_response(self._merchant_tokens())
        if grant == "refresh_token":
            self.refresh_requests += 1
            token = str(form.get("refresh_token", ""))
            expiry = self.refresh_tokens.pop(token, None)  # Keycloak rotates them
            if expiry is None or expiry < time.monotonic():
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Invalid refresh token"},
                    status=400,
                )
            return web.json_response(self._merchant_tokens())
        return web.json_response(
            {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"},
            status=400,
        )

    async def _realm(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "realm": "invescore",
                "public_key": self.public_key,
                "token-service": f"{self.issuer}/protocol/openid-connect",
                "account-service": f"{self.issuer}/account",
                "tokens-not-before": 0,
            }
        )

    async def _certs(self, request: web.Request) -> web.Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": [jwk]})

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        """None when the bearer token is one we issued and still live; else Keycloak's 401."""
        self.api_calls += 1
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        expiry = self.access_tokens.get(token)
        if self.revoke_next > 0:
            self.revoke_next -= 1
            self.access_tokens.pop(token, None)
            expiry = None
        if expiry is not None and expiry >= time.monotonic():
            return None
        return web.json_response(
            {"error": "invalid_token", "error_description": "Token is not active"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="invescore", error="invalid_token"'},
        )

    # --- answers ------------------------------------------------------------------------

    @staticmethod
    def _bad(status: int, message: str) -> web.Response:
        reason = REASONS.get(status, "Error")
        return web.json_response(
            {"status": status, "error": reason, "message": message}, status=status
        )

    def _state(self, invoice: Invoice) -> str:
        return invoice.state.upper() if self.uppercase_states else invoice.state

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _check_amount(self, amount: Any) -> str | None:
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            return "amount must be a number"
        if amount < MIN_AMOUNT:
            return f"amount must be at least {MIN_AMOUNT}"
        return None

    def _new_invoice(self, **fields: Any) -> Invoice:
        invoice = Invoice(id=self._next_id, terminal_id=self.terminal_id, **fields)
        self._next_id += 1
        self.invoices[invoice.id] = invoice
        return invoice

    def _find(self, raw: Any) -> Invoice | None:
        try:
            return self.invoices.get(int(str(raw)))
        except ValueError:
            return None

    # --- the seed's API -----------------------------------------------------------------

    async def _consumer_invoice(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        body = await self._json(request)
        if body is None:
            return self._bad(400, "the body must be a JSON object")
        problem = self._check_amount(body.get("amount"))
        if problem:
            return self._bad(400, problem)
        info = body.get("info")
        if not isinstance(info, str) or not info.strip():
            return self._bad(400, "info is required")
        token = body.get("consumerToken")
        if not isinstance(token, str) or not token:
            return self._bad(400, "consumerToken is required")
        try:
            claims = jwt.decode(
                token,
                self.private_key.public_key(),
                algorithms=["RS256"],
                issuer=self.issuer,
                # the audience Keycloak writes is configuration: not checked here either
                options={"require": ["exp", "sub", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            return self._bad(400, "consumerToken has expired")
        except jwt.InvalidTokenError:
            return self._bad(400, "consumerToken is not valid")
        if claims.get("azp") != CUSTOMER_CLIENT:
            return self._bad(400, "consumerToken is not a customer token")
        invoice = self._new_invoice(
            amount=body["amount"],
            info=info,
            kind="consumer",
            consumer=str(claims["sub"]),
            phone=str(claims.get("phone_number") or ""),
        )
        return web.json_response(
            {
                "id": invoice.id,
                "info": invoice.info,
                "amount": invoice.amount,
                "terminalId": invoice.terminal_id,
            }
        )

    async def _checked(self, request: web.Request) -> web.Response | None:
        """What a state query answers before it looks (the token, then the knobs)."""
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        if self.check_delay:
            await asyncio.sleep(self.check_delay)
        if self.check_status is not None:
            return self._bad(self.check_status, "the knob check_status")
        return None

    def _reported(self, invoice: Invoice) -> int | float:
        return invoice.amount if self.check_amount is None else self.check_amount

    async def _check(self, request: web.Request) -> web.Response:
        refused = await self._checked(request)
        if refused is not None:
            return refused
        invoice = self._find(request.match_info["invoice_id"])
        if invoice is None:
            return self._bad(404, "invoice not found")
        return web.json_response(
            {
                "id": invoice.id,
                "amount": self._reported(invoice),
                "info": invoice.info,
                "terminalId": invoice.terminal_id,
                "invoiceState": self._state(invoice),
                "phoneNumber": invoice.phone if invoice.state == PAID else None,
            }
        )

    async def _get_config(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        return web.json_response({"fallBackUrl": self.fallback_url})

    async def _set_config(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        body = await self._json(request)
        url = (body or {}).get("fallBackUrl")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return self._bad(400, "fallBackUrl must be an http(s) URL")
        self.fallback_url = url
        return web.json_response({"fallBackUrl": url})

    # --- the v2 invoicing API (PROVIDERS.md) --------------------------------------------

    async def _generate(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        body = await self._json(request)
        if body is None:
            return self._bad(400, "the body must be a JSON object")
        if str(body.get("terminalId")) != self.terminal_id:
            return self._bad(400, "unknown terminalId")
        problem = self._check_amount(body.get("amount"))
        if problem:
            return self._bad(400, problem)
        info, order_number = body.get("info"), body.get("orderNumber")
        if not isinstance(info, str) or not info.strip():
            return self._bad(400, "info is required")
        if not isinstance(order_number, str) or not order_number:
            return self._bad(400, "orderNumber is required")
        if body.get("invoiceType") != "PURCHASE" or body.get("channel") != "ecommerce":
            return self._bad(400, 'invoiceType must be "PURCHASE" and channel "ecommerce"')
        if order_number in self.order_numbers:
            return self._bad(409, "orderNumber already used")
        invoice = self._new_invoice(
            amount=body["amount"], info=info, kind="v2", order_number=order_number
        )
        self.order_numbers[order_number] = invoice.id
        return web.json_response(
            {
                "id": str(invoice.id),
                "qr": f"POCKET:INVOICE:{invoice.id}:{invoice.amount}",
                "orderNumber": order_number,
                "deeplink": f"pocket://invoice?id={invoice.id}",
            }
        )

    async def _v2_state(self, request: web.Request) -> web.Response:
        refused = await self._checked(request)
        if refused is not None:
            return refused
        body = dict(request.query) if request.method == "GET" else await self._json(request)
        if body is None:
            return self._bad(400, "the body must be a JSON object")
        if str(body.get("terminalId")) != self.terminal_id:
            return self._bad(400, "unknown terminalId")
        invoice = self._find(body.get("invoiceId"))
        if invoice is None:
            return self._bad(404, "invoice not found")
        return web.json_response(
            {
                "id": str(invoice.id),
                "state": self._state(invoice),
                "amount": self._reported(invoice),
                "info": invoice.info,
                "orderNumber": invoice.order_number,
                "terminalId": invoice.terminal_id,
            }
        )

    # --- the customer in the Pocket app -------------------------------------------------

    def _customer_pair(self, user: str) -> dict[str, str]:
        return {
            "accessToken": self.customer_token(user),
            "refreshToken": self._customer_refresh(user),
        }

    async def _customer_token(self, request: web.Request) -> web.Response:
        """What getToken's `data` holds; CORS-open, since pocket.js runs on the bot's page."""
        user = request.query.get("user") or self.js_user
        return web.json_response(
            self._customer_pair(user), headers={"Access-Control-Allow-Origin": "*"}
        )

    async def _pocket_js(self, request: web.Request) -> web.Response:
        """A stand-in for Pocket's pocket.js: getToken fetches a fresh token from the
        emulator, and falls back on one minted when the script was served."""
        user = request.query.get("user") or self.js_user
        endpoint = f"{self.url}/sandbox/customer-token?user="
        script = POCKET_JS % {
            "endpoint": json.dumps(endpoint),
            "user": json.dumps(user),
            "fallback": json.dumps(self._customer_pair(user)),
            "error": json.dumps(self.js_error),
            "in_app": json.dumps(bool(self.js_in_app)),
        }
        return web.Response(
            text=script,
            content_type="application/javascript",
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
        )

    async def _invoice_page(self, request: web.Request) -> web.Response:
        invoice = self._find(request.match_info["invoice_id"])
        if invoice is None:
            return web.Response(status=404, content_type="text/html", text="<h1>No invoice</h1>")
        esc = html.escape
        buttons = "".join(f'<button name="outcome" value="{o}">{o}</button>' for o in OUTCOMES)
        return web.Response(
            content_type="text/html",
            text=(
                "<!doctype html><meta charset=utf-8><title>Pocket sandbox</title>"
                "<h1>Pocket sandbox invoice</h1>"
                f"<p>Amount: <b>{esc(str(invoice.amount))} MNT</b></p>"
                f"<p>Info: {esc(invoice.info)}</p>"
                f"<p>Invoice {invoice.id}; state: {esc(invoice.state)}</p>"
                '<form method="post" action="/sandbox/pay">'
                f'<input type="hidden" name="invoice_id" value="{invoice.id}">'
                f"{buttons}</form>"
            ),
        )

    async def _pay(self, request: web.Request) -> web.Response:
        """`{"invoice_id", "outcome": paid|unsuccess|cancelled|rejected|failed, "phone"?}` as
        JSON (answers the new state) or as the invoice page's form."""
        from_form = request.content_type != "application/json"
        body: dict[str, Any] = dict(await request.post()) if from_form else await request.json()
        invoice = self._find(body.get("invoice_id"))
        outcome = body.get("outcome")
        if invoice is None or outcome not in OUTCOMES:
            return web.json_response(
                {"error": f"unknown invoice or outcome (one of {', '.join(OUTCOMES)})"},
                status=400,
            )
        if invoice.state != "pending":
            return web.json_response(
                {"error": f"the invoice is already {invoice.state}"}, status=409
            )
        invoice.state = str(outcome)
        if body.get("phone"):
            invoice.phone = str(body["phone"])
        if invoice.phone is None:
            invoice.phone = self.phone_of(self.js_user)
        if outcome == PAID:
            invoice.paid_at = time.time()
        invoice.transaction_id = secrets.randbelow(9 * 10**8) + 10**8
        if outcome == PAID or self.webhook_on_failure:
            self._send_webhook(invoice)
        if from_form:
            return web.Response(
                content_type="text/html",
                text=f"<!doctype html><h1>Invoice {invoice.id}: {html.escape(invoice.state)}</h1>",
            )
        return web.json_response({"invoice_id": invoice.id, "invoiceState": invoice.state})

    # --- the webhook --------------------------------------------------------------------

    def webhook_body(self, invoice: Invoice) -> dict[str, Any]:
        amount = invoice.amount if self.forge_amount is None else self.forge_amount
        state = self.forge_state or self._state(invoice)
        body: dict[str, Any] = {
            "id": invoice.transaction_id,
            "amount": amount,
            "info": invoice.info,
            "invoiceId": invoice.id,
            "invoiceState": state,
            "phoneNumber": invoice.phone,
        }
        if self.webhook_newer_shape:
            body.update(
                amount=float(amount),
                invoiceId=str(invoice.id),
                orderNumber=invoice.order_number,
                holdId=None,
            )
        return body

    def _send_webhook(self, invoice: Invoice) -> None:
        if not self.fallback_url:
            return
        body = self.webhook_body(invoice)
        task = asyncio.create_task(self._post(self.fallback_url, body, 2 if self.post_twice else 1))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, body: dict[str, Any], times: int) -> None:
        timeout = aiohttp.ClientTimeout(total=self.webhook_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _ in range(times):
                sent = Webhook(url, body)
                self.webhooks.append(sent)
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.post(url, json=body) as answer:
                        sent.http_status = answer.status
                        sent.answer = await answer.text()

    async def settle(self) -> None:
        """Wait for the webhooks in flight (tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().stop()


POCKET_JS = """// The Pocket sandbox's stand-in for pocket.js (PocketMobile, Pocket.getToken).
(function () {
  var endpoint = %(endpoint)s;
  var user = %(user)s;
  var fallback = %(fallback)s;
  var error = %(error)s;
  var inApp = %(in_app)s;
  if (inApp) { window.PocketMobile = window.PocketMobile || {}; }
  window.Pocket = window.Pocket || {};
  window.Pocket.getToken = function (params, callback) {
    if (typeof params === "function") { callback = params; }
    if (!window.PocketMobile) { return; }  // outside the app nobody answers
    if (error) {
      setTimeout(function () { callback({ error: true, errorMessage: error }); }, 0);
      return;
    }
    var give = function (data) { callback({ error: false, data: data }); };
    if (typeof fetch !== "function") { setTimeout(function () { give(fallback); }, 0); return; }
    fetch(endpoint + encodeURIComponent(user))
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(give, function () { give(fallback); });
  };
})();
"""
