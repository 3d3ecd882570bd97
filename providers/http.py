"""The HTTP layer every adapter shares: one send, one error mapping, log hooks, a token cache.

Adapters build wire requests and read answers; what a transport failure, a status code or a
provider's error code means for the core is decided here once, so every provider reports
trouble the same way (`ProviderUnavailable` = retry later, `ProviderRejected` = final,
`ProviderMisconfigured` = a person must fix settings). Nothing here keeps bodies, headers or
URLs in errors or logs: those carry credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Container, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, quote_plus

import httpx

from providers.base import (
    ProviderError,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
)

__all__ = [
    "RateLimited",
    "Token",
    "TokenCache",
    "call_with_token",
    "classify",
    "logging_hooks",
    "parse_json",
    "redact",
    "send",
    "with_query",
]

log = logging.getLogger("providers")

# Statuses that say "not now" rather than "no": the same request may succeed later.
RETRY_STATUSES = frozenset({408, 429})
MISCONFIGURED_STATUSES = frozenset({401, 403})
# What httpx leaves unescaped in the query of a literal URL (besides letters, digits, "-._~").
URL_QUERY_SAFE = "!$&'()*+,;=:@/?"
CODE_LIMIT = 64  # a provider "code" longer than this is probably a body; keep the head only


class RateLimited(ProviderUnavailable):
    """HTTP 429: retry later, and not before `retry_after` seconds when the provider said so."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        retry_after: float | None = None,
        code: str = "",
    ) -> None:
        super().__init__(message, provider=provider, http_status=429, code=code)
        self.retry_after = retry_after


# --- the shared send --------------------------------------------------------------------------


async def send(
    client: httpx.AsyncClient,
    provider: str,
    method: str,
    url: str,
    *,
    keep_5xx: bool = False,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP call to a provider; returns 2xx-4xx answers except 429.

    Transport errors, timeouts, 429 and 5xx raise `ProviderUnavailable`, so an adapter only ever
    reads answers that mean something. 4xx are returned because providers put meaningful
    answers there (Redoya's NOT_CONFIRMED_YET is a 400); the adapter reads its code and calls
    `classify`. `keep_5xx=True` returns 5xx too, for providers whose 500s carry an error code
    worth reading (Redoya's MoleculerError). Messages name the exception type only: httpx's
    own messages and the chained exception may carry the URL, and URLs carry credentials.
    """
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(f"timed out ({_names(exc)})", provider=provider) from None
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        # OSError and TimeoutError: what a transport (httpx-aiohttp) lets through unmapped.
        raise ProviderUnavailable(f"transport error ({_names(exc)})", provider=provider) from None
    status = response.status_code
    if status == 429:
        raise RateLimited(
            "rate limited",
            provider=provider,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )
    if status >= 500 and not keep_5xx:
        raise ProviderUnavailable("server error", provider=provider, http_status=status)
    return response


def _names(exc: BaseException) -> str:
    """The exception's type and its causes' types: httpx-aiohttp reports a refused connection
    as ConnectTimeout, and only its cause (ClientConnectorError) says what really happened."""
    names = [type(exc).__name__]
    while exc.__cause__ is not None and len(names) < 4:
        exc = exc.__cause__
        names.append(type(exc).__name__)
    return " <- ".join(names)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def with_query(url: str, query: str) -> str:
    """`url` with `query` added to whatever query it has."""
    return f"{url}{'&' if '?' in url else '?'}{query}"


def parse_json(raw: bytes | str) -> Any:
    """JSON from a request we were sent or an answer we got; ValueError for anything else,
    a body nested too deep for the parser (RecursionError) included: hostile input is a 4xx
    or a provider error, never a crash."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ValueError("not JSON") from None


# --- the one mapping to the error tree ----------------------------------------------------------


def classify(
    provider: str,
    http_status: int | None,
    code: str = "",
    *,
    message: str = "",
    unavailable_codes: Container[str] = (),
    misconfigured_codes: Container[str] = (),
    rejected_codes: Container[str] = (),
) -> ProviderError:
    """The error a provider's answer means; callers `raise classify(...)`.

    A known provider code decides first (it is more specific than the status: Redoya puts
    validation errors in 500s). Then the status: no answer (None), 5xx, 408 and 429 are
    `ProviderUnavailable`; 401 and 403 `ProviderMisconfigured`; anything else (other 4xx, and an
    error code we do not know inside a 2xx) `ProviderRejected`, because the provider answered
    and said no. `message` must be ours, never the provider's body.
    """
    code = code[:CODE_LIMIT]
    kind: type[ProviderError]
    if code and code in unavailable_codes:
        kind = ProviderUnavailable
    elif code and code in misconfigured_codes:
        kind = ProviderMisconfigured
    elif code and code in rejected_codes:
        kind = ProviderRejected
    elif http_status is None or http_status >= 500 or http_status in RETRY_STATUSES:
        kind = ProviderUnavailable
    elif http_status in MISCONFIGURED_STATUSES:
        kind = ProviderMisconfigured
    else:
        kind = ProviderRejected
    return kind(
        message or _DEFAULT_MESSAGE[kind], provider=provider, http_status=http_status, code=code
    )


_DEFAULT_MESSAGE: dict[type[ProviderError], str] = {
    ProviderUnavailable: "unavailable, try again later",
    ProviderMisconfigured: "refused our credentials or settings",
    ProviderRejected: "rejected the request",
}


# --- logging ------------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret, raw or URL-encoded, replaced by '***', for logs."""
    return _blanked(text, secret_forms(secrets))


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every way a secret may be written into a URL, in the order they are blanked.

    Encoded forms cover the ways httpx writes a secret into a URL: `params=` encodes a space
    as '+' (quote_plus); a literal URL escapes only what a query cannot hold (a space as '%20')
    and keeps the rest, '&' and '+' included.
    """
    forms = (
        form
        for secret in secrets
        if secret
        for form in (
            secret,
            quote(secret, safe=""),
            quote_plus(secret, safe=""),
            quote(secret, safe=URL_QUERY_SAFE),
        )
    )
    return tuple(dict.fromkeys(forms))


def _blanked(text: str, forms: Iterable[str]) -> str:
    for form in forms:
        text = text.replace(form, "***")
    return text


def logging_hooks(secrets: Iterable[str]) -> dict[str, list[Callable[..., Awaitable[None]]]]:
    """httpx event hooks that log each provider call (method, redacted URL, status), never
    bodies or headers. Pass to `httpx.AsyncClient(event_hooks=...)`. The secrets' encoded
    forms are worked out once, and a URL is redacted only for a line that is written."""
    forms = secret_forms(secrets)

    async def on_request(request: httpx.Request) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("-> %s %s", request.method, _blanked(str(request.url), forms))

    async def on_response(response: httpx.Response) -> None:
        if log.isEnabledFor(logging.INFO):
            request = response.request
            url = _blanked(str(request.url), forms)
            log.info("<- %s %s %s", request.method, url, response.status_code)

    return {"request": [on_request], "response": [on_response]}


# --- OAuth tokens -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Token:
    """An access token and when it stops working, in the cache's clock (monotonic seconds)."""

    access_token: str
    expires_at: float
    refresh_token: str | None = None

    def __repr__(self) -> str:  # tokens are credentials: never in a log line or a traceback
        refresh = "yes" if self.refresh_token else "no"
        return f"Token(access_token=***, expires_at={self.expires_at:.1f}, refresh={refresh})"


class TokenCache:
    """One provider's OAuth access token, shared by every call, fetched by one flight at a time.

    `fetch(refresh_token)` asks the provider for a token: with a refresh token when the cache
    has one, with None for a fresh grant (client_credentials). A token is renewed `early`
    seconds before it expires. However many coroutines find the token missing or expiring,
    one fetch runs and all of them get its result, or its error: the flight is a task the
    callers share, so one caller being cancelled does not cancel it for the others, and a token
    endpoint that is down is asked once per wave of callers, not once per caller.
    """

    def __init__(
        self,
        fetch: Callable[[str | None], Awaitable[Token]],
        *,
        clock: Callable[[], float] = time.monotonic,
        early: float = 10.0,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._early = early
        self._token: Token | None = None
        self._flight: asyncio.Task[Token] | None = None

    async def get(self) -> str:
        """A valid access token, fetching one first when there is none or it is expiring."""
        token = self._token
        if token is not None and self._clock() < token.expires_at - self._early:
            return token.access_token
        if self._flight is None:
            self._flight = asyncio.get_running_loop().create_task(self._renew(token))
            self._flight.add_done_callback(self._landed)
        return (await asyncio.shield(self._flight)).access_token

    async def invalidate(self, stale: str) -> None:
        """Forget `stale` after the provider refused it (401), if it is still the current token.

        A token renewed since then is kept, so twenty calls refused with the same old token
        cause one renewal, not twenty. The refresh token is kept: the renewal tries it first.
        """
        token = self._token
        if token is not None and token.access_token == stale:
            self._token = replace(token, expires_at=float("-inf"))

    async def _renew(self, old: Token | None) -> Token:
        """Refresh when we can, fall back to a fresh grant when the refresh is refused."""
        if old is not None and old.refresh_token:
            try:
                token = await self._fetch(old.refresh_token)
            except ProviderRejected:  # refresh token expired or revoked (Misconfigured too)
                log.info("token refresh refused; asking for a fresh grant")
                token = await self._fetch(None)
        else:
            token = await self._fetch(None)
        self._token = token
        return token

    def _landed(self, flight: asyncio.Task[Token]) -> None:
        """Let the next expiry start a new flight; mark a failure as seen (the callers got it)."""
        self._flight = None
        if not flight.cancelled():
            flight.exception()


async def call_with_token(
    cache: TokenCache, do: Callable[[str], Awaitable[httpx.Response]]
) -> httpx.Response:
    """`do(token)`, and once more with a renewed token if the provider answers 401.

    A second 401 is returned to the caller: then the credentials, not the token, are wrong.
    """
    token = await cache.get()
    response = await do(token)
    if response.status_code != 401:
        return response
    await cache.invalidate(token)
    return await do(await cache.get())
