"""An emulator of Payture's InPay (`/apim`) and EWallet (`/vwapi`) interfaces, from seed 004 and
PROVIDERS.md only: form or query parameters, `Data`/`DATA` decoded the three ways real clients
encode it, XML answers like the real API.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import unquote
from xml.sax.saxutils import quoteattr

import aiohttp
from aiohttp import web

from sandbox.base import FakeServer

WALLET_SECRET = "demo-wallet-secret"
KNOBS = (
    "getstate_status_override",
    "malformed_xml",
    "delay",
    "notify_url",
    "duplicate_notifications",
)


@dataclass
class PaytureOrder:
    order_id: str
    amount: int  # kopecks charged and not refunded
    state: str = "New"
    wallet_user: str = ""
    refunds: list[int] = field(default_factory=list)  # each refund made, in kopecks


@dataclass
class Session:
    session_id: str
    kind: str  # Pay | Add (wallet) | InPay
    url: str
    created: float
    order_id: str = ""
    amount: int = 0
    user: str = ""
    card_id: str = ""
    done: bool = False


@dataclass
class WalletUser:
    password: str
    cards: dict[str, dict[str, str]] = field(default_factory=dict)


Handler = Callable[[dict[str, str]], web.Response]


def xml(command: str, **attrs: object) -> web.Response:
    body = " ".join(f"{k}={quoteattr(str(v))}" for k, v in attrs.items())
    return web.Response(
        text=f'<?xml version="1.0" encoding="utf-8"?>\n<{command} {body}/>',
        content_type="application/xml",
    )


def parse_data(raw: str) -> dict[str, str]:
    """`k=v;k=v`: split on ';', then at the first '=', then percent-decode the value. A whole
    string encoded twice is decoded once more first."""
    if "=" not in raw and "%3D" in raw.upper():
        raw = unquote(raw)
    pairs = (part.partition("=") for part in raw.split(";") if part)
    return {k.strip(): unquote(v) for k, _, v in pairs}


class PaytureServer(FakeServer):
    name = "payture"
    knobs = KNOBS

    def __init__(
        self,
        key: str = "MerchantKey",
        password: str = "sandbox-password-123",
        wallet_key: str = "VWMerchantKey",
        wallet_password: str = "sandbox-wallet-123",
        *,
        session_lifetime: timedelta = timedelta(minutes=60),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.key, self.password = key, password
        self.wallet_key, self.wallet_password = wallet_key, wallet_password
        self._session_lifetime = session_lifetime
        self._tasks: set[asyncio.Task[None]] = set()
        self.reset()
        for api in ("apim", "vwapi"):
            self.app.router.add_route("*", f"/{api}/{{command}}", self._command)
        self.app.router.add_post("/sandbox/pay", self._pay)

    def env(self) -> dict[str, str]:
        return {
            "PAYTURE_URL": self.url,
            "PAYTURE_KEY": self.key,
            "PAYTURE_PASSWORD": self.password,
            "PAYTURE_WALLET_KEY": self.wallet_key,
            "PAYTURE_WALLET_PASSWORD": self.wallet_password,
            # the bot's own secret (Payture never sees it); a fixed value is fine for the sandbox
            "PAYTURE_WALLET_SECRET": WALLET_SECRET,
        }

    def hints(self) -> list[str]:
        return [
            f"# pay (payture):  curl -XPOST {self.url}/sandbox/pay "
            "-H 'content-type: application/json' "
            '-d \'{"url": "<Pay URL>", "outcome": "paid"}\'',
            '#   then open the "redirect" URL it answers (payture): the customer coming back '
            "to the bot, which then checks the payment and says so in the chat",
        ]

    def reset(self) -> None:
        """Also cancels the notifications still in flight, so none reaches a later test's bot.
        A cancelled post ends at its next await; `settle()` and `stop()` still await it."""
        for task in self._tasks:
            task.cancel()
        self.orders: dict[str, PaytureOrder] = {}
        self.sessions: dict[str, Session] = {}
        self.users: dict[str, WalletUser] = {}
        self.notifications: list[str] = []
        self.session_lifetime = self._session_lifetime
        self.getstate_status_override: int | None = None
        self.malformed_xml = False
        self.raw_answer: str | None = None  # answer every command with exactly this body
        self.delay = 0.0
        self.notify_url: str | None = None
        self.duplicate_notifications = False
        self.refuse_next_refund: str | None = None  # the next Refund answers this ErrCode
        self.lose_next_refund_answer = False  # the next Refund is made, its answer lost (503)
        self.down_after_next_refund = False  # after the next Refund, GetState answers 503

    async def _command(self, request: web.Request) -> web.StreamResponse:
        api, command = request.path.split("/")[1], request.match_info["command"]
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        if self.delay:
            await asyncio.sleep(self.delay)
        if command in ("Pay", "Add"):
            return web.Response(
                content_type="text/html", text=f"<h1>Payture sandbox {command} page</h1>"
            )
        if command == "GetState" and self.getstate_status_override:
            return web.Response(status=self.getstate_status_override, text="Service Unavailable")
        if self.raw_answer is not None:
            return web.Response(text=self.raw_answer, content_type="application/xml")
        if self.malformed_xml:
            return web.Response(text=f"<{command} Success=", content_type="application/xml")
        handler = {
            ("apim", "Init"): self._init,
            ("apim", "GetState"): self._get_state,
            ("apim", "Refund"): self._refund_knobs(self._refund),
            ("vwapi", "Init"): self._wallet_init,
            ("vwapi", "GetState"): self._get_state,
            ("vwapi", "GetList"): self._get_list,
            ("vwapi", "Refund"): self._refund_knobs(self._wallet_refund),
        }.get((api, command))
        if handler is None:
            return xml(command, Success="False", ErrCode="WRONG_PARAMS")
        return handler(params)

    def _refund_knobs(self, refund: Handler) -> Handler:
        """A refund the bank refuses once, or one made whose answer never reaches the client."""

        def handle(p: dict[str, str]) -> web.Response:
            if self.refuse_next_refund:
                code, self.refuse_next_refund = self.refuse_next_refund, None
                return xml("Refund", Success="False", OrderId=p.get("OrderId", ""), ErrCode=code)
            answer = refund(p)
            if self.down_after_next_refund:  # the bank went down right after: nobody can tell
                self.down_after_next_refund, self.getstate_status_override = False, 503
            if self.lose_next_refund_answer:
                self.lose_next_refund_answer = False
                return web.Response(status=503, text="Service Unavailable")
            return answer

        return handle

    # --- InPay --------------------------------------------------------------------------

    def _init(self, p: dict[str, str]) -> web.Response:
        if p.get("Key") != self.key:
            return xml("Init", Success="False", ErrCode="ACCESS_DENIED")
        data = parse_data(p.get("Data", ""))
        return self._open(data, "InPay", "Init")

    def _open(self, data: dict[str, str], kind: str, command: str, user: str = "") -> web.Response:
        order_id, amount = data.get("OrderId", ""), data.get("Amount", "")
        if not order_id or len(order_id) > 50 or not amount.isdigit() or int(amount) <= 0:
            return xml(command, Success="False", ErrCode="WRONG_PARAMS")
        if order_id in self.orders:
            return xml(command, Success="False", ErrCode="DUPLICATE_ORDER_ID")
        if data.get("SessionType", "Pay") not in ("Pay", "Block"):
            return xml(command, Success="False", ErrCode="WRONG_PARAMS")
        self.orders[order_id] = PaytureOrder(order_id, int(amount), wallet_user=user)
        session = Session(
            str(uuid.uuid4()),
            kind,
            data.get("Url", ""),
            time.time(),
            order_id,
            int(amount),
            user,
            data.get("CardId", ""),
        )
        self.sessions[session.session_id] = session
        return xml(
            command,
            Success="True",
            OrderId=order_id,
            Amount=amount,
            SessionId=session.session_id,
            SessionLifeTime=int(self.session_lifetime.total_seconds() // 60),
        )

    def _get_state(self, p: dict[str, str]) -> web.Response:
        if p.get("Key") not in (self.key, self.wallet_key) and p.get("VWID") != self.wallet_key:
            return xml("GetState", Success="False", ErrCode="ACCESS_DENIED")
        order = self.orders.get(p.get("OrderId", ""))
        if order is None:
            return xml(
                "GetState", Success="False", OrderId=p.get("OrderId", ""), ErrCode="ORDER_NOT_FOUND"
            )
        self._time_out(order)
        return xml(
            "GetState",
            Success="True",
            OrderId=order.order_id,
            State=order.state,
            Forwarded="False",
            Amount=order.amount,
            RRN="",
            ErrCode="NONE",
        )

    def _time_out(self, order: PaytureOrder) -> None:
        """An unpaid order whose session lived out its lifetime: Payture reports it Obsolete."""
        session = next((s for s in self.sessions.values() if s.order_id == order.order_id), None)
        expired = session and time.time() - session.created > self.session_lifetime.total_seconds()
        if order.state == "New" and expired:
            order.state = "Obsolete"

    def _refund(self, p: dict[str, str]) -> web.Response:
        if p.get("Key") != self.key or p.get("Password") != self.password:
            return xml("Refund", Success="False", ErrCode="ACCESS_DENIED")
        return self._do_refund(p.get("OrderId", ""), p.get("Amount"))

    def _do_refund(self, order_id: str, amount_text: str | None) -> web.Response:
        order = self.orders.get(order_id)
        if order is None:
            return xml("Refund", Success="False", OrderId=order_id, ErrCode="ORDER_NOT_FOUND")
        if order.state != "Charged":
            return xml("Refund", Success="False", OrderId=order_id, ErrCode="ILLEGAL_ORDER_STATE")
        amount = (
            order.amount if not amount_text else int(amount_text) if amount_text.isdigit() else -1
        )
        if amount <= 0 or amount > order.amount:
            return xml("Refund", Success="False", OrderId=order_id, ErrCode="AMOUNT_ERROR")
        order.amount -= amount
        order.refunds.append(amount)
        if order.amount == 0:
            order.state = "Refunded"
        self._notify("EngineRefundSuccess", order, amount)
        return xml("Refund", Success="True", OrderId=order_id, NewAmount=order.amount)

    # --- EWallet ------------------------------------------------------------------------

    def _wallet_auth(self, p: dict[str, str]) -> tuple[dict[str, str], str] | None:
        if p.get("VWID") != self.wallet_key:
            return None
        data = parse_data(p.get("DATA", ""))
        login, password = data.get("VWUserLgn", ""), data.get("VWUserPsw", "")
        if not login or not password:
            return None
        user = self.users.setdefault(login, WalletUser(password))
        return (data, login) if user.password == password else None

    def _wallet_init(self, p: dict[str, str]) -> web.Response:
        auth = self._wallet_auth(p)
        if auth is None:
            return xml("Init", Success="False", ErrCode="ACCESS_DENIED")
        data, login = auth
        if data.get("SessionType") == "Add":
            session = Session(
                str(uuid.uuid4()), "Add", data.get("Url", ""), time.time(), user=login
            )
            self.sessions[session.session_id] = session
            return xml(
                "Init",
                Success="True",
                SessionId=session.session_id,
                SessionType="Add",
                SessionLifeTime=int(self.session_lifetime.total_seconds() // 60),
            )
        card = data.get("CardId", "")
        if card and card not in self.users[login].cards:
            return xml("Init", Success="False", ErrCode="CARD_NOT_FOUND")
        return self._open(data, "Pay", "Init", user=login)

    def _get_list(self, p: dict[str, str]) -> web.Response:
        auth = self._wallet_auth(p)
        if auth is None:
            return xml("GetList", Success="False", ErrCode="ACCESS_DENIED")
        cards = self.users[auth[1]].cards.values()
        items = "".join(
            "<Item " + " ".join(f"{k}={quoteattr(v)}" for k, v in c.items()) + "/>"
            for c in list(cards)[:20]
            if c["Status"] == "IsActive" and c["Expired"] == "false"
        )
        return web.Response(
            text=f'<GetList Success="True" VWUserLgn={quoteattr(auth[1])}>{items}</GetList>',
            content_type="application/xml",
        )

    def _wallet_refund(self, p: dict[str, str]) -> web.Response:
        data = parse_data(p.get("DATA", ""))
        if p.get("VWID") != self.wallet_key or data.get("Password") != self.wallet_password:
            return xml("Refund", Success="False", ErrCode="ACCESS_DENIED")
        return self._do_refund(data.get("OrderId", ""), data.get("Amount"))

    # --- the customer on the page, and notifications --------------------------------------

    async def _pay(self, request: web.Request) -> web.Response:
        body = await request.json()
        session_id = str(body.get("url", "")).rpartition("SessionId=")[2]
        session = self.sessions.get(session_id)
        outcome = body.get("outcome")
        if session is None or outcome not in ("paid", "failed", "cancelled"):
            return web.json_response({"error": "unknown session or outcome"}, status=400)
        if session.done or time.time() - session.created > self.session_lifetime.total_seconds():
            return web.json_response({"error": "the session has ended"}, status=400)
        session.done = True
        ok = outcome == "paid"
        if session.kind == "Add":
            if ok:
                number = str(body.get("card") or "4111111111111111")
                card_id = str(uuid.uuid4())
                self.users[session.user].cards[card_id] = {
                    "CardName": f"{number[:6]}xxxxxx{number[-4:]}",
                    "CardId": card_id,
                    "CardHolder": "CARD HOLDER",
                    "Status": "IsActive",
                    "NoCVV": "false",
                    "Expired": "false",
                }
            return web.json_response({"redirect": session.url.replace("{success}", str(ok))})
        order = self.orders[session.order_id]
        if outcome != "cancelled":
            order.state = "Charged" if ok else "Error"
            self._notify("EnginePaySuccess" if ok else "EnginePayFail", order, order.amount)
        redirect = session.url.replace("{orderid}", order.order_id).replace("{success}", str(ok))
        return web.json_response({"redirect": redirect})

    def _notify(self, kind: str, order: PaytureOrder, amount: int) -> None:
        if not self.notify_url:
            return
        stamp = time.strftime("%d.%m.%Y %H:%M:%S")
        body = (
            f"Notification={kind}&OrderId={order.order_id}&Success={'Fail' not in kind}"
            f"&Amount={amount}&ErrCode=NONE&TransactionDate={stamp.replace(' ', '+')}"
            f"&MerchantContract={self.key}"
        )
        for _ in range(2 if self.duplicate_notifications else 1):
            task = asyncio.create_task(self._post(self.notify_url, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, body: str) -> None:
        self.notifications.append(body)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
                ),
            ):
                pass

    async def settle(self) -> None:
        """Wait for notifications in flight (tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        await self.settle()
        await super().stop()
