"""One small driver per provider: the few verbs a scenario needs, so that the scenarios in
test_scenarios.py never name a provider. Adding a provider means adding one driver to DRIVERS.

A driver acts where the provider or the customer would: it orders through the chat, pays on
the emulator's page, delivers what the provider sends back (the customer's return, and for
callback providers the notification), and turns the emulator's scenario knobs (down, slow,
another amount). It never calls the checkout core to change anything.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import ClassVar

import aiohttp

from bot.app import Parts
from sandbox.base import FakeServer
from sandbox.botuser import BotUser, button_url
from sandbox.ktwidget import KtwidgetServer
from sandbox.payture import PaytureServer
from sandbox.pocket import PocketServer
from sandbox.redoya import RedoyaServer
from storage.base import Order
from tests.conftest import CUSTOMER
from tests.flows import browse, order_product
from tests.flows import pay as pay_on_page

Page = tuple[int, str]


class Driver:
    """What every scenario drives. `app` is the running bot (set by the fixture, or by a
    scenario that starts its own BotApp)."""

    name: ClassVar[str]  # the provider's registry name: its emulator fixture and URL paths
    category: ClassVar[str]  # a catalog category and product priced for this provider
    product: ClassVar[str]
    button: ClassVar[str] = ""  # the "How would you like to pay?" button, where one is asked
    supports_callbacks: ClassVar[bool] = False
    keyless_callback: ClassVar[int] = 404  # what a callback without o/k gets: no URL of ours
    callback_type: ClassVar[str] = "application/x-www-form-urlencoded"
    status_api: ClassVar[bool] = True  # False: the callback is the truth (nothing to go down)
    mismatch_refused: ClassVar[bool] = False  # another amount is refused at the door, not
    # reviewed: the callback that is the truth must be about the order it was made for

    def __init__(self, emulator: FakeServer, user: BotUser, http: aiohttp.ClientSession) -> None:
        self.emulator = emulator
        self.user = user
        self.http = http
        self.app: Parts | None = None

    @property
    def parts(self) -> Parts:
        assert self.app is not None, "the driver is not attached to a running bot"
        return self.app

    # --- the customer ---------------------------------------------------------------------

    async def order(self) -> tuple[dict, Order]:
        """Order the driver's product in the chat: the order message and the order."""
        message = await order_product(self.user, self.category, self.product, provider=self.button)
        return message, await self.latest()

    async def latest(self) -> Order:
        return (await self.parts.checkout.orders_of(CUSTOMER, limit=1))[0]

    async def pay(self, message: dict, outcome: str) -> str:
        """The customer acts on the provider's page ("paid", "failed", "pending"); returns the
        URL the browser is sent back to."""
        return await pay_on_page(self.http, self.emulator.url, message, outcome)

    async def come_back(self, redirect: str) -> Page:
        """The customer's browser follows the redirect (the return page)."""
        return await browse(self.http, redirect)

    async def deliver(self, order: Order, redirect: str, *, times: int = 1) -> list[Page]:
        """Everything the provider makes reach us about the payment, `times` times over: here
        the customer's return only; callback providers also post their notification."""
        return [await self.come_back(redirect) for _ in range(times)]

    # --- the provider ---------------------------------------------------------------------

    async def notify(self, order: Order, body: bytes | None = None, *, key: str | None = "") -> int:
        """POST a callback about `order` (the provider's own notification unless `body`).
        `key`: "" for the order's valid callback key, None for no `o`/`k` at all (a
        merchant-wide notification URL), anything else for that key. The HTTP status."""
        url = f"{self.parts.web_url}/callbacks/{self.name}"
        if key is not None:
            url += self.callback_query(order, key)
        payload = body if body is not None else await self.notification(order)
        headers = {"Content-Type": self.callback_type}
        async with self.http.post(url, data=payload, headers=headers) as answer:
            await answer.read()
            return answer.status

    def callback_query(self, order: Order, key: str) -> str:
        """The callback URL's query: the order and its key ("": the valid one)."""
        return f"?o={order.id}&k={key or self.parts.checkout.callback_key(self.name, order.id)}"

    async def notification(self, order: Order) -> bytes:
        """What the provider posts when the payment settles."""
        raise NotImplementedError(f"{self.name} sends no callbacks")

    def forged_success(self, order: Order) -> bytes:
        """A callback body claiming the order's payment succeeded (not sent by the provider)."""
        raise NotImplementedError

    def forged_return(self, order: Order, redirect: str) -> str:
        """The order's real return URL naming a valid-looking payment id the provider never
        issued."""
        raise NotImplementedError

    def go_down(self) -> None:
        """The provider's status API answers 5xx."""
        raise NotImplementedError

    def come_back_up(self) -> None:
        raise NotImplementedError

    def slow_down(self, seconds: float) -> None:
        """The provider's status API answers only after `seconds` (0: at once again)."""
        raise NotImplementedError

    def underpay(self, order: Order) -> None:
        """The provider will report another amount paid for this order than its total."""
        raise NotImplementedError


class RedoyaDriver(Driver):
    """Status API + return: Redoya names its order id on the return and sends no callbacks."""

    name = "redoya"
    category, product = "Coffee", "Turkish coffee"
    emulator: RedoyaServer

    def forged_success(self, order: Order) -> bytes:
        return b"order_id=AAAAAAAAAAAAAAAA&status=success"

    def forged_return(self, order: Order, redirect: str) -> str:
        base = redirect.partition("?")[0]
        return f"{base}?result=success&order_id=AAAAAAAAAAAAAAAA"

    def go_down(self) -> None:
        self.emulator.verify_status_override = 500

    def come_back_up(self) -> None:
        self.emulator.verify_status_override = None

    def slow_down(self, seconds: float) -> None:
        self.emulator.verify_delay = seconds

    def underpay(self, order: Order) -> None:
        self.emulator.paid_amount_override = order.total.amount // 50  # 3 lira for 150


class PaytureDriver(Driver):
    """Status API + callback: Payture posts a notification (a hint: its notification URL is
    set once per merchant, so it carries no per-order key) and sends the customer back."""

    name = "payture"
    category, product = "Tea", "Ivan-chai"
    supports_callbacks = True
    keyless_callback = 200  # its notifications go to one URL per terminal: a hint
    emulator: PaytureServer

    def __init__(self, emulator: FakeServer, user: BotUser, http: aiohttp.ClientSession) -> None:
        super().__init__(emulator, user, http)
        self._sent: dict[tuple[str, str], bytes] = {}

    async def pay(self, message: dict, outcome: str) -> str:
        if outcome != "pending":
            return await super().pay(message, outcome)
        # the bank is slow: the customer is back before Payture has charged anything
        order = await self.latest()
        session = next(
            s for s in self.emulator.sessions.values() if s.order_id == order.provider_payment_id
        )
        return session.url.replace("{orderid}", session.order_id).replace("{success}", "True")

    async def deliver(self, order: Order, redirect: str, *, times: int = 1) -> list[Page]:
        pages = []
        for _ in range(times):
            assert await self.notify(order, key=None) == 200  # the merchant-wide URL
            pages.append(await self.come_back(redirect))
        return pages

    async def notification(self, order: Order) -> bytes:
        """What the emulator's Payture posts (sandbox/payture.py `_notify`) for this order;
        the same bytes every time it is delivered again, as a provider's retry is."""
        paying = self.emulator.orders[order.provider_payment_id or ""]
        kind = {"Charged": "EnginePaySuccess", "Error": "EnginePayFail"}[paying.state]
        if (paying.order_id, kind) not in self._sent:
            stamp = time.strftime("%d.%m.%Y+%H:%M:%S")
            self._sent[paying.order_id, kind] = (
                f"Notification={kind}&OrderId={paying.order_id}&Success={'Fail' not in kind}"
                f"&Amount={paying.amount}&ErrCode=NONE&TransactionDate={stamp}"
                f"&MerchantContract={self.emulator.key}"
            ).encode()
        return self._sent[paying.order_id, kind]

    def forged_success(self, order: Order) -> bytes:
        return (
            f"Notification=EnginePaySuccess&OrderId={order.provider_payment_id}&Success=True"
            f"&Amount={order.total.amount}&ErrCode=NONE"
        ).encode()

    def forged_return(self, order: Order, redirect: str) -> str:
        base = redirect.partition("?")[0]
        return f"{base}?orderid=tg-{order.id}-deadbeef&success=True"

    def go_down(self) -> None:
        self.emulator.getstate_status_override = 503

    def come_back_up(self) -> None:
        self.emulator.getstate_status_override = None

    def slow_down(self, seconds: float) -> None:
        self.emulator.delay = seconds

    def underpay(self, order: Order) -> None:
        # Payture reports the amount held on the payment: the customer paid less than asked
        self.emulator.orders[order.provider_payment_id or ""].amount = order.total.amount - 100


class KTWidgetDriver(Driver):
    """The callback is the truth: KTWidget posts the final status to the order's keyed URL
    (the emulator does it as the customer pays, and retries it) and has no status API."""

    name = "ktwidget"
    category, product = "Tea", "Kazakh black tea"
    supports_callbacks = True
    keyless_callback = 401
    status_api = False
    mismatch_refused = True
    callback_type = "application/json"
    emulator: KtwidgetServer

    def __init__(self, emulator: FakeServer, user: BotUser, http: aiohttp.ClientSession) -> None:
        super().__init__(emulator, user, http)
        self.emulator.retry_scale = 0.001  # KTWidget's retries, 15 s to 60 min, in 6 s

    async def pay(self, message: dict, outcome: str) -> str:
        outcome = {"paid": "completed", "failed": "error"}.get(outcome, outcome)
        return await pay_on_page(self.http, self.emulator.url, message, outcome)

    async def deliver(self, order: Order, redirect: str, *, times: int = 1) -> list[Page]:
        """The emulator posts the callback when the customer pays; `times` more are the
        same callback again (KTWidget's retry), then the customer is back."""
        await self.emulator.settle()
        pages = []
        for n in range(times):
            if n:
                assert await self.notify(order) == 200
            pages.append(await self.come_back(redirect))
        return pages

    async def notification(self, order: Order) -> bytes:
        transaction = self.emulator.transactions[order.provider_payment_id or ""]
        return json.dumps(self.emulator.callback_body(transaction)).encode()

    def forged_success(self, order: Order) -> bytes:
        """ "Completed" for the order's transaction, for a tenge less than the order."""
        transaction = self.emulator.transactions[order.provider_payment_id or ""]
        body = self.emulator.callback_body(transaction)
        body["status"]["status"] = "completed"
        body["amount"] = float(order.total.to_decimal() - 1)
        return json.dumps(body).encode()

    def forged_return(self, order: Order, redirect: str) -> str:
        return redirect.replace("result=", "result=success&was=")

    def underpay(self, order: Order) -> None:
        transaction = self.emulator.transactions[order.provider_payment_id or ""]
        transaction.reported_amount = order.total.to_decimal() - 100


class PocketDriver(Driver):
    """A bridge page we host: the page posts the customer's Pocket token, we open the invoice;
    Pocket's webhook (to the merchant's one URL, with our key) is a hint, the check the truth.
    The customer's way back is the page's "I have paid" link to the return page."""

    name = "pocket"
    category, product = "Tea", "Mongolian milk tea"
    supports_callbacks = True
    keyless_callback = 401  # the URL we set carries our key: one without is not Pocket's
    callback_type = "application/json"
    emulator: PocketServer

    async def order(self) -> tuple[dict, Order]:
        """Order in the chat, and open the Pay button's page inside Pocket: getToken and the
        page's post open the invoice, as the page's script does."""
        message, _ = await super().order()
        token = self.emulator.customer_token("ada")
        async with self.http.post(
            button_url(message, "Pay"), json={"accessToken": token}
        ) as answer:
            assert answer.status == 200, await answer.text()
        return message, await self.latest()

    async def pay(self, message: dict, outcome: str) -> str:
        """The customer in the Pocket app: pays, refuses, or has not decided yet ("pending")."""
        page = button_url(message, "Pay")
        order = await self.latest()
        if outcome != "pending":
            self.emulator.webhook_on_failure = True
            url, self.emulator.fallback_url = self.emulator.fallback_url, None  # deliver() posts
            invoice = {"invoice_id": order.provider_payment_id, "outcome": outcome}
            try:
                async with self.http.post(f"{self.emulator.url}/sandbox/pay", json=invoice) as paid:
                    assert paid.status == 200, await paid.text()
            finally:
                self.emulator.fallback_url = url
        return page.replace("/pay/pocket/", "/return/pocket/")

    async def deliver(self, order: Order, redirect: str, *, times: int = 1) -> list[Page]:
        """Pocket's webhook (what the emulator posts as the customer pays), `times` times,
        each followed by the customer pressing "I have paid"."""
        pages = []
        for _ in range(times):
            assert await self.notify(order) == 200
            pages.append(await self.come_back(redirect))
        return pages

    def callback_query(self, order: Order, key: str) -> str:
        """Pocket posts to the merchant's one URL: `?k=` our provider key ("" here), no order."""
        return f"?k={key or self.parts.checkout.provider_key(self.name)}"

    async def notification(self, order: Order) -> bytes:
        invoice = self.emulator.invoices[int(order.provider_payment_id or 0)]
        return json.dumps(self.emulator.webhook_body(invoice)).encode()

    def forged_success(self, order: Order) -> bytes:
        body = {"id": 1, "amount": order.total.amount // 100, "info": "x", "invoiceState": "paid"}
        return json.dumps(body | {"invoiceId": order.provider_payment_id}).encode()

    def forged_return(self, order: Order, redirect: str) -> str:
        return f"{redirect}?invoiceId=999999&invoiceState=paid"

    def go_down(self) -> None:
        self.emulator.check_status = 503

    def come_back_up(self) -> None:
        self.emulator.check_status = None

    def slow_down(self, seconds: float) -> None:
        self.emulator.check_delay = seconds

    def underpay(self, order: Order) -> None:
        self.emulator.check_amount = order.total.amount // 100 - 100  # 100 tugrik short


DRIVERS: list[type[Driver]] = [RedoyaDriver, PaytureDriver, KTWidgetDriver, PocketDriver]


async def settled(app: Parts, seconds: float = 0.3) -> None:
    """Let detached confirms and the notifier finish, so counts of messages are final."""
    await asyncio.sleep(seconds)
    await app.notifier.flush()
