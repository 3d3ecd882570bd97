"""The Turkmen ERP emulator (Halkbank and TFEB) over real HTTP, as a client written from seed 000
and PROVIDERS.md would see it: the token and account its env() prints, the four calls, the
banks' pages through /sandbox/pay."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from sandbox.erp import (
    CHECKOUT,
    GEN_REG_NO,
    HALKBANK,
    LOGIN,
    REGISTER,
    RESOURCES,
    TFEB,
    TFEB_TEXTS,
    VALIDATE,
    ErpServer,
    halkbank_tiyin,
)

Answer = tuple[int, Any]


class Erp:
    """A client of the emulator: one aiohttp session (its cookie jar keeps the login session;
    `unsafe` because the emulator is on an IP address, which aiohttp's default jar ignores)."""

    def __init__(self, erp: ErpServer, http: aiohttp.ClientSession) -> None:
        self.erp, self.http = erp, http
        self.env = erp.env()
        self.base = self.env["ERP_API_URL"]

    def headers(self, token: str | None = "", header: str = "bearer") -> dict[str, str]:
        token = self.env["ERP_TOKEN"] if token == "" else token
        if token is None:
            return {}
        if header == "bearer":
            return {"Authorization": f"Bearer {token}"}
        return {"x-access-token": token}

    async def post(
        self, path: str, body: Any = None, *, token: str | None = "", **kwargs: Any
    ) -> Answer:
        kwargs.setdefault("headers", self.headers(token))
        if body is not None:
            kwargs["json"] = body
        async with self.http.post(f"{self.base}{path}", **kwargs) as answer:
            return answer.status, await answer.json()

    async def reg_no(self) -> str:
        status, body = await self.post(GEN_REG_NO, {"RegNumTypeId": 9, "random_mode": 1})
        assert (status, body["status"]) == (200, 1), body
        return body["data"]

    async def checkout(self, *lines: tuple[int, Any, Any], **fields: Any) -> Answer:
        """lines: (ResId, amount, price); a fresh number from gen-reg-no unless given."""
        order: dict[str, Any] = {
            "OInvRegNo": await self.reg_no(),
            "InvStatId": 13,
            "PmId": int(self.env["ERP_PM_ID"]),
            "RpAccGuid": self.env["ERP_RP_ACC_GUID"],
            "CurrencyCode": "TMT",
            "OrderInvLines": [
                {"ResId": r, "OInvLineAmount": a, "OInvLinePrice": p} for r, a, p in lines
            ],
        }
        order.update(fields)
        return await self.post(CHECKOUT, {"orderInv": order})

    async def invoice(self, *lines: tuple[int, Any, Any]) -> str:
        status, body = await self.checkout(*lines)
        assert (status, body["status"]) == (201, 1), body
        return body["data"]["OInvRegNo"]

    async def login(self) -> Answer:
        creds = {"username": self.env["ERP_LOGIN"], "password": self.env["ERP_PASSWORD"]}
        return await self.post(LOGIN, creds, token=None)

    async def register(
        self, reg_no: str, price: Any, bank: str | None = HALKBANK, **fields: Any
    ) -> Answer:
        params = {} if bank is None else {"online_payment_type": bank}
        body = {"OInvRegNo": reg_no, "TotalPrice": price, "OrderDesc": "Sandbox order", **fields}
        return await self.post(REGISTER, body, params=params)

    async def registered(self, reg_no: str, price: Any, bank: str = HALKBANK) -> dict[str, Any]:
        if bank == TFEB:
            assert (await self.login())[0] == 200
        status, body = await self.register(reg_no, price, bank)
        assert (status, body["status"]) == (200, 1), body
        return body["data"]

    async def validate(
        self, reg_no: str, order_id: Any, bank: str = HALKBANK, **fields: Any
    ) -> Answer:
        body = {
            "OrderId": order_id,
            "OInvRegNo": reg_no,
            "online_payment_type": bank,
            "RpAccGuid": self.env["ERP_RP_ACC_GUID"],
            **fields,
        }
        return await self.post(VALIDATE, body)

    async def pay(self, order_id: str, outcome: str, **fields: Any) -> Answer:
        body = {"order_id": order_id, "outcome": outcome, **fields}
        async with self.http.post(f"{self.erp.url}/sandbox/pay", json=body) as answer:
            return answer.status, await answer.json()


@pytest.fixture
async def client(erp: ErpServer) -> AsyncIterator[Erp]:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        yield Erp(erp, http)


TEA = (101, 1, "0.29")  # ResId, amount, price: the 0.29 TMT the ERP hands Halkbank as 28 tiyin
CHOREK = (102, 1, "1.15")  # 1.15 TMT -> 114 tiyin
JAR = (103, 2, "17.50")


# --- settings, routes, auth ---------------------------------------------------------------


async def test_env_names_the_api_token_account_and_login(erp: ErpServer) -> None:
    env = erp.env()
    assert set(env) == {
        "ERP_API_URL",
        "ERP_TOKEN",
        "ERP_TOKEN_HEADER",
        "ERP_PM_ID",
        "ERP_RP_ACC_GUID",
        "ERP_LOGIN",
        "ERP_PASSWORD",
    }
    assert env["ERP_API_URL"] == erp.url
    assert env["ERP_TOKEN_HEADER"] in ("bearer", "x-access-token")
    assert env["ERP_TOKEN"] == erp.device_token != erp.customer_token
    hints = "\n".join(erp.hints())
    assert f"{erp.url}/sandbox/pay" in hints
    assert GEN_REG_NO in hints


async def test_a_route_without_its_slash_answers_308_to_it(client: Erp) -> None:
    url = f"{client.base}{REGISTER.rstrip('/')}?online_payment_type=halkbank"
    async with client.http.post(url, json={}, allow_redirects=False) as answer:
        assert answer.status == 308
        assert answer.headers["Location"] == f"{client.base}{REGISTER}?online_payment_type=halkbank"
    async with client.http.post(
        f"{client.base}{GEN_REG_NO.rstrip('/')}",
        json={"RegNumTypeId": 9, "random_mode": 1},
        headers=client.headers(),
    ) as answer:  # followed with the method and body kept
        assert (answer.status, (await answer.json())["status"]) == (200, 1)


async def test_tokens_bearer_or_x_access_token_missing_or_invalid(client: Erp) -> None:
    body = {"RegNumTypeId": 9, "random_mode": 1}
    for header in ("bearer", "x-access-token"):
        status, _ = await client.post(GEN_REG_NO, body, headers=client.headers(header=header))
        assert status == 200
    assert await client.post(GEN_REG_NO, body, token=None) == (
        401,
        {"message": "Token is missing!"},
    )
    assert await client.post(GEN_REG_NO, body, token="nope") == (
        401,
        {"message": "Token is invalid!"},
    )
    assert await client.post(VALIDATE, {}, token=None) == (401, {"message": "Token is missing!"})


async def test_checkout_without_a_token_is_anonymous(client: Erp) -> None:
    status, body = await client.post(CHECKOUT, {"orderInv": {}}, token=None)
    assert (status, body) == (401, {"message": "Failed to checkout with anonymous user!"})


async def test_a_user_token_from_login_cannot_check_out_or_validate(client: Erp) -> None:
    status, login = await client.login()
    assert status == 200
    user = login["token"]
    assert (await client.post(GEN_REG_NO, {"RegNumTypeId": 9}, token=user))[0] == 200
    status, body = await client.post(CHECKOUT, {"orderInv": {}}, token=user)
    assert (status, body["message"]) == (401, "Failed to checkout with anonymous user!")
    assert (await client.post(VALIDATE, {}, token=user))[0] == 401


async def test_a_body_that_is_not_json_is_400(client: Erp) -> None:
    for path in (GEN_REG_NO, CHECKOUT, REGISTER, VALIDATE):
        status, body = await client.post(path, data=b"OInvRegNo=1", headers=client.headers())
        assert (status, body) == (400, {"message": "Error. Not a JSON data."}), path


async def test_tokens_expire_and_a_renewed_token_works(client: Erp, erp: ErpServer) -> None:
    body = {"RegNumTypeId": 9, "random_mode": 1}
    erp.token_seconds = 0.2
    assert (await client.post(GEN_REG_NO, body))[0] == 200
    await asyncio.sleep(0.25)
    assert await client.post(GEN_REG_NO, body) == (401, {"message": "Token is invalid!"})
    erp.token_seconds = None
    assert (await client.post(GEN_REG_NO, body))[0] == 200
    erp.expire_token()
    status, answer = await client.post(VALIDATE, {})
    assert (status, answer["message"]) == (401, "Token is invalid!")
    old = erp.env()["ERP_TOKEN"]
    erp.renew_tokens()  # the admin puts the new token in the settings
    assert erp.env()["ERP_TOKEN"] != old
    assert (await client.post(GEN_REG_NO, body, token=erp.env()["ERP_TOKEN"]))[0] == 200
    assert (await client.post(GEN_REG_NO, body, token=old))[0] == 401


# --- gen-reg-no and checkout -------------------------------------------------------------


async def test_gen_reg_no_always_answers_200(client: Erp) -> None:
    numbers = {await client.reg_no() for _ in range(5)}
    assert len(numbers) == 5
    assert all(len(n) == 11 and n[:6].isalpha() and n[6:].isdigit() for n in numbers)
    status, body = await client.post(GEN_REG_NO, {"RegNumTypeId": 4})
    assert (status, body["status"], body["data"]) == (200, 0, None)


async def test_checkout_201_with_status_1_whole_amounts_and_state(
    client: Erp, erp: ErpServer
) -> None:
    status, body = await client.checkout((103, 2.9, 17.5), TEA)
    assert (status, body["status"], body["fails"]) == (201, 1, [])
    data = body["data"]
    assert data["OInvTypeId"] == 2  # forced by the server
    assert data["InvStatId"] == 13
    assert [line["OInvLineAmount"] for line in data["OrderInvLines"]] == [2, 1]  # int(2.9)
    assert data["OInvTotal"] == 35.29
    invoice = erp.invoices[data["OInvRegNo"]]
    assert str(invoice.total) == "35.29"  # Decimal on the server, never float sums
    sent = erp.checkouts[-1]["orderInv"]["OrderInvLines"][0]["OInvLineAmount"]
    assert sent == Decimal("2.9")  # recorded as sent (numbers read as Decimal)


async def test_checkout_needs_a_number_gen_reg_no_issued(client: Erp) -> None:
    status, body = await client.checkout(TEA, OInvRegNo="ANSSFK09381")
    assert (status, body["status"]) == (400, 0)
    reg_no = await client.invoice(TEA)
    status, body = await client.checkout(TEA, OInvRegNo=reg_no)  # already used
    assert (status, body["status"]) == (400, 0)


async def test_some_failed_lines_are_status_2_and_the_order_is_deleted(
    client: Erp, erp: ErpServer
) -> None:
    erp.resource(102, state="deleted")
    erp.resource(104, state="inactive")
    erp.resource(105, state="ended")
    erp.resource(103, price="18.00")  # re-priced in the ERP
    status, body = await client.checkout(TEA, CHOREK, (104, 1, "45.00"), (105, 1, "120.00"), JAR)
    assert (status, body["status"]) == (400, 2)
    fails = {
        f["data"]["ResId"]: (f["error_type_id"], f["error_type_message"]) for f in body["fails"]
    }
    assert fails == {
        102: (1, "Resource deleted"),
        104: (2, "Resource inactive"),
        105: (3, "Resource ended"),
        103: (4, "False price"),
    }
    reg_no = body["data"]["OInvRegNo"]
    assert reg_no not in erp.invoices
    assert erp.deleted[-1]["OInvRegNo"] == reg_no
    status, answer = await client.register(reg_no, "0.29")
    assert (status, answer) == (400, {"status": 0, "data": {}, "message": answer["message"]})


async def test_no_good_line_is_400_status_0_fail(client: Erp, erp: ErpServer) -> None:
    erp.resource(101, state="ended")
    status, body = await client.checkout(TEA)
    assert (status, body["status"], body["message"]) == (400, 0, "Fail")
    assert [f["error_type_id"] for f in body["fails"]] == [3]
    status, body = await client.checkout((999, 1, "1.00"))  # not in the ERP at all
    assert (status, body["message"], body["fails"][0]["error_type_id"]) == (400, "Fail", 0)
    erp.resource(999, price="1.00")  # a test adds a resource
    assert (await client.checkout((999, 1, "1.00")))[0] == 201


async def test_a_client_paym_status_id_is_accepted_and_reports_paid_with_nothing_paid(
    client: Erp, erp: ErpServer
) -> None:
    """Why the adapter must never send PaymStatusId: the ERP takes it."""
    status, body = await client.checkout(TEA, PaymStatusId=2)
    assert status == 201
    reg_no = body["data"]["OInvRegNo"]
    assert erp.checkouts[-1]["orderInv"]["PaymStatusId"] == 2
    data = await client.registered(reg_no, "0.29")
    status, answer = await client.validate(reg_no, data["OrderId"])
    assert (status, answer["status"], answer["data"]) == (200, 0, {})
    assert answer["message"] == "Payment successfully done!"
    assert erp.orders[data["OrderId"]].paid == 0


# --- register -----------------------------------------------------------------------------


async def test_halkbank_register_answers_everything_inside_data(
    client: Erp, erp: ErpServer
) -> None:
    reg_no = await client.invoice(JAR)
    status, body = await client.register(reg_no, 35, bank=None)  # the default bank
    assert (status, body["status"]) == (200, 1)
    data = body["data"]
    assert data["online_payment_type"] == HALKBANK
    assert (data["RegNo"], data["OInvRegNo"], data["TotalPrice"]) == (reg_no, reg_no, 35)
    assert data["OrderDesc"] == "Sandbox order"
    assert data["orderId"] == data["OrderId"]  # the bank's own fields beside the ERP's
    assert data["checkout_url"].startswith(f"{erp.url}/halkbank/")
    assert erp.orders[data["OrderId"]].amount == 3500  # tiyin


async def test_the_bank_pages_show_the_amount_and_buttons(client: Erp) -> None:
    for bank, price, shown in ((HALKBANK, "1.15", "1.14 TMT"), (TFEB, "17.50", "17.50 TMT")):
        reg_no = await client.invoice(CHOREK if bank == HALKBANK else (103, 1, "17.50"))
        data = await client.registered(reg_no, price, bank)
        async with client.http.get(data["checkout_url"]) as page:
            assert page.status == 200
            text = await page.text()
        assert shown in text
        assert 'value="paid"' in text
        assert 'value="declined"' in text


async def test_order_desc_is_required_and_the_bank_comes_from_the_query_only(
    client: Erp, erp: ErpServer
) -> None:
    reg_no = await client.invoice(TEA)
    status, body = await client.register(reg_no, "0.29", OrderDesc="")
    assert (status, body["status"], body["data"]) == (400, 0, {})
    status, body = await client.register(reg_no, "0.29", bank=None, online_payment_type=TFEB)
    assert (status, body["data"]["online_payment_type"]) == (200, HALKBANK)


async def test_register_does_not_check_total_price_against_the_invoice(
    client: Erp, erp: ErpServer
) -> None:
    reg_no = await client.invoice(JAR)  # 35.00 TMT
    data = await client.registered(reg_no, "1.00")
    assert erp.orders[data["OrderId"]].amount == 100
    await client.pay(data["OrderId"], "paid")
    status, body = await client.validate(reg_no, data["OrderId"])
    assert (status, body["status"], body["data"]["Amount"]) == (201, 1, 100)  # our check only
    assert erp.invoices[reg_no].paym_status_id == 3  # booked as a part payment


async def test_halkbank_takes_tmt_only_by_the_requests_currency_code(
    client: Erp, erp: ErpServer
) -> None:
    reg_no = await client.invoice(TEA)
    status, body = await client.register(reg_no, "0.29", CurrencyCode="USD")
    assert (status, body["status"], body["data"]) == (400, 0, {})
    assert (await client.login())[0] == 200
    assert (await client.register(reg_no, "0.29", TFEB, CurrencyCode="USD"))[0] == 200
    erp.halkbank_tmt_only = False
    assert (await client.register(reg_no, "0.29", CurrencyCode="USD"))[0] == 200


async def test_tfeb_needs_the_login_session(client: Erp, erp: ErpServer) -> None:
    reg_no = await client.invoice(JAR)
    status, body = await client.register(reg_no, 35, TFEB)  # a token alone
    assert (status, body["status"], body["data"]) == (400, 0, {})
    creds = {"username": client.env["ERP_LOGIN"], "password": "wrong"}
    assert (await client.post(LOGIN, creds, token=None))[0] == 401
    status, login = await client.login()
    assert (status, login["status"]) == (200, 1)
    assert any(c.key == "session" for c in client.http.cookie_jar)
    status, body = await client.register(reg_no, 35, TFEB)
    assert (status, body["data"]["online_payment_type"]) == (200, TFEB)
    assert body["data"]["OInvRegNo"] == reg_no  # never renamed
    erp.expire_session = True
    assert (await client.register(reg_no, 35, TFEB))[0] == 400
    assert (await client.login())[0] == 200  # the adapter logs in again
    assert (await client.register(reg_no, 35, TFEB))[0] == 200
    erp.session_seconds = 0.05
    await asyncio.sleep(0.06)
    assert (await client.register(reg_no, 35, TFEB))[0] == 400


async def test_login_takes_basic_auth_and_a_form(client: Erp) -> None:
    pair = f"{client.env['ERP_LOGIN']}:{client.env['ERP_PASSWORD']}".encode()
    auth = {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    async with client.http.post(f"{client.base}{LOGIN}", headers=auth) as answer:
        assert answer.status == 200
    form = {"username": client.env["ERP_LOGIN"], "password": client.env["ERP_PASSWORD"]}
    async with client.http.post(f"{client.base}{LOGIN}", data=form) as answer:
        assert answer.status == 200


async def test_an_already_used_number_renames_the_halkbank_invoice(
    client: Erp, erp: ErpServer
) -> None:
    reg_no = await client.invoice(TEA)
    erp.rename_next = 1
    data = await client.registered(reg_no, "0.29")
    new = data["OInvRegNo"]
    assert new != reg_no
    assert data["RegNo"] == new
    assert erp.renamed[reg_no] == new
    assert erp.orders[data["OrderId"]].reg_no == new
    assert erp.rename_next == 0
    await client.pay(data["OrderId"], "paid")
    status, body = await client.validate(reg_no, data["OrderId"])  # the old number
    assert (status, body["status"], body["message"]) == (
        200,
        0,
        "Payment Validation: failed, Order not found",
    )
    status, body = await client.validate(new, data["OrderId"])
    assert (status, body["status"]) == (201, 1)
    again = await client.registered(new, "0.29")  # Halkbank has seen that number: renamed again
    assert again["OInvRegNo"] not in (reg_no, new)


async def test_an_unreachable_bank(client: Erp, erp: ErpServer) -> None:
    reg_no = await client.invoice(TEA)
    data = await client.registered(reg_no, "0.29")
    await client.pay(data["OrderId"], "paid")
    erp.bank_down = True
    status, body = await client.register(reg_no, "0.29")
    assert (status, body["status"], body["data"]) == (400, 0, {})
    status, body = await client.validate(reg_no, data["OrderId"])
    assert (status, body["status"], body["message"], body["data"]) == (200, 0, "", {})
    erp.bank_down = TFEB  # one bank only
    assert (await client.validate(reg_no, data["OrderId"]))[0] == 201


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "order_status"),
    [(None, 0), ("pending_3ds", 5), ("declined", 6), ("reversed", 3), ("refunded", 4)],
)
async def test_halkbank_not_paid_is_200_status_0_with_the_order_status(
    client: Erp, outcome: str | None, order_status: int
) -> None:
    reg_no = await client.invoice(CHOREK)
    data = await client.registered(reg_no, "1.15")
    if outcome in ("reversed", "refunded"):
        assert (await client.pay(data["OrderId"], "part", amount="0.50"))[0] == 200
        status, _ = await client.validate(reg_no, data["OrderId"])  # a part payment ...
        assert status == 201
    if outcome is not None:
        assert (await client.pay(data["OrderId"], outcome))[0] == 200
    status, body = await client.validate(reg_no, data["OrderId"])  # ... asked again
    assert (status, body["status"]) == (200, 0)
    assert body["message"] == f"Payment Validation: failed (OrderStatus = {order_status})"
    assert body["data"]["OrderStatus"] == order_status


async def test_a_full_payment_validates_201_then_payment_successfully_done(
    client: Erp, erp: ErpServer
) -> None:
    reg_no = await client.invoice(JAR)
    data = await client.registered(reg_no, 35)
    status, paid = await client.pay(data["OrderId"], "paid")
    assert (status, paid["paid"]) == (200, 3500)
    status, body = await client.validate(reg_no, data["OrderId"])
    assert (status, body["status"], body["message"]) == (201, 1, "Validation success")
    assert (body["data"]["OrderStatus"], body["data"]["Amount"], body["total"]) == (2, 3500, 35)
    for _ in range(2):
        status, body = await client.validate(reg_no, data["OrderId"])
        assert (status, body["status"], body["data"]) == (200, 0, {})
        assert body["message"] == "Payment successfully done!"
    assert erp.invoices[reg_no].validations == 3


@pytest.mark.parametrize(("line", "price", "tiyin"), [(TEA, "0.29", 28), (CHOREK, "1.15", 114)])
async def test_the_tiyin_the_erp_loses_is_a_part_payment_answering_status_1_every_time(
    client: Erp, erp: ErpServer, line: tuple[int, int, str], price: str, tiyin: int
) -> None:
    assert halkbank_tiyin(price) == tiyin
    reg_no = await client.invoice(line)
    data = await client.registered(reg_no, price)
    assert erp.orders[data["OrderId"]].amount == tiyin
    await client.pay(data["OrderId"], "paid")
    for _ in range(3):
        status, body = await client.validate(reg_no, data["OrderId"])
        assert (status, body["status"], body["data"]["Amount"]) == (201, 1, tiyin)
    assert erp.invoices[reg_no].paym_status_id == 3


async def test_a_part_payment_keeps_answering_status_1(client: Erp, erp: ErpServer) -> None:
    reg_no = await client.invoice(JAR)
    data = await client.registered(reg_no, 35)
    status, paid = await client.pay(data["OrderId"], "part", amount="20.00")
    assert (status, paid["paid"]) == (200, 2000)
    for _ in range(2):
        status, body = await client.validate(reg_no, data["OrderId"])
        assert (status, body["status"], body["data"]["Amount"]) == (201, 1, 2000)
    other = await client.invoice(JAR)
    erp.part_amount = "5"  # the knob instead of the field
    order = (await client.registered(other, 35))["OrderId"]
    assert (await client.pay(order, "part"))[1]["paid"] == 500
    assert (await client.pay(order, "paid"))[0] == 409  # already paid
    more = (await client.registered(await client.invoice(JAR), 35))["OrderId"]
    assert (await client.pay(more, "part", amount="35"))[0] == 400  # not a part


async def test_tfeb_validation_paid_part_and_not_paid(client: Erp, erp: ErpServer) -> None:
    reg_no = await client.invoice(JAR)
    data = await client.registered(reg_no, "35.00", TFEB)
    status, body = await client.validate(reg_no, data["OrderId"], TFEB)
    assert (status, body["status"]) == (200, 0)
    assert body["message"] == f"Payment Validation: failed ({TFEB_TEXTS['registered'][1]})"
    assert body["data"]["response"]["operationResult"] != "GEN-00000"
    await client.pay(data["OrderId"], "paid")
    status, body = await client.validate(reg_no, data["OrderId"], TFEB)
    assert (status, body["status"]) == (201, 1)
    assert body["data"]["response"]["operationResult"] == "GEN-00000"
    assert body["data"]["transaction"]["totalAmount"] == 35  # TMT, no tiyin lost
    assert (await client.validate(reg_no, data["OrderId"], TFEB))[1]["message"] == (
        "Payment successfully done!"
    )
    part = await client.invoice(TEA)
    order = (await client.registered(part, "0.29", TFEB))["OrderId"]
    await client.pay(order, "part", amount="0.10")
    for _ in range(2):
        status, body = await client.validate(part, order, TFEB)
        assert (status, body["data"]["transaction"]["totalAmount"]) == (201, 0.1)
    declined = await client.invoice(TEA)
    order = (await client.registered(declined, "0.29", TFEB))["OrderId"]
    await client.pay(order, "declined")
    body = (await client.validate(declined, order, TFEB))[1]
    assert body["message"] == f"Payment Validation: failed ({TFEB_TEXTS['declined'][1]})"


async def test_validation_needs_the_account_and_never_checks_the_order_id(
    client: Erp, erp: ErpServer
) -> None:
    paid_reg_no = await client.invoice(JAR)
    paid_order = (await client.registered(paid_reg_no, 35))["OrderId"]
    await client.pay(paid_order, "paid")
    unpaid = await client.invoice(JAR)
    await client.registered(unpaid, 35)
    status, body = await client.validate(unpaid, paid_order)  # another invoice's order
    assert (status, body["status"]) == (201, 1)  # we must check OrderId ourselves
    status, body = await client.validate(paid_reg_no, paid_order, RpAccGuid="someone-else")
    assert body["message"] == "Payment Validation: failed, Order not found"
    status, body = await client.validate(paid_reg_no, paid_order, RpAccGuid=None)
    assert body["message"] == "Payment Validation: failed, Order not found"
    # a customer-account token is its own account
    own = await client.post(
        VALIDATE,
        {"OrderId": paid_order, "OInvRegNo": paid_reg_no, "online_payment_type": HALKBANK},
        token=erp.customer_token,
    )
    assert own[0] == 201


async def test_validation_of_an_unknown_order_id_says_nothing(client: Erp) -> None:
    reg_no = await client.invoice(TEA)
    await client.registered(reg_no, "0.29")
    status, body = await client.validate(reg_no, "no-such-order")
    assert (status, body["status"], body["message"]) == (200, 0, "")


async def test_validation_refusals_name_their_cause(client: Erp) -> None:
    reg_no = await client.invoice(TEA)
    order = (await client.registered(reg_no, "0.29"))["OrderId"]
    status, body = await client.validate(reg_no, None)
    assert (status, body["message"]) == (
        200,
        "Payment Validation: failed (Reg no or OrderId is None)",
    )
    status, body = await client.validate(reg_no, order, bank="senagat")
    assert (status, body["message"]) == (200, "Payment Validation: failed (Connection error)")


# --- the customer's side ---------------------------------------------------------------


async def test_the_banks_return_to_the_erps_own_page_never_to_a_merchant(
    client: Erp, erp: ErpServer
) -> None:
    reg_no = await client.invoice(TEA)
    data = await client.registered(reg_no, "0.29")
    form = {"order_id": data["OrderId"], "outcome": "paid"}
    async with client.http.post(
        f"{erp.url}/sandbox/pay", data=form, allow_redirects=False
    ) as answer:
        assert answer.status == 303
        back = answer.headers["Location"]
    assert back.startswith(f"{erp.url}/payment-validation/?")
    async with client.http.get(back) as page:
        assert page.status == 200
        assert "Payment validation" in await page.text()
    tfeb = await client.invoice(TEA)
    order = (await client.registered(tfeb, "0.29", TFEB))["OrderId"]
    _, paid = await client.pay(order, "paid")
    assert paid["redirect"].startswith(f"{erp.url}/payment-validation/?")
    assert erp.halkbank_password not in paid["redirect"]


async def test_halkbanks_return_url_carries_the_merchants_bank_login(
    client: Erp, erp: ErpServer
) -> None:
    """What the adapter must never log in full (PROVIDERS.md: the return URL); the bank's own
    page names the order only."""
    reg_no = await client.invoice(TEA)
    data = await client.registered(reg_no, "0.29")
    assert erp.halkbank_password not in data["checkout_url"]
    status, paid = await client.pay(data["checkout_url"], "paid")  # by URL, too
    assert status == 200
    assert erp.halkbank_password in paid["redirect"]


async def test_when_the_return_page_validated_first_the_bot_hears_done(
    client: Erp, erp: ErpServer
) -> None:
    erp.page_validates = True
    reg_no = await client.invoice(JAR)
    data = await client.registered(reg_no, 35)
    status, paid = await client.pay(data["OrderId"], "paid")
    async with client.http.get(paid["redirect"]) as page:
        assert "Validation success" in await page.text()
    status, body = await client.validate(reg_no, data["OrderId"])
    assert (status, body["status"], body["message"]) == (200, 0, "Payment successfully done!")


async def test_pay_refuses_unknown_orders_and_outcomes(client: Erp) -> None:
    assert (await client.pay("nope", "paid"))[0] == 400
    reg_no = await client.invoice(TEA)
    order = (await client.registered(reg_no, "0.29"))["OrderId"]
    assert (await client.pay(order, "sideways"))[0] == 400
    assert (await client.pay(order, "refunded"))[0] == 409  # nothing paid yet
    assert (await client.pay(order, "declined"))[0] == 200
    assert (await client.pay(order, "paid"))[0] == 409


# --- knobs, delay, reset ----------------------------------------------------------------


async def test_the_scenario_route_sets_knobs_and_resources(client: Erp, erp: ErpServer) -> None:
    url = f"{erp.url}/sandbox/scenario"
    body = {
        "rename_next": 1,
        "bank_down": "halkbank",
        "resources": {"101": {"state": "deleted"}, "110": {"price": "2.50", "name": "Dates"}},
    }
    async with client.http.post(url, json=body) as answer:
        assert answer.status == 200
        state = await answer.json()
    assert (erp.rename_next, erp.bank_down) == (1, "halkbank")
    assert state["resources"]["101"]["state"] == "deleted"
    assert state["resources"]["110"]["price"] == 2.5
    async with client.http.post(url, json={"nope": 1}) as answer:
        assert answer.status == 400
    async with client.http.post(url, json={"resources": {"111": {"state": "ended"}}}) as answer:
        assert answer.status == 400  # a new resource needs a price
    old = erp.device_token
    async with client.http.post(url, json={"token_expired": True, "renew_tokens": True}):
        pass
    assert erp.device_token != old
    assert erp.token_expired is False


async def test_the_delay_knob_slows_every_api_call(client: Erp, erp: ErpServer) -> None:
    erp.delay = 0.2
    started = time.monotonic()
    await client.reg_no()
    assert time.monotonic() - started >= 0.2


async def test_reset_forgets_invoices_orders_sessions_and_knobs(
    client: Erp, erp: ErpServer
) -> None:
    reg_no = await client.invoice(TEA)
    await client.registered(reg_no, "0.29", TFEB)
    env = erp.env()
    erp.rename_next, erp.bank_down, erp.delay, erp.page_validates = 2, True, 0.01, True
    erp.resource(101, state="deleted")
    erp.renew_tokens()
    erp.expire_token()
    async with client.http.post(f"{erp.url}/sandbox/reset") as answer:
        assert answer.status == 200
    assert erp.env() == env  # the first token again
    for kept in (erp.invoices, erp.orders, erp.sessions, erp.calls, erp.reg_nos, erp.renamed):
        assert not kept
    assert (erp.rename_next, erp.bank_down, erp.delay, erp.page_validates) == (0, False, 0, False)
    assert erp.token_expired is False
    assert {r: (x.name, str(x.price), x.state) for r, x in erp.resources.items()} == {
        r: (name, price, "active") for r, (name, price) in RESOURCES.items()
    }
    assert (await client.register(reg_no, "0.29", TFEB))[0] == 400  # that session is gone
