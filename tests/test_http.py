"""providers/http.py over real loopback HTTP: the send mapping, classify, log redaction and the
single-flight token cache. A small aiohttp server answers each case; nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

from providers.base import (
    ProviderError,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
)
from providers.http import (
    RateLimited,
    Token,
    TokenCache,
    call_with_token,
    classify,
    logging_hooks,
    redact,
    send,
)
from sandbox.base import FakeServer

PROVIDER = "pocket"
SECRET = "s3cr3t key/with+odd&chars"
BODY_MARKER = "body-must-not-be-logged"

Handler = Callable[[web.Request], Awaitable[web.Response]]


class Server(FakeServer):
    """Answers every case `send` must map, plus an OAuth token endpoint that counts its grants
    and an API that accepts only the newest access token."""

    name = "http-test"

    def __init__(self) -> None:
        super().__init__()
        self.grants: list[str] = []  # grant_type of every token request, in order
        self.refresh_refused = False
        self.token_down = False
        self.token_delay = 0.05  # long enough that concurrent callers really overlap
        self.valid: set[str] = set()  # access tokens the API accepts
        self.api_calls = 0
        self.app.add_routes(
            [
                web.get("/ok", self.ok),
                web.get("/missing", self.status(404)),
                web.get("/limited", self.limited),
                web.get("/broken", self.status(500, '{"name":"MoleculerError","code":"E1"}')),
                web.get("/down", self.status(503)),
                web.get("/slow", self.slow),
                web.post("/token", self.token),
                web.get("/api", self.api),
            ]
        )

    @staticmethod
    def status(code: int, text: str = BODY_MARKER) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=code, text=text, content_type="application/json")

        return handler

    async def ok(self, request: web.Request) -> web.Response:
        return web.Response(text=BODY_MARKER)

    async def limited(self, request: web.Request) -> web.Response:
        headers = {"Retry-After": request.query["after"]} if "after" in request.query else {}
        return web.Response(status=429, headers=headers)

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="late")

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        self.grants.append(grant)
        await asyncio.sleep(self.token_delay)
        if self.token_down:
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        if grant == "refresh_token" and (
            self.refresh_refused or not str(form.get("refresh_token", "")).startswith("rt-")
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        n = len(self.grants)
        self.valid = {f"at-{n}"}  # a new token retires the old ones
        return web.json_response(
            {"access_token": f"at-{n}", "expires_in": 600, "refresh_token": f"rt-{n}"}
        )

    async def api(self, request: web.Request) -> web.Response:
        self.api_calls += 1
        if request.headers.get("Authorization", "").removeprefix("Bearer ") in self.valid:
            return web.json_response({"ok": True})
        return web.json_response({"error": "invalid_token"}, status=401)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    fake = Server()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(params=["httpx", "aiohttp"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Both transports: production runs httpx-aiohttp, which maps errors its own way."""
    transport = AiohttpTransport() if request.param == "aiohttp" else None
    async with httpx.AsyncClient(
        transport=transport, timeout=2.0, event_hooks=logging_hooks([SECRET])
    ) as http:
        yield http


# --- send ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status"), [("/ok", 200), ("/missing", 404)])
async def test_send_returns_answers_that_mean_something(
    client: httpx.AsyncClient, server: Server, path: str, status: int
) -> None:
    response = await send(client, PROVIDER, "GET", server.url + path)
    assert response.status_code == status


@pytest.mark.parametrize(("path", "status"), [("/broken", 500), ("/down", 503)])
async def test_send_turns_5xx_into_unavailable(
    client: httpx.AsyncClient, server: Server, path: str, status: int
) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        await send(client, PROVIDER, "GET", server.url + path)
    assert caught.value.http_status == status
    assert caught.value.provider == PROVIDER
    assert BODY_MARKER not in str(caught.value)


async def test_keep_5xx_returns_the_500_to_read_its_code(
    client: httpx.AsyncClient, server: Server
) -> None:
    response = await send(client, PROVIDER, "GET", f"{server.url}/broken", keep_5xx=True)
    assert response.status_code == 500
    assert response.json()["code"] == "E1"


async def test_keep_5xx_still_raises_on_429(client: httpx.AsyncClient, server: Server) -> None:
    with pytest.raises(RateLimited):
        await send(client, PROVIDER, "GET", f"{server.url}/limited", keep_5xx=True)


def _in(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("after", "low", "high"),
    [("7", 7.0, 7.0), (30, 25.0, 31.0), (-30, 0.0, 0.0)],
    ids=["seconds", "date", "past-date"],
)
async def test_429_is_unavailable_with_retry_after(
    client: httpx.AsyncClient, server: Server, after: str | int, low: float, high: float
) -> None:
    after = after if isinstance(after, str) else _in(after)  # dated when the test runs
    with pytest.raises(ProviderUnavailable) as caught:
        await send(client, PROVIDER, "GET", f"{server.url}/limited", params={"after": after})
    assert isinstance(caught.value, RateLimited)
    assert caught.value.http_status == 429
    assert caught.value.retry_after is not None
    assert low <= caught.value.retry_after <= high


@pytest.mark.parametrize("query", [{}, {"after": "soon"}], ids=["absent", "garbage"])
async def test_429_without_a_usable_retry_after(
    client: httpx.AsyncClient, server: Server, query: dict[str, str]
) -> None:
    with pytest.raises(RateLimited) as caught:
        await send(client, PROVIDER, "GET", f"{server.url}/limited", params=query)
    assert caught.value.retry_after is None


async def test_timeout_is_unavailable(client: httpx.AsyncClient, server: Server) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        await send(client, PROVIDER, "GET", f"{server.url}/slow?key={SECRET}", timeout=0.05)
    assert "timed out" in str(caught.value)
    assert caught.value.http_status is None
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None  # the transport's exception (and its URL) stays out


async def test_connection_refused_is_unavailable(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderUnavailable) as caught:
        await send(client, PROVIDER, "GET", f"http://127.0.0.1:{port}/x?key={SECRET}")
    message = str(caught.value)
    assert "ConnectError" in message or "ClientConnectorError" in message  # httpx, aiohttp
    assert str(port) not in message
    assert SECRET not in message


# --- classify -----------------------------------------------------------------------------------

CODES = {
    "unavailable_codes": {"BUSY"},
    "misconfigured_codes": {"WRONG_KEY"},
    "rejected_codes": {"DECLINED", "VALIDATION"},
}


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (None, "", ProviderUnavailable),  # no answer at all
        (500, "", ProviderUnavailable),
        (502, "", ProviderUnavailable),
        (503, "", ProviderUnavailable),
        (429, "", ProviderUnavailable),
        (408, "", ProviderUnavailable),
        (401, "", ProviderMisconfigured),
        (403, "", ProviderMisconfigured),
        (400, "", ProviderRejected),
        (404, "", ProviderRejected),
        (409, "", ProviderRejected),
        (422, "", ProviderRejected),
        (200, "SOMETHING_NEW", ProviderRejected),  # the provider said no in a 200
        (200, "BUSY", ProviderUnavailable),
        (400, "BUSY", ProviderUnavailable),
        (200, "WRONG_KEY", ProviderMisconfigured),
        (None, "WRONG_KEY", ProviderMisconfigured),
        (400, "WRONG_KEY", ProviderMisconfigured),
        (200, "DECLINED", ProviderRejected),
        (500, "VALIDATION", ProviderRejected),  # a known code beats the status (Redoya's 500s)
        (403, "DECLINED", ProviderRejected),
        (500, "UNKNOWN", ProviderUnavailable),
        (401, "UNKNOWN", ProviderMisconfigured),
    ],
)
def test_classify_walks_the_table(status: int | None, code: str, kind: type[ProviderError]) -> None:
    error = classify(PROVIDER, status, code, **CODES)
    assert type(error) is kind
    assert (error.provider, error.http_status, error.code) == (PROVIDER, status, code)


def test_classify_carries_our_message_and_caps_the_code() -> None:
    error = classify(PROVIDER, 400, "X" * 500, message="refund refused")
    assert isinstance(error, ProviderRejected)
    assert len(error.code) == 64
    assert str(error).startswith(f"[{PROVIDER}] refund refused (HTTP 400)")
    assert str(classify(PROVIDER, None))  # a default message when the caller gives none


# --- logging ------------------------------------------------------------------------------------


def test_redact_catches_every_way_a_secret_is_written() -> None:
    for form in (SECRET, quote(SECRET, safe=""), str(httpx.URL("http://h", params={"k": SECRET}))):
        assert SECRET not in redact(form, [SECRET])
        assert "***" in redact(form, [SECRET])
    assert redact("nothing here", ["", SECRET]) == "nothing here"


async def test_secrets_never_reach_the_log(
    client: httpx.AsyncClient, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="providers")
    headers = {"Authorization": f"Bearer {SECRET}"}
    await send(client, PROVIDER, "GET", f"{server.url}/ok", params={"key": SECRET}, headers=headers)
    await send(client, PROVIDER, "GET", f"{server.url}/ok?key={SECRET}")
    with pytest.raises(ProviderUnavailable) as caught:
        await send(client, PROVIDER, "GET", f"{server.url}/down", params={"key": SECRET})
    lines = [r.getMessage() for r in caplog.records if r.name == "providers"]
    assert any(line.startswith("<- GET") and "/ok?key=***" in line for line in lines), lines
    assert any("/down" in line and "503" in line for line in lines), lines
    text = "\n".join(lines) + str(caught.value)
    for form in (SECRET, quote(SECRET, safe=""), "s3cr3t"):
        assert form not in text
    assert BODY_MARKER not in text


# --- the token cache ----------------------------------------------------------------------------


def token_fetch(
    client: httpx.AsyncClient, server: Server, clock: FakeClock
) -> Callable[[str | None], Awaitable[Token]]:
    """The adapter's side of the cache, as Pocket's would be: send, classify, a Token."""

    async def fetch(refresh: str | None) -> Token:
        start = clock()
        grant = {"grant_type": "refresh_token", "refresh_token": refresh} if refresh else {}
        response = await send(
            client,
            PROVIDER,
            "POST",
            f"{server.url}/token",
            data=grant or {"grant_type": "client_credentials"},
            auth=("client", SECRET),
        )
        body = response.json()
        if response.status_code != 200:
            raise classify(
                PROVIDER,
                response.status_code,
                str(body.get("error", "")),
                message="token refused",
                rejected_codes={"invalid_grant"},
            )
        return Token(body["access_token"], start + body["expires_in"], body.get("refresh_token"))

    return fetch


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(client: httpx.AsyncClient, server: Server, clock: FakeClock) -> TokenCache:
    return TokenCache(token_fetch(client, server, clock), clock=clock)


async def test_fifty_concurrent_gets_fetch_once(cache: TokenCache, server: Server) -> None:
    tokens = await asyncio.gather(*(cache.get() for _ in range(50)))
    assert set(tokens) == {"at-1"}
    assert server.grants == ["client_credentials"]
    assert await cache.get() == "at-1"  # still fresh: no new fetch
    assert len(server.grants) == 1


async def test_expiring_token_is_refreshed(
    cache: TokenCache, server: Server, clock: FakeClock
) -> None:
    assert await cache.get() == "at-1"
    clock.now += 589  # 11 s left: still used
    assert await cache.get() == "at-1"
    clock.now += 2  # 9 s left: inside the 10 s margin
    tokens = await asyncio.gather(*(cache.get() for _ in range(20)))
    assert set(tokens) == {"at-2"}
    assert server.grants == ["client_credentials", "refresh_token"]


async def test_refused_refresh_falls_back_to_a_fresh_grant(
    cache: TokenCache, server: Server, clock: FakeClock
) -> None:
    await cache.get()
    server.refresh_refused = True
    clock.now += 600
    assert await cache.get() == "at-3"
    assert server.grants == ["client_credentials", "refresh_token", "client_credentials"]


async def test_a_failing_token_endpoint_is_asked_once_per_wave(
    cache: TokenCache, server: Server
) -> None:
    server.token_down = True
    results = await asyncio.gather(*(cache.get() for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, ProviderUnavailable) for r in results)
    assert len(server.grants) == 1
    server.token_down = False
    assert await cache.get() == "at-2"  # the next wave tries again


async def test_twenty_401s_cause_one_refresh(
    cache: TokenCache, client: httpx.AsyncClient, server: Server
) -> None:
    async def call(token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return await send(client, PROVIDER, "GET", f"{server.url}/api", headers=headers)

    assert (await call_with_token(cache, call)).status_code == 200
    server.valid = set()  # the provider drops the token before it expires
    responses = await asyncio.gather(*(call_with_token(cache, call) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert server.grants == ["client_credentials", "refresh_token"]
    assert server.api_calls == 1 + 20 + 20


async def test_invalidate_keeps_a_token_renewed_since(
    cache: TokenCache, server: Server, clock: FakeClock
) -> None:
    old = await cache.get()
    clock.now += 600
    new = await cache.get()
    await cache.invalidate(old)  # a late 401 for the old token
    assert await cache.get() == new
    assert len(server.grants) == 2


async def test_a_second_401_is_returned(cache: TokenCache, server: Server) -> None:
    async def refused(token: str) -> httpx.Response:
        return httpx.Response(401)

    response = await call_with_token(cache, refused)
    assert response.status_code == 401
    assert server.grants == ["client_credentials", "refresh_token"]


def test_token_repr_hides_the_tokens() -> None:
    token = Token("access-secret", 12.0, "refresh-secret")
    for text in (repr(token), str(token), f"{token!r} {[token]}"):
        assert "access-secret" not in text
        assert "refresh-secret" not in text
