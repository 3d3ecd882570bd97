"""An emulator of Redoya's API, from its document (seed 001) and PROVIDERS.md only.

`/checkout` is the Pay page (its `#orderToken#identifier` fragment never reaches a server, so
paying goes through the shared control endpoint `POST /sandbox/pay`); `POST
/api/v1/order/verify/{orderId}` answers like Redoya, JSON or form body, with MoleculerError
shapes for errors.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import jwt
from aiohttp import web

from sandbox.base import FakeServer

ALPHABET = string.ascii_letters + string.digits
KNOBS = (
    "verify_status_override",
    "verify_delay",
    "not_confirmed_verifies",
    "paid_amount_override",
    "test_mode_override",
    "currency_override",
    "decimal_prices",
)


@dataclass
class RedoyaOrder:
    order_id: str
    price_x100: int
    successful_url: str
    fail_url: str
    test_mode: int
    created: float
    status: str = "pending"  # pending | success | failed
    reason: str = ""
    paid_at: int = 0
    uses: int = 0


def moleculer(code: int, kind: str, message: str) -> web.Response:
    return web.json_response(
        {"name": "MoleculerError", "message": message, "code": code, "type": kind}, status=code
    )


class RedoyaServer(FakeServer):
    name = "redoya"
    knobs = KNOBS

    def __init__(
        self,
        secret: str = "redoya-sandbox-secret-0123456789abcdef",
        identifier: str = "redoya-sandbox-identifier",
        *,
        order_lifetime: timedelta = timedelta(minutes=30),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.secret = secret
        self.identifier = identifier
        self._order_lifetime = order_lifetime
        self.reset()
        self.app.router.add_get("/checkout", self._checkout_page)
        self.app.router.add_post("/api/v1/order/verify/{order_id}", self._verify)
        self.app.router.add_post("/sandbox/pay", self._pay)
        self.app.router.add_post("/sandbox/orders/{order_id}/settle", self._settle)

    def env(self) -> dict[str, str]:
        return {
            "REDOYA_SECRET": self.secret,
            "REDOYA_IDENTIFIER": self.identifier,
            "REDOYA_API_URL": self.url,
            "REDOYA_PAY_URL": self.url,
        }

    def hints(self) -> list[str]:
        return [
            f"# pay (redoya):   curl -XPOST {self.url}/sandbox/pay "
            "-H 'content-type: application/json' "
            '-d \'{"url": "<Pay URL>", "outcome": "paid"}\'',
            '#   then open the "redirect" URL it answers (redoya): the customer coming back '
            "to the bot, which then checks the payment and says so in the chat",
        ]

    def reset(self) -> None:
        self.orders: dict[str, RedoyaOrder] = {}
        self.verify_calls = 0
        self.order_lifetime = self._order_lifetime
        self.verify_status_override: int | None = None  # e.g. 500: UNKNOWN_ERROR answers
        self.verify_delay = 0.0  # seconds before verify answers
        self.not_confirmed_verifies = 0  # the next N verifies of paid orders say NOT_CONFIRMED_YET
        self.paid_amount_override: int | None = None  # kuruş to report: a forged token
        self.test_mode_override: int | None = None
        self.currency_override: str | None = None
        self.decimal_prices = False  # the later revision accepts decimal prices

    async def _checkout_page(self, request: web.Request) -> web.Response:
        return web.Response(
            content_type="text/html",
            text="<!doctype html><title>Redoya sandbox</title><h1>Redoya sandbox checkout</h1>"
            '<p>Pay with <code>POST /sandbox/pay {"url": ..., "outcome": "paid"}</code>.</p>',
        )

    # --- the API ------------------------------------------------------------------------

    async def _verify(self, request: web.Request) -> web.Response:
        self.verify_calls += 1
        if self.verify_delay:
            await asyncio.sleep(self.verify_delay)
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = dict(await request.post())
        if not isinstance(body, dict) or body.get("identifier") != self.identifier:
            # not in the document: a sensible MoleculerError for a wrong vendor identifier
            return moleculer(401, "INVALID_IDENTIFIER", "The identifier is not valid.")
        if self.verify_status_override:
            return moleculer(
                self.verify_status_override,
                "UNKNOWN_ERROR",
                "Unknown error! Contact the administrator.",
            )
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return moleculer(404, "UNKNOWN_ORDER", "Order with specified ID is not found.")
        order.uses += 1
        if order.status == "pending" or (order.status == "success" and self.not_confirmed_verifies):
            if order.status == "success":
                self.not_confirmed_verifies -= 1
            elif time.time() - order.created > self.order_lifetime.total_seconds():
                return moleculer(
                    400, "ORDER_TIMED_OUT", "It's been a long time since the order was created."
                )
            return moleculer(400, "NOT_CONFIRMED_YET", "The order is not end up yet.")
        test_mode = order.test_mode if self.test_mode_override is None else self.test_mode_override
        common: dict[str, Any] = {
            "orderId": order.order_id,
            "status": order.status,
            "payment_type": "card",
            "testMode": str(test_mode),
            "timestamp": order.paid_at,
            "uses": order.uses,
        }
        if order.status == "failed":
            code, _, message = order.reason.partition(":")
            return web.json_response(
                {
                    **common,
                    "failed_reason_code": code,
                    "failed_reason_msg": message,
                    "total_amount": "0",
                }
            )
        amount = (
            order.price_x100 if self.paid_amount_override is None else self.paid_amount_override
        )
        return web.json_response(
            {
                **common,
                "payment_amount": str(amount),
                "total_amount": str(amount + amount * 3 // 100),  # the customer also paid a fee
                "currency": self.currency_override or "TL",
            }
        )

    # --- the control API ----------------------------------------------------------------

    async def _pay(self, request: web.Request) -> web.Response:
        body = await request.json()
        outcome = body.get("outcome")
        if outcome not in ("paid", "failed", "cancelled", "pending"):
            return web.json_response(
                {"error": "outcome must be paid|failed|cancelled|pending"}, status=400
            )
        fragment = urlsplit(str(body.get("url", ""))).fragment
        token, _, identifier = fragment.partition("#")
        if identifier != self.identifier:
            return web.json_response({"error": "unknown vendor identifier"}, status=400)
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            return web.json_response({"error": "the order token has expired"}, status=400)
        except jwt.InvalidTokenError as exc:
            return web.json_response({"error": f"invalid order token: {exc}"}, status=400)
        problem = self._check_claims(claims)
        if problem:
            return web.json_response({"error": problem}, status=400)
        order_id = "".join(secrets.choice(ALPHABET) for _ in range(16))
        order = RedoyaOrder(
            order_id=order_id,
            price_x100=int(Decimal(str(claims["price"])) * 100),
            successful_url=claims["successfulURL"].replace("{order_id}", order_id),
            fail_url=claims["failURL"].replace("{order_id}", order_id),
            test_mode=int(claims["isInTestMode"]),
            created=time.time(),
        )
        self.orders[order_id] = order
        if outcome == "paid":
            self._finish(order, "success")
        elif outcome == "failed":
            self._finish(order, "failed", "6:Card declined by the bank")
        # cancelled: the customer gave up on the page; the order stays not confirmed
        # pending: the bank is slow; the customer is sent on as if it went through
        redirect = order.fail_url if outcome in ("failed", "cancelled") else order.successful_url
        return web.json_response({"redirect": redirect, "order_id": order_id})

    def _check_claims(self, claims: dict[str, Any]) -> str:
        price = claims.get("price")
        if isinstance(price, bool) or not isinstance(price, int | float):
            return "price must be a number"
        if not self.decimal_prices and not isinstance(price, int):
            return "price must be an integer (float prices are not accepted yet)"
        if not 3 <= price <= 1000:
            return "price must be between 3 and 1000"
        for key in ("successfulURL", "failURL"):
            url = claims.get(key)
            if not isinstance(url, str) or not 10 <= len(url) <= 1200:
                return f"{key} must be a string of 10..1200 characters"
        if claims.get("isInTestMode") not in (0, 1):
            return "isInTestMode must be 0 or 1"
        return ""

    def _finish(self, order: RedoyaOrder, status: str, reason: str = "") -> None:
        order.status, order.reason, order.paid_at = status, reason, int(time.time())

    async def _settle(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        outcome = (await request.json()).get("outcome")
        if order is None or outcome not in ("paid", "failed"):
            return web.json_response({"error": "unknown order or outcome"}, status=400)
        self._finish(
            order,
            "success" if outcome == "paid" else "failed",
            "" if outcome == "paid" else "6:Card declined by the bank",
        )
        return web.json_response({"ok": True})
