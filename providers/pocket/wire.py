"""Pocket's wire: the Keycloak token endpoint, the customer's token, the answers read back.

Nothing here keeps a token, a secret or a body in an error: a `ProviderError` names the call
and the status, and a customer token that does not hold is refused by its kind alone.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from money import AmountFormat, AmountNotRepresentable, Money, WireKind
from providers.base import (
    BadCallback,
    PaymentState,
    PaymentStatus,
    ProviderRejected,
    ProviderUnavailable,
)
from providers.http import Token, classify, parse_json, send

NAME = "pocket"
REALM = "/auth/realms/invescore"
TOKEN_PATH = f"{REALM}/protocol/openid-connect/token"
CHECK = "/merchant/invoice/check/{id}"
CONSUMER_INVOICE = "/merchant/consumer/invoice"
V2_GENERATE = "/merchant/v2/invoicing/generate-invoice"
V2_STATE = "/merchant/v2/invoicing/invoices/invoice-id"
PG_CONFIG = "/merchant/pg/config"
# States are documented nowhere; what independent clients agree on (PROVIDERS.md). Compared in
# lower case; anything else is pending.
STATUS_MAP: dict[str, PaymentState] = {
    "paid": PaymentState.PAID,
    "unsuccess": PaymentState.FAILED,
    "cancelled": PaymentState.FAILED,
    "rejected": PaymentState.FAILED,
    "failed": PaymentState.FAILED,
}
# Whole or decimal tugrik on the wire, at least 500 (the seed: "доод дүн: 500₮").
TUGRIK = AmountFormat(frozenset({"MNT"}), WireKind.DECIMAL, decimals=2, minimum=500_00)
TOKEN_LEEWAY = 30  # seconds of clock skew allowed on the customer's token
INVOICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # goes into a URL path: nothing else passes
INFO_LIMIT = 255  # the seed gives none; Pocket shows it as the transaction note


# --- the merchant's token --------------------------------------------------------------


async def fetch_token(
    client: httpx.AsyncClient,
    sso_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str | None,
) -> Token:
    """A merchant token: client credentials, or the refresh grant when we hold a refresh
    token. Keycloak's 401 is our credentials (ProviderMisconfigured); its 400 `invalid_grant`
    a refresh token that expired or was used (ProviderRejected: the cache asks afresh)."""
    form = {"client_id": client_id, "client_secret": client_secret}
    if refresh_token:
        form |= {"grant_type": "refresh_token", "refresh_token": refresh_token}
    else:
        form["grant_type"] = "client_credentials"
    response = await send(client, NAME, "POST", f"{sso_url}{TOKEN_PATH}", data=form)
    body = json_object(response)
    if response.status_code != 200:
        code = str(body.get("error", "")) if body else ""
        wrong = code in ("unauthorized_client", "invalid_client") or response.status_code == 401
        raise classify(
            NAME,
            response.status_code,
            code,
            message=(
                "Keycloak refused POCKET_CLIENT_ID / POCKET_CLIENT_SECRET"
                if wrong
                else "the token endpoint refused"
            ),
            misconfigured_codes={"unauthorized_client", "invalid_client"},
        )
    access = body.get("access_token") if body else None
    if not isinstance(access, str) or not access:
        raise ProviderUnavailable("the token endpoint answered no token", provider=NAME)
    expires_in = _seconds(body.get("expires_in"), default=60)
    refresh = body.get("refresh_token")
    return Token(
        access, time.monotonic() + expires_in, refresh if isinstance(refresh, str) else None
    )


def _seconds(value: object, *, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return default
    return int(value)


# --- the customer's token ----------------------------------------------------------------


def customer_of(token: str, public_key: RSAPublicKey, issuer: str) -> str:
    """The customer a token from `window.Pocket.getToken` names, after checking it: RS256
    against the realm's public key, not expired, from our realm, an access token (`typ`
    Bearer where it says). Its audience is Pocket's business, documented nowhere: Keycloak
    writes `aud` as it is configured, so it is not checked here (Pocket checks the token again
    when we open the invoice with it). BadCallback otherwise."""
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            issuer=issuer,
            leeway=TOKEN_LEEWAY,
            options={"require": ["exp", "iss", "sub"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise BadCallback("the customer's token has expired", provider=NAME) from None
    except jwt.PyJWTError as exc:
        raise BadCallback(
            f"the customer's token does not hold ({type(exc).__name__})", provider=NAME
        ) from None
    if str(claims.get("typ", "Bearer")).lower() != "bearer":  # a refresh or an ID token
        raise BadCallback("the customer's token is not an access token", provider=NAME)
    return str(claims["sub"])


def public_key_of(text: str) -> RSAPublicKey:
    """POCKET_PUBLIC_KEY as Keycloak's realm page shows it (base64 DER on one line), or PEM;
    ValueError, naming the setting, for anything that is not an RSA public key."""
    key = text.strip()
    if not key.startswith("-----BEGIN"):
        body = "\n".join(key[i : i + 64] for i in range(0, len(key), 64))
        key = f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"
    try:
        loaded = load_pem_public_key(key.encode())
    except (ValueError, TypeError):
        raise ValueError("POCKET_PUBLIC_KEY: not a public key (base64 DER or PEM)") from None
    if not isinstance(loaded, RSAPublicKey):
        raise ValueError("POCKET_PUBLIC_KEY: not an RSA key (Pocket signs with RS256)")
    return loaded


# --- answers -------------------------------------------------------------------------------


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = parse_json(response.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def answer(response: httpx.Response, call: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; the error it means otherwise. Pocket's errors are
    Spring's `{status, error, message}`: the message is Pocket's words, never echoed."""
    body = json_object(response)
    if 200 <= response.status_code < 300 and body is not None:
        return body
    if 200 <= response.status_code < 300:
        raise ProviderUnavailable(f"{call} answered no JSON object", provider=NAME)
    code = str(body.get("error", "")) if body else ""
    raise classify(NAME, response.status_code, code, message=f"{call} refused")


def invoice_id(value: object) -> str:
    """An invoice id as Pocket writes it (a number in the seed's API, a string in v2)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProviderRejected("the answer names no invoice", provider=NAME, code="NO_ID")
    text = str(value).strip()
    if not INVOICE_ID.fullmatch(text):
        raise ProviderRejected("the answer names no invoice", provider=NAME, code="NO_ID")
    return text


def status_of(body: dict[str, Any], field: str) -> PaymentStatus:
    """A check answer as our status: its state in lower case, and for a paid one the amount
    (tugrik, a number) it says was paid."""
    word = str(body.get(field) or "").strip().lower()[:40]
    state = STATUS_MAP.get(word, PaymentState.PENDING)
    if state is not PaymentState.PAID:
        return PaymentStatus(state, provider_status=word or "none")
    paid = tugrik(body.get("amount"))
    if paid is None:
        return PaymentStatus(
            PaymentState.NEEDS_REVIEW, provider_status=word, detail="paid, but no amount"
        )
    return PaymentStatus(PaymentState.PAID, paid, provider_status=word)


def tugrik(value: object) -> Money | None:
    """5000, 5000.5 or "5000" (tugrik) as money; None for anything else."""
    try:
        paid = TUGRIK.from_wire(value, "MNT")
    except AmountNotRepresentable:
        return None
    return paid if paid.amount >= 0 else None
