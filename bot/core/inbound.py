"""Everything that arrives from outside about a payment: the customer's return, provider
callbacks, bridge-page posts, payments reported in the chat, and the replay of stored ones.

Each is authenticated and identified, stored in the inbox before it is answered (so a crash
loses nothing), and then handed to the one `confirm`. None of them marks anything paid itself.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.core.confirm import Confirming, stored_ref
from bot.core.outbox import OutboxKind, message
from bot.core.serial import STORED_ERRORS, dump_chat_payment, dump_request, parse_stored
from providers.base import (
    Ack,
    BadCallback,
    BridgePage,
    BridgeWords,
    CallbackSetup,
    Capability,
    ChatPayment,
    CheckoutRequest,
    Inbound,
    InboundRequest,
    InChat,
    PaymentState,
    Provider,
    ProviderError,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
)
from providers.registry import UnknownProvider
from storage.base import DuplicatePayment, InboundEvent, Order, OrderHead, OrderState

log = logging.getLogger("bot.core.inbound")

FollowUp = Callable[[], Awaitable[None]]
ORDER_REF_DIGITS = 18  # an order reference longer than this is no id of ours (int64 range)
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")  # what secrets.token_urlsafe gives our orders
PAYMENT_ID_LIMIT = 200
UNKNOWN = "unknown"  # the stored kind of a callback about a payment no order has


def order_ref(value: str | None) -> int | None:
    """Our order id from a URL parameter, or None for anything that is not one."""
    if not value or len(value) > ORDER_REF_DIGITS or not value.isascii() or not value.isdigit():
        return None
    return int(value)


@functools.cache
def _sets_own_url(kind: type[Provider]) -> bool:
    """Whether this kind of adapter keeps one callback URL per merchant, asked once per kind:
    a check against a Protocol is slow, and this one is on every callback."""
    return issubclass(kind, CallbackSetup)


def _sane(text: str) -> bool:
    return bool(text) and len(text) <= PAYMENT_ID_LIMIT and text.isprintable()


def identified(inbound: Inbound, provider: str) -> Inbound:
    """The adapter's reading of a request, refused when the payment id or the event key it
    found cannot be one (control characters such as NUL, which PostgreSQL refuses in text,
    or a runaway length)."""
    if inbound.ref is not None and not _sane(inbound.ref.payment_id):
        raise BadCallback("not a payment id", provider=provider)
    if inbound.event_key is not None and not _sane(inbound.event_key):
        raise BadCallback("not an event key", provider=provider)
    return inbound


def not_about_this_order(
    order: Order | OrderHead, provider: Provider, inbound: Inbound
) -> str | None:
    """Why a callback that is itself the truth (KTWidget) is not about this order's payment
    and its amount; None when it is."""
    if inbound.ref is None or inbound.status is None:
        return "the callback names no payment"
    if order.provider_payment_id is not None and inbound.ref != stored_ref(order):
        return "the callback names another payment than the order's"
    paid = inbound.status.paid
    if paid is not None and paid not in (order.total, provider.amount_format.held(order.total)):
        return f"the callback says {paid}, the order is {order.total}"
    return None


class Receiving(Confirming):
    def checkout_request(
        self, order: Order, provider: Provider, **extra: object
    ) -> CheckoutRequest:
        """What an adapter is told about an order: amounts, our URLs, who pays."""
        return CheckoutRequest(
            order_id=order.id,
            amount=order.total,
            description=order.description or f"Order {order.id}",
            return_url=f"{self.public_url}/return/{provider.name}/{order.token}",
            callback_url=(
                f"{self.public_url}/callbacks/{provider.name}"
                f"?o={order.id}&k={self.callback_key(provider.name, order.id)}"
            ),
            bridge_url=f"{self.public_url}/pay/{provider.name}/{order.token}",
            token=order.token,
            locale=order.locale,
            customer_ref=f"tg{order.user_id}",
            user_id=order.user_id,
            **extra,  # type: ignore[arg-type]
        )

    async def order_of_link(self, provider_name: str, token: str) -> Order | None:
        """The order a return or bridge URL names; None for a token that is not one of ours."""
        if not TOKEN.fullmatch(token) or provider_name not in self.providers:
            return None
        order = await self.storage.get_order_by_token(token)
        return order if order is not None and order.provider == provider_name else None

    def _provider(self, name: str) -> Provider:
        try:
            return self.providers.get(name)
        except UnknownProvider:
            raise BadCallback("unknown provider", provider=name, http_status=404) from None

    # --- the customer's return ------------------------------------------------------------

    async def handle_return(
        self, provider_name: str, token: str, request: InboundRequest
    ) -> Order | None:
        """The customer's browser is back. None for an unknown token (the page answers 404)."""
        order = await self.order_of_link(provider_name, token)
        if order is None:
            return None
        provider = self.providers.get(provider_name)
        read = identified(await provider.parse_return(request), provider.name)  # else 400
        inbound = Inbound(read.ref, event_key=read.event_key, hint=read.hint)  # a return is
        # the customer's: whatever status it claims is never the truth
        return await self._store_and_confirm("return", provider, order, inbound, request)

    # --- provider callbacks ---------------------------------------------------------------

    async def accept_callback(
        self, provider_name: str, request: InboundRequest
    ) -> tuple[Ack, FollowUp | None]:
        """Authenticate, identify and store a provider callback; answer only after it is stored.

        The order comes from the callback key in the URL (`o`, `k`); without one, a callback
        is only a hint found by its payment id, and for providers whose callback is the truth
        it is refused. Returns the answer for the provider and the confirm to run off the
        request path, or None when there is nothing new to do.
        """
        provider = self._provider(provider_name)
        order = await self._callback_order(provider, request)
        inbound = identified(await provider.parse_callback(request), provider.name)
        if order is None and inbound.ref is not None:
            order = await self.storage.get_order_head_by_payment(
                provider.name, inbound.ref.payment_id
            )
            if order is None and "k" in request.query:  # the provider's own, with our key
                return await self._unknown_payment(provider, inbound, request)
        if order is None or order.provider != provider.name:
            raise BadCallback("no such order", provider=provider.name, http_status=404)
        if Capability.STATUS_IN_CALLBACK in provider.capabilities:
            await self._about_this_order(order, provider, inbound)
        done = self.nothing_to_confirm(order, inbound)  # a late or repeated notification
        event_id = await self._store_event(
            "callback", provider, order, inbound, request, processed=done
        )
        if event_id is None or done:
            return provider.ack(True), None
        return provider.ack(True), self._follow_up(order.id, event_id, "callback", inbound)

    async def _unknown_payment(
        self, provider: Provider, inbound: Inbound, request: InboundRequest
    ) -> tuple[Ack, FollowUp | None]:
        """A callback to the merchant's one URL, with our key, about a payment no order has:
        a payment the provider opened while its answer to us was lost. Kept in the inbox and
        checked with the provider; once it says the payment was made, the admins are told."""
        assert inbound.ref is not None
        key = f"unknown:{inbound.event_key or inbound.ref.payment_id}"
        body = dump_request(UNKNOWN, request)
        event_id = await self.storage.record_inbound(provider.name, key, None, body)
        if event_id is None:
            return provider.ack(True), None
        log.error("%s reports payment %s, which no order has", provider.name, inbound.ref)

        async def follow_up() -> None:
            if await self._unknown_checked(provider, inbound):
                await self.storage.mark_inbound_processed(event_id)

        return provider.ack(True), follow_up

    async def _unknown_checked(self, provider: Provider, inbound: Inbound) -> bool:
        """Ask about a payment no order has; True once there is nothing more to ask."""
        assert inbound.ref is not None
        try:
            status = await provider.fetch_status(inbound.ref)
        except ProviderMisconfigured as exc:
            await self._misconfigured(None, exc)
            return False
        except ProviderError as exc:
            log.warning("%s: checking payment %s failed: %s", provider.name, inbound.ref, exc)
            return not isinstance(exc, ProviderUnavailable)
        if status.paid is None or status.state not in (
            PaymentState.PAID,
            PaymentState.NEEDS_REVIEW,
        ):
            return status.state is not PaymentState.PENDING
        said = {
            "payment_id": inbound.ref.payment_id,
            "amount": status.paid.amount,
            "currency": status.paid.currency,
            "provider": provider.display_name,
        }
        for admin in self.admin_ids:
            await self.storage.enqueue(None, message(OutboxKind.ADMIN_UNKNOWN_PAYMENT, admin, said))
        self._on_outbox()
        return True

    def not_stored_ack(self, provider_name: str) -> Ack:
        """What tells the provider its callback was not taken, so that it sends it again."""
        if provider_name in self.providers:
            ack = self.providers.get(provider_name).ack(False)
            if ack.status >= 500:
                return ack
        return Ack(503, "text/plain", b"not stored, try again")

    async def _about_this_order(
        self, order: OrderHead, provider: Provider, inbound: Inbound
    ) -> None:
        """Refused before it is stored, and the order unchanged, unless it is about this
        order's payment and amount. One with the order's key and payment but another amount
        can only be the provider's own word: the admins hear of it, once per order."""
        why = not_about_this_order(order, provider, inbound)
        if why is None:
            return
        if inbound.ref is not None and inbound.ref == stored_ref(order):
            log.error("order %s: %s", order.id, why)
            told = False
            for admin in self.admin_ids:
                notice = message(OutboxKind.ADMIN_CALLBACK_REFUSED, admin, {"reason": why})
                told |= await self.storage.enqueue(order.id, notice)
            if told:
                self._on_outbox()
        raise BadCallback(why, provider=provider.name, http_status=409)

    async def _callback_order(
        self, provider: Provider, request: InboundRequest
    ) -> OrderHead | None:
        key = request.query.get("k")
        if key is None:
            # the callback is the truth, or it comes to a URL we set ourselves: ours has a key
            if Capability.STATUS_IN_CALLBACK in provider.capabilities or _sets_own_url(
                type(provider)
            ):
                raise BadCallback("callback without a key", provider=provider.name, http_status=401)
            return None
        if "o" not in request.query:  # the merchant's one URL (Pocket): found by payment id
            if not hmac.compare_digest(key.encode(), self.provider_key(provider.name).encode()):
                raise BadCallback(
                    "callback key does not match", provider=provider.name, http_status=403
                )
            return None
        order_id = order_ref(request.query.get("o"))
        if order_id is None or not self.callback_key_valid(provider.name, order_id, key):
            raise BadCallback(
                "callback key does not match", provider=provider.name, http_status=403
            )
        return await self.storage.get_order_head(order_id)

    def _follow_up(self, order_id: int, event_id: int, actor: str, inbound: Inbound) -> FollowUp:
        async def follow_up() -> None:
            try:
                confirmation = await self.confirm(order_id, actor=actor, inbound=inbound)
            except Exception:  # runs detached: log it here, the stored event is replayed later
                log.exception("confirming order %s after a %s failed", order_id, actor)
                return
            if confirmation.answered:
                await self.storage.mark_inbound_processed(event_id)

        return follow_up

    # --- bridge pages ---------------------------------------------------------------------

    async def open_bridge(
        self,
        provider_name: str,
        token: str,
        request: InboundRequest,
        words: Callable[[Order, Provider], BridgeWords],
    ) -> tuple[Ack, FollowUp | None] | None:
        """Our page at /pay/{provider}/{token} (Pocket). The adapter shows the page, in the
        words bot/ gives for the order, and opens the payment: its ref is stored and confirmed
        as any other. None for an unknown token, a provider without a bridge page, or an order
        with nothing left to pay (a new payment is never opened for it)."""
        order = await self.order_of_link(provider_name, token)
        if order is None:
            return None
        provider = self.providers.get(provider_name)
        if Capability.BRIDGE_PAGE not in provider.capabilities or not isinstance(
            provider, BridgePage
        ):
            return None
        async with self._lock(order.id):  # two taps at once open one payment, not two
            order = await self.storage.get_order(order.id)
            if order is None or order.state is not OrderState.AWAITING_PAYMENT:
                return None
            if order.expires_at is not None and self.clock() >= order.expires_at:
                return None  # past its deadline: a payment opened now would only be reviewed
            opened = stored_ref(order)
            result = await provider.bridge(
                request, self.checkout_request(order, provider), words(order, provider), opened
            )
            if isinstance(result.problem, ProviderMisconfigured):
                await self._misconfigured(order, result.problem)
            if result.ref is None or result.ref == opened:
                return result.ack, None
            # Our own adapter opened this payment: keep its ref on the order now, before the
            # answer, since a stored bridge post is not parsed again (that would open another).
            try:
                order = await self.storage.attach_payment(
                    order.id, result.ref.payment_id, result.ref.data
                )
            except DuplicatePayment:
                # another replica opened one first, or the id is another order's: this one is
                # a payment no order has, found by its callback (`_unknown_payment`)
                log.error(
                    "order %s: payment %s opened beside the order's own", order.id, result.ref
                )
        inbound = Inbound(result.ref, event_key=f"bridge:{result.ref.payment_id}")
        # stored without its body: the post carries the customer's tokens, and is never read again
        kept = InboundRequest(request.method, request.path, request.query, request.headers)
        event_id = await self._store_event("bridge", provider, order, inbound, kept)
        if event_id is None:
            return result.ack, None
        return result.ack, self._follow_up(order.id, event_id, "bridge", inbound)

    async def register_callbacks(self) -> list[str]:
        """Give every provider that keeps one callback URL per merchant (Pocket) ours, with
        its key. Returns the providers still to do (unreachable now: the caller tries again
        later); a refusal of our credentials is told to the admins once."""
        pending = []
        for provider in self.providers:
            if Capability.CALLBACKS not in provider.capabilities or not isinstance(
                provider, CallbackSetup
            ):
                continue
            try:
                changed = await provider.set_callback_url(self.provider_callback_url(provider.name))
            except ProviderUnavailable as exc:
                log.warning("setting the callback URL of %s failed: %s", provider.name, exc)
                pending.append(provider.name)
            except ProviderMisconfigured as exc:  # our credentials
                await self._misconfigured(None, exc)
            except ProviderRejected as exc:  # our PUBLIC_URL
                await self._misconfigured(
                    None,
                    ProviderMisconfigured(
                        f"refused our callback URL: {exc}", provider=provider.name, code=exc.code
                    ),
                )
            else:
                log.info("%s callback URL %s", provider.name, "set" if changed else "kept")
        return pending

    # --- payments reported in the chat ----------------------------------------------------

    def _in_chat(self, payload: str) -> tuple[Provider, int] | None:
        """The in-chat provider whose signed payload this is, and the order it names."""
        for provider in self.in_chat():
            assert isinstance(provider, InChat)
            order_id = provider.order_of(payload)
            if order_id is not None:
                return provider, order_id
        return None

    async def pre_checkout(
        self, user_id: int, payload: str, currency: str, total_amount: int
    ) -> str | None:
        """Whether Telegram may take this payment (its pre-checkout question, answered within
        10 s): from what storage knows, never a provider call. None: yes; else why not, as a
        key the chat words ("forged", "not_yours", "paid", "closed", "amount")."""
        found = self._in_chat(payload)
        if found is None:
            return "forged"
        provider, order_id = found
        order = await self.storage.get_order(order_id)
        if order is None or order.provider != provider.name:
            return "forged"
        if order.user_id != user_id:
            return "not_yours"
        if order.state in (OrderState.PAID, OrderState.PARTIALLY_REFUNDED):
            return "paid"  # an older invoice of the same order: paying it again is refused
        if order.state is not OrderState.AWAITING_PAYMENT:
            return "closed"
        if order.expires_at is not None and self.clock() >= order.expires_at:
            return "closed"
        if (currency, total_amount) != (order.total.currency, order.total.amount):
            return "amount"
        return None

    async def receive_chat_payment(
        self, provider_name: str, payment: ChatPayment, *, actor: str = "chat"
    ) -> Order | None:
        """A payment Telegram reports in the chat (authenticated by the Bot API itself): stored
        once per charge, then confirmed. None when its payload names no order of ours (the
        admins are told, once)."""
        provider = self._provider(provider_name)
        if not isinstance(provider, InChat):
            raise BadCallback("not an in-chat provider", provider=provider_name)
        inbound = identified(provider.parse_chat_payment(payment), provider.name)
        order_id = provider.order_of(payment.invoice_payload)
        order = await self.storage.get_order(order_id) if order_id is not None else None
        request = InboundRequest("CHAT", "successful_payment", body=dump_chat_payment(payment))
        if order is None or order.provider != provider.name:
            await self._stranger(provider, payment, request)
            return None
        if order.user_id != payment.user_id:  # someone paid a forwarded invoice: never dropped
            event_id = await self._store_event("chat", provider, order, inbound, request)
            order = await self.foreign_payment(order.id, inbound, actor=actor)
            if event_id is not None:
                await self.storage.mark_inbound_processed(event_id)
            return order
        return await self._store_and_confirm("chat", provider, order, inbound, request, actor=actor)

    async def _stranger(
        self, provider: Provider, payment: ChatPayment, request: InboundRequest
    ) -> None:
        """A payment whose payload names no order of ours (signed with an older secret, or an
        invoice of something else on this bot): the money is with us, so it is kept in the
        inbox and the admins are told once, with what they need to refund it."""
        event_id = await self.storage.record_inbound(
            provider.name, payment.charge_id, None, dump_request("chat", request)
        )
        if event_id is None:
            return  # told already
        log.error("a %s payment %s names no order of ours", provider.name, payment.charge_id)
        await self.storage.mark_inbound_processed(event_id)
        said = {
            "payment_id": payment.charge_id,
            "user_id": payment.user_id,
            "amount": payment.total_amount,
            "currency": payment.currency,
            "provider": provider.display_name,
        }
        for admin in self.admin_ids:
            await self.storage.enqueue(
                None, message(OutboxKind.ADMIN_STRANGER_PAYMENT, admin, said)
            )
        self._on_outbox()

    # --- the inbox ------------------------------------------------------------------------

    async def _store_and_confirm(
        self,
        kind: str,
        provider: Provider,
        order: Order,
        inbound: Inbound,
        request: InboundRequest,
        *,
        actor: str | None = None,
    ) -> Order:
        """Store it, confirm on the spot, and mark it done once the truth was had (else the
        stored event is replayed)."""
        event_id = await self._store_event(kind, provider, order, inbound, request)
        confirmation = await self.confirm(order.id, actor=actor or kind, inbound=inbound)
        if confirmation.answered and event_id is not None:
            await self.storage.mark_inbound_processed(event_id)
        return confirmation.order

    async def _store_event(
        self,
        kind: str,
        provider: Provider,
        order: Order | OrderHead,
        inbound: Inbound,
        request: InboundRequest,
        *,
        processed: bool = False,
    ) -> int | None:
        payment_id = inbound.ref.payment_id if inbound.ref else order.token
        key = inbound.event_key or f"{kind}:{payment_id}"
        return await self.storage.record_inbound(
            provider.name, key, order.id, dump_request(kind, request), processed=processed
        )

    async def replay_inbound(
        self, limit: int = 100, now: datetime | None = None, *, at_start: bool = False
    ) -> int:
        """Confirm stored returns and callbacks that were not processed (crash, outage), the
        oldest `limit` of them; `at_start`: the start-up's one look at every one, `limit` at a
        time, at orders backing off too."""
        now = now or self.clock()
        done, after = 0, 0
        # an order backing off after a failed check waits for its next check, not the next
        # sweep; but at start-up every event gets one look: the process that stored it may
        # have died before its follow-up ran or before its mark was written
        due_at = None if at_start else now
        while True:
            events = await self.storage.unprocessed_inbound(limit, due_at=due_at, after=after)
            for event in events:
                if await self._replay(event, now):
                    await self.storage.mark_inbound_processed(event.id)
                    done += 1
            if not at_start or len(events) < limit:
                return done
            after = events[-1].id

    async def prune_inbox(self, now: datetime | None = None) -> int:
        """Forget processed events that arrived more than `inbox_keep` ago, a batch a pass:
        the inbox holds what arrived while an order was being settled, and grows with every
        callback; the audit trail keeps what each one changed. A provider's late repeat of a
        forgotten one is stored as new: about an order, it finds the order settled (nothing
        moves twice); about a payment no order has, the admins hear of it again."""
        if self.inbox_keep is None:
            return 0
        forgotten = await self.storage.prune_inbound((now or self.clock()) - self.inbox_keep)
        if forgotten:
            log.info(
                "forgot %d inbox events processed and older than %s", forgotten, self.inbox_keep
            )
        return forgotten

    async def _replay(self, event: InboundEvent, now: datetime) -> bool:
        if event.provider not in self.providers:
            return True
        provider = self.providers.get(event.provider)
        try:
            kind, inbound = await parse_stored(provider, event.body)
        except (*STORED_ERRORS, BadCallback) as exc:
            log.warning("dropping stored event %s: %s", event.id, exc)
            return True
        if event.order_id is None:  # a payment no order has, or one naming none (told once)
            return kind != UNKNOWN or await self._unknown_checked(provider, inbound)
        confirmation = await self.confirm(
            event.order_id, actor=f"replay:{kind}", inbound=inbound, now=now
        )
        return confirmation.answered
