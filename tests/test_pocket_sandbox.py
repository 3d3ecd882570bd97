"""The Pocket / Invescore emulator over real HTTP, as a client written from seed 002 and
PROVIDERS.md would see it: a merchant token from the Keycloak endpoint, customer tokens checked
with the public key its env() prints."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from sandbox.pocket import MIN_AMOUNT, TOKEN_PATH, PocketServer, pem_of
from tests.test_sandbox import receiver


async def token_call(
    http: aiohttp.ClientSession, pocket: PocketServer, **form: str
) -> tuple[int, dict[str, Any]]:
    env = pocket.env()
    data = {
        "client_id": env["POCKET_CLIENT_ID"],
        "client_secret": env["POCKET_CLIENT_SECRET"],
        "grant_type": "client_credentials",
        **form,
    }
    async with http.post(f"{env['POCKET_SSO_URL']}{TOKEN_PATH}", data=data) as answer:
        return answer.status, await answer.json()


async def merchant_token(http: aiohttp.ClientSession, pocket: PocketServer) -> str:
    status, body = await token_call(http, pocket)
    assert status == 200, body
    return body["access_token"]


async def api(
    http: aiohttp.ClientSession,
    pocket: PocketServer,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{pocket.env()['POCKET_API_URL']}{path}"
    async with http.request(method, url, json=body, headers=headers, **kwargs) as answer:
        return answer.status, await answer.json()


async def invoice(
    http: aiohttp.ClientSession, pocket: PocketServer, token: str, **fields: Any
) -> tuple[int, Any]:
    body = {"amount": 560, "info": "Нэхэмжлэх", "consumerToken": pocket.customer_token("ada")}
    body.update(fields)
    return await api(http, pocket, "POST", "/merchant/consumer/invoice", token, body)


async def pay(http: aiohttp.ClientSession, pocket: PocketServer, invoice_id: Any, outcome: str):
    async with http.post(
        f"{pocket.url}/sandbox/pay", json={"invoice_id": invoice_id, "outcome": outcome}
    ) as answer:
        return answer.status, await answer.json()


def verify(pocket: PocketServer, token: str) -> dict[str, Any]:
    env = pocket.env()
    return jwt.decode(
        token, pem_of(env["POCKET_PUBLIC_KEY"]), algorithms=["RS256"], issuer=env["POCKET_ISSUER"]
    )


# --- tokens ----------------------------------------------------------------------------------


async def test_client_credentials_give_the_seeds_fields(
    pocket: PocketServer, http: aiohttp.ClientSession
) -> None:
    status, body = await token_call(http, pocket)
    assert status == 200
    assert body["expires_in"] == 600
    assert body["refresh_expires_in"] == 604800
    assert body["token_type"] == "bearer"
    assert {"access_token", "refresh_token", "not-before-policy", "session_state"} <= set(body)
    assert pocket.token_requests == 1
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "RS256"


async def test_refresh_gives_a_new_token_once_per_refresh_token(
    pocket: PocketServer, http: aiohttp.ClientSession
) -> None:
    _, first = await token_call(http, pocket)
    status, second = await token_call(
        http, pocket, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200
    assert second["access_token"] != first["access_token"]
    status, _ = await api(http, pocket, "GET", "/merchant/pg/config", second["access_token"])
    assert status == 200
    status, again = await token_call(
        http, pocket, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert (status, again["error"]) == (400, "invalid_grant")
    assert (pocket.token_requests, pocket.refresh_requests) == (3, 2)


async def test_wrong_credentials_are_keycloaks_401(
    pocket: PocketServer, http: aiohttp.ClientSession
) -> None:
    status, body = await token_call(http, pocket, client_secret="nope")
    assert status == 401
    assert body["error"] == "unauthorized_client"
    status, body = await token_call(http, pocket, grant_type="password")
    assert (status, body["error"]) == (400, "unsupported_grant_type")


async def test_a_short_expiry_ends_the_token(
    pocket: PocketServer, http: aiohttp.ClientSession
) -> None:
    pocket.expires_in = 1
    status, body = await token_call(http, pocket)
    assert body["expires_in"] == 1
    await asyncio.sleep(1.1)
    status, body = await api(http, pocket, "GET", "/merchant/pg/config", body["access_token"])
    assert (status, body["error"]) == (401, "invalid_token")


async def test_the_revoke_knob_answers_401_and_a_new_token_works(
    pocket: PocketServer, http: aiohttp.ClientSession
) -> None:
    token = await merchant_token(http, pocket)
    pocket.revoke_next = 1
    status, _ = await api(http, pocket, "GET", "/merchant/pg/config", token)
    assert status == 401
    status, _ = await api(http, pocket, "GET", "/merchant/pg/config", token)
    assert status == 401  # that token stays revoked
    status, _ = await api(
        http, pocket, "GET", "/merchant/pg/config", await merchant_token(http, pocket)
    )
    assert status == 200
    status, _ = await api(http, pocket, "GET", "/merchant/pg/config", None)
    assert status == 401


# --- the seed's invoice ------------------------------------------------------------------


async def test_invoice_with_a_valid_customer_token(
    pocket: PocketServer, http: aiohttp.ClientSession
) -> None:
    token = await merchant_token(http, pocket)
    status, body = await invoice(http, pocket, token)
    assert status == 200, body
    assert body == {
        "id": body["id"],
        "info": "Нэхэмжлэх",
        "amount": 560,
        "terminalId": pocket.env()["POCKET_TERMINAL_ID"],
    }
    assert isinstance(body["id"], int)
    assert pocket.invoices[body["id"]].consumer == "ada"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": MIN_AMOUNT - 1}, "at least 500"),
        ({"amount": "560"}, "number"),
        ({"info": ""}, "info"),
        ({"consumerToken": None}, "required"),
        ("expired", "expired"),
        ("other_key", "not valid"),
        ("merchant", "not a customer token"),
    ],
)
async def test_invoice_refusals(
    pocket: PocketServer, http: aiohttp.ClientSession, fields: Any, message: str
) -> None:
    token = await merchant_token(http, pocket)
    if fields == "expired":
        fields = {"consumerToken": pocket.customer_token("ada", expired=True)}
    elif fields == "other_key":
        fields = {"consumerToken": pocket.customer_token("ada", other_key=True)}
    elif fields == "merchant":
        fields = {"consumerToken": token}
    status, body = await invoice(http, pocket, token, **fields)
    assert status == 400
    assert message in body["message"]
    assert not pocket.invoices


async def test_check_answers_every_state(pocket: PocketServer, http: aiohttp.ClientSession) -> None:
    token = await merchant_token(http, pocket)
    seen = {}
    for outcome in ("pending", "paid", "unsuccess", "cancelled", "rejected", "failed"):
        _, made = await invoice(http, pocket, token)
        if outcome != "pending":
            assert (await pay(http, pocket, made["id"], outcome))[0] == 200
        status, body = await api(
            http, pocket, "GET", f"/merchant/invoice/check/{made['id']}", token
        )
        assert status == 200
        assert (body["id"], body["amount"]) == (made["id"], 560)
        seen[outcome] = body["invoiceState"]
    assert seen == {s: s for s in seen}
    assert (await pay(http, pocket, made["id"], "paid"))[0] == 409  # already final
    pocket.uppercase_states = True
    _, body = await api(http, pocket, "GET", f"/merchant/invoice/check/{made['id']}", token)
    assert body["invoiceState"] == "FAILED"
    status, _ = await api(http, pocket, "GET", "/merchant/invoice/check/999", token)
    assert status == 404


# --- v2 --------------------------------------------------------------------------------------


async def test_v2_generate_and_state(pocket: PocketServer, http: aiohttp.ClientSession) -> None:
    token = await merchant_token(http, pocket)
    terminal = pocket.env()["POCKET_TERMINAL_ID"]
    order = {
        "terminalId": terminal,
        "amount": 1500,
        "info": "Tea",
        "orderNumber": "o-1",
        "invoiceType": "PURCHASE",
        "channel": "ecommerce",
    }
    path = "/merchant/v2/invoicing/generate-invoice"
    status, made = await api(http, pocket, "POST", path, token, order)
    assert status == 200, made
    assert set(made) == {"id", "qr", "orderNumber", "deeplink"}
    assert made["orderNumber"] == "o-1"
    assert (await api(http, pocket, "POST", path, token, order))[0] == 409
    assert (await api(http, pocket, "POST", path, token, {**order, "amount": 10}))[0] == 400
    state_path = "/merchant/v2/invoicing/invoices/invoice-id"
    ask = {"terminalId": terminal, "invoiceId": made["id"]}
    status, body = await api(http, pocket, "POST", state_path, token, ask)
    assert (status, body["state"], body["amount"]) == (200, "pending", 1500)
    await pay(http, pocket, made["id"], "paid")
    status, body = await api(http, pocket, "GET", state_path, token, params=ask)
    assert (status, body["state"]) == (200, "paid")


# --- pg/config and the webhook ---------------------------------------------------------------


async def test_pg_config_get_and_set(pocket: PocketServer, http: aiohttp.ClientSession) -> None:
    token = await merchant_token(http, pocket)
    assert await api(http, pocket, "GET", "/merchant/pg/config", token) == (
        200,
        {"fallBackUrl": None},
    )
    hook = {"fallBackUrl": "https://bot.example/pocket/hook"}
    assert await api(http, pocket, "POST", "/merchant/pg/config", token, hook) == (200, hook)
    assert await api(http, pocket, "GET", "/merchant/pg/config", token) == (200, hook)
    bad = {"fallBackUrl": "ftp://x"}
    assert (await api(http, pocket, "POST", "/merchant/pg/config", token, bad))[0] == 400


async def test_pay_posts_the_seeds_webhook(
    pocket: PocketServer, http: aiohttp.ClientSession
) -> None:
    bodies: list[dict[str, Any]] = []
    came = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        came.set()
        return web.json_response({"ok": True})

    async with receiver(hook) as bot:
        token = await merchant_token(http, pocket)
        config = {"fallBackUrl": f"{bot}/hook"}
        await api(http, pocket, "POST", "/merchant/pg/config", token, config)
        _, failed = await invoice(http, pocket, token)
        await pay(http, pocket, failed["id"], "unsuccess")  # the seed: paid invoices only
        _, made = await invoice(http, pocket, token)
        assert await pay(http, pocket, made["id"], "paid") == (
            200,
            {"invoice_id": made["id"], "invoiceState": "paid"},
        )
        await asyncio.wait_for(came.wait(), 5)
        await pocket.settle()
        assert len(bodies) == 1
        body = bodies[0]
        assert set(body) == {"id", "amount", "info", "invoiceId", "invoiceState", "phoneNumber"}
        assert (body["invoiceId"], body["amount"], body["invoiceState"]) == (
            made["id"],
            560,
            "paid",
        )
        assert body["phoneNumber"] == pocket.phone_of("ada")
        assert pocket.webhooks[0].http_status == 200

        pocket.forge_state, pocket.post_twice, pocket.webhook_newer_shape = "paid", True, True
        _, other = await invoice(http, pocket, token)
        await pay(http, pocket, other["id"], "failed")  # not posted: a failure
        pocket.webhook_on_failure = True
        _, forged = await invoice(http, pocket, token)
        await pay(http, pocket, forged["id"], "rejected")
        await pocket.settle()
        assert len(bodies) == 3
        assert bodies[1] == bodies[2]
        assert bodies[1]["invoiceState"] == "paid"  # forged: the check says rejected
        assert bodies[1]["invoiceId"] == str(forged["id"])
        assert isinstance(bodies[1]["amount"], float)
        assert {"orderNumber", "holdId"} <= set(bodies[1])


# --- the customer's side: pocket.js ----------------------------------------------------------


async def test_pocket_js_defines_the_api_and_its_token_verifies(
    pocket: PocketServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(pocket.env()["POCKET_JS_URL"], params={"user": "bold"}) as answer:
        assert answer.status == 200
        assert answer.content_type == "application/javascript"
        script = await answer.text()
    assert "window.PocketMobile" in script
    assert "window.Pocket.getToken" in script
    fallback = json.loads(re.search(r"var fallback = (\{.*?\});", script)[1])
    assert verify(pocket, fallback["accessToken"])["sub"] == "bold"
    async with http.get(f"{pocket.url}/sandbox/customer-token?user=bold") as answer:
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        fresh = await answer.json()
    claims = verify(pocket, fresh["accessToken"])
    assert claims["sub"] == "bold"
    assert claims["exp"] > claims["iat"]
    token = await merchant_token(http, pocket)
    status, _ = await invoice(http, pocket, token, consumerToken=fresh["accessToken"])
    assert status == 200


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_pocket_js_runs_and_calls_back_with_a_token(pocket: PocketServer) -> None:
    """The script in a JS engine with the seed's call `getToken({}, callback)` (and the
    callback alone), then with the knob that makes the customer refuse."""
    harness = (
        "globalThis.window = globalThis;"
        "const src = require('fs').readFileSync(0, 'utf8'); eval(src);"
        "const out = [typeof window.PocketMobile];"
        "window.Pocket.getToken({}, (p) => { out.push(p);"
        " window.Pocket.getToken((q) => { out.push(q); console.log(JSON.stringify(out)); }); });"
    )

    async def run() -> list[Any]:
        async with aiohttp.ClientSession() as http, http.get(pocket.env()["POCKET_JS_URL"]) as r:
            script = await r.read()
        node = await asyncio.create_subprocess_exec(
            "node",
            "-e",
            harness,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await asyncio.wait_for(node.communicate(script), 20)
        return json.loads(stdout)

    kind, first, second = await run()
    assert kind == "object"
    assert first["error"] is False
    assert verify(pocket, first["data"]["accessToken"])["sub"] == pocket.js_user
    assert first["data"]["refreshToken"]
    assert second["data"]["accessToken"]
    pocket.js_error = "The customer said no"
    _, refused, _ = await run()
    assert refused == {"error": True, "errorMessage": "The customer said no"}


# --- reset -----------------------------------------------------------------------------------


async def test_reset_forgets_tokens_invoices_knobs_and_webhooks(
    pocket: PocketServer, http: aiohttp.ClientSession
) -> None:
    arrived = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(5)  # a bot that does not answer
        return web.json_response({})

    async with receiver(hold) as bot:
        token = await merchant_token(http, pocket)
        await api(http, pocket, "POST", "/merchant/pg/config", token, {"fallBackUrl": f"{bot}/h"})
        _, made = await invoice(http, pocket, token)
        await pay(http, pocket, made["id"], "paid")
        await asyncio.wait_for(arrived.wait(), 5)
        pocket.revoke_next, pocket.expires_in, pocket.js_error = 3, 5, "no"
        env = pocket.env()

        async with http.post(f"{pocket.url}/sandbox/reset") as answer:
            assert answer.status == 200

        await asyncio.wait_for(pocket.settle(), 1)  # cancelled, not waiting for the bot
        assert pocket.env() == env
        assert not pocket.invoices
        assert not pocket.webhooks
        assert not pocket._tasks
        assert pocket.fallback_url is None
        assert (pocket.revoke_next, pocket.expires_in, pocket.js_error) == (0, 600, None)
        assert pocket.token_requests == 0
        status, _ = await api(http, pocket, "GET", "/merchant/pg/config", token)
        assert status == 401  # tokens issued before the reset are gone
