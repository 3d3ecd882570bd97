"""The KTWidget emulator over real HTTP, as a client written from seed 003 and PROVIDERS.md
would see it: orders sealed with PyNaCl to the public key its env() prints."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from nacl.public import PrivateKey, PublicKey, SealedBox

from sandbox.ktwidget import API, KtwidgetServer
from tests.test_sandbox import receiver

SCALE = 0.001  # 15 s -> 15 ms


def order(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "order_id": "kt-1",
        "amount": 1500.5,
        "type": "ecom",
        "description": "Green tea, 2 boxes",
        "callback_success_url": "https://shop.example/ok",
        "callback_failed_url": "https://shop.example/fail",
    }
    values.update(fields)
    return {k: v for k, v in values.items() if v is not None}


def seal(key: str, text: str) -> str:
    """Latin-1 for the one test of a sealed text that is not UTF-8 ("\xff")."""
    data = text.encode("latin-1") if text == "\xff" else text.encode()
    box = SealedBox(PublicKey(base64.b64decode(key))).encrypt(data)
    return base64.b64encode(box).decode()


async def create(
    http: aiohttp.ClientSession,
    kt: KtwidgetServer,
    content: Any = None,
    *,
    body: str | None = None,
    app_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    if body is None:
        text = json.dumps(
            {"order": order()} if content is None else content,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        body = seal(kt.env()["KTWIDGET_APP_KEY"], text)
    sent = {"Auth-Identifier": app_id or kt.env()["KTWIDGET_APP_ID"], "Content-Type": "text/plain"}
    sent.update(headers or {})
    async with http.post(f"{kt.url}{API}", data=body.encode(), headers=sent) as answer:
        try:
            return answer.status, await answer.json(content_type=None)
        except ValueError:
            return answer.status, await answer.text()


async def new_hash(http: aiohttp.ClientSession, kt: KtwidgetServer, **fields: Any) -> str:
    status, answer = await create(http, kt, {"order": order(**fields)})
    assert status == 200, answer
    return answer["response"]["data"]["transaction_hash"]


async def pay(http: aiohttp.ClientSession, kt: KtwidgetServer, tx: str, outcome: str, **extra):
    async with http.post(
        f"{kt.url}/sandbox/pay", json={"hash": tx, "outcome": outcome, **extra}
    ) as answer:
        return answer.status, await answer.json()


def assert_error(answer: Any, code: int, old: bool, field: str | None = None) -> None:
    assert answer["success"] is False
    assert answer["data"] == []
    error = answer["error"]
    assert error["code"] == code
    if old:
        assert isinstance(error["message"], str)
        assert error["message"]
        assert "messages" not in error
        if field:
            assert isinstance(error["validation"][field], list)
    else:
        assert isinstance(error["messages"], dict)
        assert error["messages"]
        assert isinstance(error["hint"], str)
        if field:
            assert isinstance(error["messages"][field], list)


@pytest.fixture
def shapes(ktwidget: KtwidgetServer, request: pytest.FixtureRequest) -> bool:
    ktwidget.old_error_shape = request.param == "old"
    return ktwidget.old_error_shape


both_shapes = pytest.mark.parametrize("shapes", ["new", "old"], indirect=True)


class Merchant:
    """The bot's callback endpoint: answers from a script (the last one repeats), keeps what
    came."""

    def __init__(self, *answers: tuple[int, str, str]) -> None:
        self.answers = list(answers) or [(200, '{"status":"ok"}', "application/json")]
        self.bodies: list[dict[str, Any]] = []
        self.came = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        status, text, content_type = self.answers[min(len(self.bodies), len(self.answers)) - 1]
        self.came.set()
        return web.Response(status=status, text=text, content_type=content_type)


OK = (200, '{"status":"ok"}', "application/json")


@pytest.fixture
async def merchant_url() -> AsyncIterator[Callable[[Merchant], Any]]:
    stack: list[Any] = []

    async def start(handler: Merchant) -> str:
        context = receiver(handler.handle)
        stack.append(context)
        return await context.__aenter__()

    yield start
    for context in reversed(stack):
        await context.__aexit__(None, None, None)


# --- creating a transaction --------------------------------------------------------------


def test_env_prints_the_public_key_of_the_pair(ktwidget: KtwidgetServer) -> None:
    env = ktwidget.env()
    assert set(env) == {
        "KTWIDGET_APP_ID",
        "KTWIDGET_APP_KEY",
        "KTWIDGET_MERCHANT_ID",
        "KTWIDGET_API_URL",
        "KTWIDGET_WIDGET_URL",
    }
    key = base64.b64decode(env["KTWIDGET_APP_KEY"], validate=True)
    assert key == bytes(ktwidget.private_key.public_key)
    assert len(key) == 32
    assert int(env["KTWIDGET_MERCHANT_ID"]) == ktwidget.merchant_id
    assert env["KTWIDGET_API_URL"] == env["KTWIDGET_WIDGET_URL"] == ktwidget.url


async def test_a_valid_transaction(ktwidget: KtwidgetServer, http: aiohttp.ClientSession) -> None:
    status, answer = await create(http, ktwidget, {"order": order(show_close_button=True)})
    assert status == 200
    assert answer["error"] == []
    assert answer["response"]["success"] is True
    data = answer["response"]["data"]
    assert data["show_close_button"] is True
    tx = ktwidget.transactions[data["transaction_hash"]]
    assert len(tx.transaction_hash) == 40
    assert tx.status == "pending"
    assert str(tx.amount) == "1500.5"
    assert ktwidget.order_ids == {"kt-1": tx.transaction_hash}


async def test_the_php_client_variants_are_accepted(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    """No content type, `\\/` escapes, a sibling `user`, a service order, unpadded base64."""
    content = {
        "order": order(
            type="service",
            service={"service_id": 1, "contract_value": "7071234567"},
            callback_post_url="https://shop.example/cb?k=1",
            amount=1000,
        ),
        "user": {"merchant_user_id": "77", "phone": "77071234567", "email": "a@b.kz"},
    }
    text = json.dumps(content).replace("/", "\\/")
    assert "\\/" in text
    body = seal(ktwidget.app_key, text).rstrip("=")
    async with http.post(
        f"{ktwidget.url}{API}",
        data=body.encode(),
        headers={"Auth-Identifier": ktwidget.app_id, "Content-Type": ""},
    ) as answer:
        assert answer.status == 200, await answer.text()
        tx_hash = (await answer.json())["response"]["data"]["transaction_hash"]
    tx = ktwidget.transactions[tx_hash]
    assert tx.order["callback_post_url"] == "https://shop.example/cb?k=1"
    assert tx.user == content["user"]
    _, answer = await create(http, ktwidget, {"order": order(order_id="kt-2", amount=10.1)})
    assert answer["response"]["success"] is True  # the bare default show_close_button too


INVALID = [
    ({"order_id": None}, "order_id"),
    ({"order_id": ""}, "order_id"),
    ({"order_id": 17}, "order_id"),
    ({"amount": None}, "amount"),
    ({"amount": "1500"}, "amount"),
    ({"amount": True}, "amount"),
    ({"amount": 0}, "amount"),
    ({"amount": -10}, "amount"),
    ({"amount": 10.123}, "amount"),
    ({"type": None}, "type"),
    ({"type": "gift"}, "type"),
    ({"type": "service"}, "service"),
    (
        {"type": "service", "service": {"service_id": "1", "contract_value": "7"}},
        "service.service_id",
    ),
    ({"type": "service", "service": {"service_id": 1}}, "service.contract_value"),
    ({"callback_post_url": "shop.example/cb"}, "callback_post_url"),
    ({"callback_post_url": "ftp://shop.example/cb"}, "callback_post_url"),
    ({"callback_success_url": "http://"}, "callback_success_url"),
    ({"callback_force_failed_url": "not a url"}, "callback_force_failed_url"),
    ({"callback_back_url": 5}, "callback_back_url"),
    ({"description": 5}, "description"),
    ({"show_close_button": "yes"}, "show_close_button"),
]


@both_shapes
@pytest.mark.parametrize(("fields", "field"), INVALID)
async def test_each_validation_error(
    ktwidget: KtwidgetServer,
    http: aiohttp.ClientSession,
    shapes: bool,
    fields: dict[str, Any],
    field: str,
) -> None:
    values = order()
    values.update(fields)
    values = {k: v for k, v in values.items() if v is not None}
    status, answer = await create(http, ktwidget, {"order": values})
    assert status == 422
    assert_error(answer, 4220002, shapes, field)
    assert not ktwidget.transactions


async def test_a_bare_host_is_a_return_url_as_in_the_seed(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    status, _ = await create(
        http, ktwidget, {"order": order(callback_back_url="widget.nplus.tech")}
    )
    assert status == 200


@both_shapes
async def test_a_second_transaction_of_an_order_id(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, shapes: bool
) -> None:
    await new_hash(http, ktwidget)
    status, answer = await create(http, ktwidget, {"order": order(amount=99)})
    assert status == 422
    assert_error(answer, 4220002, shapes, "order_id")
    assert len(ktwidget.transactions) == 1


@both_shapes
@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        (4010103, 401),
        (4220002, 422),
        (4220101, 422),
        (4220102, 422),
        (4220104, 422),
        (5000001, 500),
    ],
)
async def test_fail_next_create_answers_the_code_once(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, shapes: bool, code: int, http_status: int
) -> None:
    ktwidget.fail_next_create = code
    status, answer = await create(http, ktwidget)
    assert status == http_status
    assert_error(answer, code, shapes)
    status, answer = await create(http, ktwidget)
    assert status == 200
    assert answer["response"]["success"] is True


@both_shapes
async def test_a_wrong_or_missing_app_id(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, shapes: bool
) -> None:
    status, answer = await create(http, ktwidget, app_id="0" * 32)
    assert status == 401
    assert_error(answer, 4010103, shapes)
    async with http.post(f"{ktwidget.url}{API}", data=b"x") as response:
        assert response.status == 401
        assert_error(await response.json(), 4010103, shapes)
    assert not ktwidget.transactions


@both_shapes
async def test_wrong_encryption_and_bad_data(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, shapes: bool
) -> None:
    other = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
    text = json.dumps({"order": order()})
    for body in (seal(other, text), "not base64 at all!", "", base64.b64encode(b"short").decode()):
        status, answer = await create(http, ktwidget, body=body)
        assert status == 422
        assert_error(answer, 4220102, shapes)
    for plain in ("not json", '["order"]', '{"user": {}}', "\xff"):
        status, answer = await create(http, ktwidget, body=seal(ktwidget.app_key, plain))
        assert status == 422, plain
        assert_error(answer, 4220101, shapes)
    assert not ktwidget.transactions


async def test_key_expired_and_raw_server_errors(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    ktwidget.key_expired = True
    for _ in range(2):
        status, answer = await create(http, ktwidget)
        assert status == 422
        assert_error(answer, 4220104, False)
    ktwidget.key_expired = False
    ktwidget.status_override = 502
    status, answer = await create(http, ktwidget)
    assert status == 502
    assert isinstance(answer, str)
    assert "502" in answer
    async with http.get(f"{ktwidget.url}{API}/x/pdf") as response:
        assert response.status == 502


# --- the customer, the callback ------------------------------------------------------------


async def test_the_card_page(ktwidget: KtwidgetServer, http: aiohttp.ClientSession) -> None:
    tx = await new_hash(http, ktwidget, description="Tea <strong>")
    async with http.get(f"{ktwidget.url}/payment-card", params={"hash": tx}) as page:
        assert page.status == 200
        assert page.content_type == "text/html"
        text = await page.text()
    assert "1500.5 KZT" in text
    assert "Tea &lt;strong&gt;" in text
    assert "<form" in text
    assert tx in text
    async with http.get(f"{ktwidget.url}/payment-card", params={"hash": "nope"}) as page:
        assert page.status == 404


async def test_the_card_page_form_pays_and_redirects(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    tx = await new_hash(http, ktwidget, callback_force_success_url="https://shop.example/force")
    async with http.post(
        f"{ktwidget.url}/sandbox/pay",
        data={"hash": tx, "outcome": "completed"},
        allow_redirects=False,
    ) as answer:
        assert answer.status == 303
        assert answer.headers["Location"] == "https://shop.example/force"
    assert ktwidget.transactions[tx].status == "completed"


@pytest.mark.parametrize(
    ("fields", "outcome", "redirect"),
    [
        ({}, "completed", "https://shop.example/ok"),
        (
            {"callback_force_success_url": "https://f.example/ok"},
            "completed",
            "https://f.example/ok",
        ),
        ({}, "error", "https://shop.example/fail"),
        ({"callback_force_failed_url": "https://f.example/no"}, "denied", "https://f.example/no"),
        (
            {"callback_success_url": None, "callback_back_url": "https://b.example"},
            "completed",
            "https://b.example",
        ),
        ({"callback_back_url": "https://b.example"}, "pending", "https://b.example"),
        ({}, "authorized", "https://shop.example/ok"),
    ],
)
async def test_pay_answers_where_the_browser_goes(
    ktwidget: KtwidgetServer,
    http: aiohttp.ClientSession,
    fields: dict[str, Any],
    outcome: str,
    redirect: str,
) -> None:
    tx = await new_hash(http, ktwidget, **fields)
    status, answer = await pay(http, ktwidget, tx, outcome)
    assert status == 200
    assert answer["redirect"] == redirect
    assert ktwidget.transactions[tx].status == outcome


async def test_pay_without_return_urls_goes_to_the_widget_page(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    tx = await new_hash(http, ktwidget, callback_success_url=None, callback_failed_url=None)
    async with http.post(
        f"{ktwidget.url}/sandbox/pay",
        json={"url": f"{ktwidget.url}/payment-card?hash={tx}", "outcome": "completed"},
    ) as answer:
        assert (await answer.json())["redirect"] == f"{ktwidget.url}/payment-card?hash={tx}"
    status, answer = await pay(http, ktwidget, tx, "error")
    assert status == 409  # final already
    status, _ = await pay(http, ktwidget, "nope", "completed")
    assert status == 400
    status, _ = await pay(http, ktwidget, tx, "paid")
    assert status == 400


async def test_the_callback_is_retried_until_ok(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, merchant_url
) -> None:
    bot = Merchant((500, "oops", "text/plain"), (500, "oops", "text/plain"), OK)
    url = await merchant_url(bot)
    ktwidget.retry_scale = SCALE
    tx = await new_hash(http, ktwidget, callback_post_url=f"{url}/kt?sig=abc")
    await pay(http, ktwidget, tx, "completed")
    await asyncio.wait_for(ktwidget.settle(), 5)
    attempts = ktwidget.deliveries[tx]
    assert [a.http_status for a in attempts] == [500, 500, 200]
    assert [a.accepted for a in attempts] == [False, False, True]
    assert attempts[0].answer == "oops"
    assert attempts[-1].answer == '{"status":"ok"}'
    assert attempts[1].at - attempts[0].at >= 15 * SCALE
    assert attempts[2].at - attempts[1].at >= 60 * SCALE
    await asyncio.sleep(200 * SCALE)  # the next retry would have come by now
    assert len(bot.bodies) == 3
    body = bot.bodies[0]
    assert body == bot.bodies[2]
    assert list(body) == [
        "merchant_id",
        "order_id",
        "description",
        "amount",
        "transaction_hash",
        "created_at",
        "updated_at",
        "status",
    ]
    assert body["merchant_id"] == ktwidget.merchant_id
    assert body["order_id"] == "kt-1"
    assert body["description"] == "Green tea, 2 boxes"
    assert body["amount"] == 1500.5
    assert body["transaction_hash"] == tx
    assert body["created_at"].endswith("+06:00")
    assert body["updated_at"] is None
    assert body["status"]["status"] == "completed"
    assert body["status"]["created_at"].endswith("+06:00")
    assert body["status"]["updated_at"] is None
    assert body["status"]["error"] is None


@pytest.mark.parametrize(
    "answer",
    [
        (200, "ok", "text/plain"),
        (200, '{"status":"ok"}', "text/plain"),
        (200, '{"status":"error"}', "application/json"),
        (201, '{"status":"ok"}', "application/json"),
    ],
)
async def test_only_a_json_ok_stops_the_retries(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, merchant_url, answer
) -> None:
    bot = Merchant(answer, OK)
    ktwidget.retry_scale = SCALE
    tx = await new_hash(http, ktwidget, callback_post_url=f"{await merchant_url(bot)}/kt")
    await pay(http, ktwidget, tx, "denied")
    await asyncio.wait_for(ktwidget.settle(), 5)
    assert [a.accepted for a in ktwidget.deliveries[tx]] == [False, True]


async def test_a_failed_payment_carries_its_error(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, merchant_url
) -> None:
    bot = Merchant()
    ktwidget.merchant_callback_post_url = f"{await merchant_url(bot)}/kt"  # from the settings
    tx = await new_hash(http, ktwidget)
    await pay(http, ktwidget, tx, "error")
    tx2 = await new_hash(http, ktwidget, order_id="kt-2")
    await pay(http, ktwidget, tx2, "denied", error_type="ERROR_INPUT", error_message="Bad CVV")
    await asyncio.wait_for(ktwidget.settle(), 5)
    errors = {b["transaction_hash"]: b["status"] for b in bot.bodies}
    assert errors[tx]["status"] == "error"
    assert errors[tx]["error"] == {
        "error_type": "ERROR_PAYMENT",
        "error_message": "KKB rejected payment",
    }
    assert errors[tx2]["status"] == "denied"
    assert errors[tx2]["error"] == {"error_type": "ERROR_INPUT", "error_message": "Bad CVV"}


async def test_intermediate_statuses_are_posted_only_with_the_knob(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, merchant_url
) -> None:
    bot = Merchant()
    url = f"{await merchant_url(bot)}/kt"
    tx = await new_hash(http, ktwidget, callback_post_url=url)
    await pay(http, ktwidget, tx, "authorized")
    await pay(http, ktwidget, tx, "success")
    await ktwidget.settle()
    assert not bot.bodies  # the seed: only at final statuses
    await pay(http, ktwidget, tx, "completed", amount=1)
    await ktwidget.settle()
    assert [b["status"]["status"] for b in bot.bodies] == ["completed"]
    assert bot.bodies[0]["amount"] == 1  # the override: a callback that lies about the amount
    assert bot.bodies[0]["updated_at"] is not None  # it changed more than once

    ktwidget.post_intermediate = True
    tx = await new_hash(http, ktwidget, order_id="kt-2", callback_post_url=url)
    for outcome in ("authorized", "success", "completed"):
        await pay(http, ktwidget, tx, outcome)
        await ktwidget.settle()
    assert [b["status"]["status"] for b in bot.bodies[1:]] == ["authorized", "success", "completed"]


async def test_no_callback_url_no_callback(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    tx = await new_hash(http, ktwidget)
    await pay(http, ktwidget, tx, "completed")
    assert not ktwidget._tasks
    assert tx not in ktwidget.deliveries


# --- the receipt -------------------------------------------------------------------------


async def get_pdf(http: aiohttp.ClientSession, kt: KtwidgetServer, tx: str, app_id: str = ""):
    async with http.get(
        f"{kt.url}{API}/{tx}/pdf", headers={"Auth-Identifier": app_id or kt.app_id}
    ) as answer:
        body = await answer.read()
        return answer.status, answer.content_type, body


@both_shapes
async def test_the_receipt_of_a_completed_payment(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, shapes: bool
) -> None:
    tx = await new_hash(http, ktwidget)
    status, _, body = await get_pdf(http, ktwidget, tx)
    assert status == 404  # pending
    assert_error(json.loads(body), 4040001, shapes)
    status, _, body = await get_pdf(http, ktwidget, "f" * 40)
    assert status == 404
    await pay(http, ktwidget, tx, "completed")
    status, content_type, pdf = await get_pdf(http, ktwidget, tx)
    assert status == 200
    assert content_type == "application/pdf"
    assert pdf.startswith(b"%PDF-1.4\n")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert b"Order: kt-1" in pdf
    assert b"Amount: 1500.5 KZT" in pdf
    start = int(pdf.rsplit(b"startxref\n", 1)[1].split()[0])
    assert pdf[start:].startswith(b"xref")  # the cross-reference offset is right
    status, _, body = await get_pdf(http, ktwidget, tx, app_id="nope")
    assert status == 401
    assert_error(json.loads(body), 4010103, shapes)


async def test_a_failed_payment_has_no_receipt_and_pdf_fails(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    tx = await new_hash(http, ktwidget)
    await pay(http, ktwidget, tx, "denied")
    assert (await get_pdf(http, ktwidget, tx))[0] == 404
    tx = await new_hash(http, ktwidget, order_id="kt-2")
    await pay(http, ktwidget, tx, "completed")
    ktwidget.pdf_fails = 2
    assert [(await get_pdf(http, ktwidget, tx))[0] for _ in range(3)] == [500, 500, 200]


# --- reset -------------------------------------------------------------------------------


async def test_reset_forgets_everything_and_cancels_deliveries(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession, merchant_url
) -> None:
    bot = Merchant((500, "no", "text/plain"))
    ktwidget.retry_scale = 1.0  # the retry waits 15 s: still pending at the reset
    tx = await new_hash(http, ktwidget, callback_post_url=f"{await merchant_url(bot)}/kt")
    await pay(http, ktwidget, tx, "completed")
    await asyncio.wait_for(bot.came.wait(), 5)
    task = ktwidget._tasks[tx]
    for knob, value in [
        ("fail_next_create", 4220101),
        ("status_override", 503),
        ("old_error_shape", True),
        ("key_expired", True),
        ("post_intermediate", True),
        ("pdf_fails", 3),
        ("merchant_callback_post_url", "http://x.example"),
    ]:
        setattr(ktwidget, knob, value)
    key, app_id, url = ktwidget.app_key, ktwidget.app_id, ktwidget.url

    async with http.post(f"{ktwidget.url}/sandbox/reset") as answer:
        assert answer.status == 200

    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 1)
    assert task.cancelled()  # not waiting 15 s for the retry
    assert not ktwidget._tasks
    assert not ktwidget.transactions
    assert not ktwidget.order_ids
    assert not ktwidget.deliveries
    assert ktwidget.fail_next_create is None
    assert ktwidget.status_override is None
    assert ktwidget.old_error_shape is False
    assert ktwidget.key_expired is False
    assert ktwidget.post_intermediate is False
    assert ktwidget.retry_scale == 1.0
    assert ktwidget.pdf_fails == 0
    assert ktwidget.merchant_callback_post_url is None
    assert (ktwidget.app_key, ktwidget.app_id, ktwidget.url) == (key, app_id, url)
    await new_hash(http, ktwidget)  # the order id is free again, the same key still opens it
    assert len(bot.bodies) == 1


async def test_stop_cancels_the_pending_deliveries(
    http: aiohttp.ClientSession, merchant_url
) -> None:
    bot = Merchant((500, "no", "text/plain"))
    kt = KtwidgetServer()
    await kt.start()
    try:
        tx = await new_hash(http, kt, callback_post_url=f"{await merchant_url(bot)}/kt")
        await pay(http, kt, tx, "completed")
        await asyncio.wait_for(bot.came.wait(), 5)
        task = kt._tasks[tx]
    finally:
        await asyncio.wait_for(kt.stop(), 2)
    assert task.cancelled()


async def test_the_scenario_route_sets_knobs(
    ktwidget: KtwidgetServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{ktwidget.url}/sandbox/scenario", json={"retry_scale": 0.01, "pdf_fails": 1}
    ) as answer:
        assert (await answer.json())["retry_scale"] == 0.01
    assert ktwidget.pdf_fails == 1
    async with http.post(f"{ktwidget.url}/sandbox/scenario", json={"nope": 1}) as answer:
        assert answer.status == 400


def test_hints_say_how_to_pay_by_hand(ktwidget: KtwidgetServer) -> None:
    hints = "\n".join(ktwidget.hints())
    assert f"curl -XPOST {ktwidget.url}/sandbox/pay" in hints
    assert "payment-card?hash=" in hints
    assert f"Auth-Identifier: {ktwidget.app_id}" in hints
