"""Placing and cancelling orders, and the reads the chat shows: the chat asks the core, never
storage or a provider."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.core import details
from bot.core.confirm import SWEEP, stored_ref
from bot.core.context import CheckoutError, ReceiptError
from bot.core.inbound import Receiving
from money import AmountNotRepresentable, Money
from providers.base import (
    Capability,
    CheckoutLine,
    LinesRefused,
    Provider,
    ProviderError,
    ProviderMisconfigured,
    ProviderUnavailable,
    Receipts,
)
from providers.registry import UnknownProvider
from storage.base import (
    AuditEntry,
    Buyer,
    Delivery,
    Figures,
    NewOrder,
    Order,
    OrderItem,
    OrderQuery,
    OrderState,
    SavedCard,
)

log = logging.getLogger("bot.core.checkout")

S = OrderState
STALE_CREATED = timedelta(minutes=10)  # a checkout takes seconds; one this old never finished
REUSE_WITHIN = timedelta(minutes=2)  # a second press of the same "Buy now" reuses the order
RECEIPT_LIMIT = 10 * 1024 * 1024  # bytes: a bigger "receipt" is none (Telegram takes 50 MB)


@dataclass(frozen=True, slots=True)
class CartLine:
    product_id: str
    title: str
    quantity: int
    unit_price: Money
    sku: str = ""  # the product's code in the provider's system (the ERP's resource id)
    delivery: bool = False  # the product is shipped: the order needs the customer's details


@dataclass(frozen=True, slots=True)
class PaymentChoice:
    """One way to pay a total, as the chat offers it: a provider, or a card saved with it."""

    provider: str
    display_name: str
    card: SavedCard | None = None


@dataclass(frozen=True, slots=True)
class AmountLimit:
    """A provider's bound that leaves an amount out (Redoya's 1,000 TRY cap): what the catalog
    check and the chat say, instead of an order that fails later."""

    display_name: str
    bound: Money
    above: bool  # True: the amount is above the provider's maximum; False: below its minimum


def amount_limit(provider: Provider, amount: Money) -> AmountLimit | None:
    """The bound of this provider that `amount` is beyond; None when within (or another
    currency)."""
    fmt = provider.amount_format
    if amount.currency not in fmt.currencies:
        return None
    if fmt.maximum is not None and amount.amount > fmt.maximum:
        return AmountLimit(provider.display_name, Money(fmt.maximum, amount.currency), True)
    if amount.amount < fmt.minimum:
        return AmountLimit(provider.display_name, Money(fmt.minimum, amount.currency), False)
    return None


class Ordering(Receiving):
    # --- placing orders -----------------------------------------------------------------

    def providers_for(self, currency: str, allowed: Sequence[str] = ()) -> list[Provider]:
        """Providers that take this currency (and that the products allow, if they say)."""
        found = self.providers.for_currency(currency)
        return [p for p in found if not allowed or p.name in allowed]

    def limits_for(self, total: Money, allowed: Sequence[str] = ()) -> list[AmountLimit]:
        """Why no provider of this currency takes this total: each one's bound that it is
        beyond. Empty when one takes it, or when none takes the currency at all."""
        takers = self.providers_for(total.currency, allowed)
        limits = [amount_limit(p, total) for p in takers]
        if not takers or None in limits:
            return []
        return [limit for limit in limits if limit is not None]

    def can_save_cards(self, provider: str) -> bool:
        return self.can(provider, Capability.SAVED_CARDS)

    async def payment_choices(
        self, user_id: int, total: Money, allowed: Sequence[str] = ()
    ) -> list[PaymentChoice]:
        """Every way this customer may pay this total: each provider that takes it, its saved
        cards first."""
        choices: list[PaymentChoice] = []
        for provider in self.providers_for(total.currency, allowed):
            try:
                provider.amount_format.check(total)
            except AmountNotRepresentable:
                continue
            if Capability.SAVED_CARDS in provider.capabilities:
                for card in await self.storage.saved_cards(user_id, provider.name):
                    choices.append(PaymentChoice(provider.name, provider.display_name, card))
            choices.append(PaymentChoice(provider.name, provider.display_name))
        return choices

    async def place_order(
        self,
        *,
        user_id: int,
        chat_id: int,
        lines: Sequence[CartLine],
        provider_name: str,
        locale: str = "en",
        saved_card: int | None = None,
        buyer: Buyer | None = None,
        delivery: Delivery | None = None,
    ) -> Order:
        """Create the order and open the provider's checkout; the order then awaits payment.

        Refused before anything is stored when the cart is empty, mixes currencies, needs
        delivery and has no valid details, the provider cannot take the amount, or the saved
        card is not the customer's. `delivery` is kept only when a product needs it.
        """
        if not lines:
            raise CheckoutError("empty_cart")
        delivery = self._delivery_for(lines, delivery)
        currencies = {line.unit_price.currency for line in lines}
        if len(currencies) != 1:
            raise CheckoutError("mixed_currencies")
        try:
            provider = self.providers.get(provider_name)
        except UnknownProvider:
            raise CheckoutError("unknown_provider", provider_name) from None
        total = sum(
            (line.unit_price * line.quantity for line in lines[1:]),
            lines[0].unit_price * lines[0].quantity,
        )
        try:
            provider.amount_format.check(total)
        except AmountNotRepresentable as exc:
            raise CheckoutError("amount_not_accepted", str(exc)) from None
        card_id = None
        if saved_card is not None:
            cards = {c.id: c for c in await self.storage.saved_cards(user_id, provider.name)}
            if saved_card not in cards:
                raise CheckoutError("card_gone")
            card_id = cards[saved_card].card_id

        items = [
            OrderItem(line.product_id, line.title, line.quantity, line.unit_price.amount)
            for line in lines
        ]
        again = None if card_id else await self._same_order(user_id, provider.name, items)
        if again is not None:
            return again
        description = ", ".join(f"{line.title} x{line.quantity}" for line in lines)[:250]
        order = await self.storage.create_order(
            NewOrder(
                user_id=user_id,
                chat_id=chat_id,
                provider=provider.name,
                total=total,
                token=secrets.token_urlsafe(24),
                items=items,
                locale=locale,
                description=description,
                buyer=buyer or Buyer(),
                delivery=delivery,
            )
        )
        cart = tuple(CheckoutLine(x.sku, x.title, x.quantity, x.unit_price) for x in lines)
        return await self._open_checkout(order, provider, card_id, cart)

    @staticmethod
    def _delivery_for(lines: Sequence[CartLine], delivery: Delivery | None) -> Delivery | None:
        if not any(line.delivery for line in lines):
            return None
        if delivery is None:
            raise CheckoutError("delivery_needed")
        try:
            return details.check(delivery)
        except details.DetailsError as exc:
            raise CheckoutError("delivery_needed", str(exc)) from None

    async def last_delivery(self, user_id: int) -> Delivery | None:
        """The details the customer gave last time, offered again at the next checkout."""
        return await self.storage.last_delivery(user_id)

    async def _same_order(
        self, user_id: int, provider: str, items: Sequence[OrderItem]
    ) -> Order | None:
        """The customer's order of a moment ago for exactly these items, if it still awaits
        payment: a double press (or a retried update) must not open a second order."""
        latest = await self.storage.orders_for_user(user_id, limit=1)
        if not latest:
            return None
        order = latest[0]
        fresh = self.clock() - order.created_at < REUSE_WITHIN
        if fresh and order.state is S.AWAITING_PAYMENT and order.provider == provider:
            return order if list(order.items) == list(items) else None
        return None

    async def _open_checkout(
        self,
        order: Order,
        provider: Provider,
        card_id: str | None,
        cart: tuple[CheckoutLine, ...],
    ) -> Order:
        request = self.checkout_request(order, provider, saved_card_id=card_id, lines=cart)
        try:
            checkout = await provider.create_checkout(request)
        except ProviderError as exc:
            log.warning("checkout for order %s failed: %s", order.id, exc)
            if isinstance(exc, ProviderMisconfigured):
                await self._misconfigured(order, exc)
            await self.storage.transition(
                order.id, S.CREATED, S.FAILED, actor="checkout", detail=str(exc)
            )
            if isinstance(exc, LinesRefused):  # the provider's stock: say which and why
                titles = {line.sku: line.title for line in cart}
                refused = tuple((titles.get(sku, sku), why.value) for sku, why in exc.refused)
                raise CheckoutError("lines_refused", str(exc), refused=refused) from None
            reason = (
                "provider_unavailable"
                if isinstance(exc, ProviderUnavailable)
                else "provider_rejected"
            )
            raise CheckoutError(reason, str(exc)) from None
        return await self.storage.set_checkout(
            order.id,
            pay_url=checkout.pay_url,
            provider_payment_id=checkout.ref.payment_id if checkout.ref else None,
            payment_data=checkout.ref.data if checkout.ref else None,
            expires_at=checkout.expires_at,
            next_check_at=self.clock() + self.schedule.first,
        )

    def in_chat_provider(self, currency: str) -> str | None:
        """The provider paid inside Telegram that takes this currency (Stars: XTR), if any."""
        takers = [p.name for p in self.in_chat() if currency in p.amount_format.currencies]
        return takers[0] if takers else None

    def answers_by_callback(self, order: Order) -> bool:
        """The provider's callback is the only answer (KTWidget): nobody can be asked."""
        return self.can(order.provider, Capability.STATUS_IN_CALLBACK)

    def checked_by_hand(self, order: Order) -> bool:
        """Nothing tells us of the payment, and the customer is not sent back to us (the
        Turkmen ERP's banks): the customer presses "Check payment" (and the sweep asks)."""
        return self.can(order.provider, Capability.STATUS_API) and not any(
            self.can(order.provider, c)
            for c in (Capability.RETURN, Capability.CALLBACKS, Capability.IN_CHAT)
        )

    def pays_in_chat(self, order: Order) -> bool:
        """The order is paid inside Telegram (Stars): its Pay button is an invoice message."""
        return self.can(order.provider, Capability.IN_CHAT)

    async def send_invoice_again(self, user_id: int, order_id: int) -> Order | None:
        """A fresh invoice message for the customer's unpaid in-chat order (the old one may be
        far up the chat): the same order and payload. None when it is not theirs or not
        payable; CheckoutError when the provider cannot send it now."""
        order = await self.order_of(user_id, order_id)
        if order is None or order.state is not S.AWAITING_PAYMENT or not self.pays_in_chat(order):
            return None
        if order.expires_at is not None and self.clock() >= order.expires_at:
            raise CheckoutError("order_closed")  # the pre-checkout would refuse it
        provider = self.providers.get(order.provider)
        try:
            await provider.create_checkout(self.checkout_request(order, provider))
        except ProviderError as exc:
            log.warning("invoice for order %s not sent again: %s", order.id, exc)
            raise CheckoutError("provider_unavailable", str(exc)) from None
        return order

    async def close_stale(self, now: datetime) -> int:
        """Close orders left in CREATED: their checkout never finished (the process died
        between storing the order and the provider's answer, or the adapter raised something
        unexpected). The customer saw no Pay button for them, so nobody is told."""
        closed = 0
        for order in await self.storage.stale_created(now - STALE_CREATED):
            moved = await self.storage.transition(
                order.id, S.CREATED, S.FAILED, actor=SWEEP, detail="checkout did not finish"
            )
            closed += moved is not None
        return closed

    async def receipt(self, order: Order) -> bytes:
        """The provider's receipt document of a paid order (KTWidget's PDF)."""
        provider = self.providers.get(order.provider) if order.provider in self.providers else None
        ref = stored_ref(order)
        if not isinstance(provider, Receipts) or ref is None:
            raise ReceiptError(f"{order.provider} has no receipt for this order", later=False)
        try:
            document = await provider.receipt(ref)
        except ProviderUnavailable as exc:
            raise ReceiptError(str(exc), later=True) from None
        except ProviderError as exc:
            raise ReceiptError(str(exc), later=False) from None
        if len(document) > RECEIPT_LIMIT:
            raise ReceiptError(f"a receipt of {len(document)} bytes", later=False)
        return document

    async def remember_card(self, order_id: int, message_id: int) -> None:
        """The chat message showing the order with its Pay button: edited once it is paid."""
        await self.storage.set_order_message(order_id, message_id)

    async def remember_merchant_card(self, order_id: int, message_id: int) -> None:
        """The merchant chat's paid-order message: edited as the order moves on."""
        await self.storage.set_merchant_message(order_id, message_id)

    async def cancel(self, order_id: int, user_id: int) -> Order | None:
        """The customer gives up on an unpaid order. None when it is not theirs or not payable."""
        order = await self.order_of(user_id, order_id)
        if order is None:
            return None
        return await self.storage.transition(
            order.id, [S.CREATED, S.AWAITING_PAYMENT], S.CANCELLED, actor=f"user:{user_id}"
        )

    # --- what the chat shows ------------------------------------------------------------

    async def orders_of(self, user_id: int, *, limit: int, offset: int = 0) -> list[Order]:
        return await self.storage.orders_for_user(user_id, limit=limit, offset=offset)

    async def order_of(self, user_id: int, order_id: int) -> Order | None:
        """One order of this customer; None when it is not there or not theirs."""
        order = await self.storage.get_order(order_id)
        return order if order is not None and order.user_id == user_id else None

    async def order(self, order_id: int) -> Order | None:
        """Any order, for the staff."""
        return await self.storage.get_order(order_id)

    async def search_orders(
        self, query: OrderQuery, *, days: int | None = None, limit: int, offset: int = 0
    ) -> list[Order]:
        """The staff's lists (/orders, /find), newest first; `days` counts back from now."""
        if days:
            query = replace(query, since=self.clock() - timedelta(days=days))
        return await self.storage.search_orders(query, limit=limit, offset=offset)

    def provider_names(self) -> list[str]:
        """The enabled providers, by the name orders store."""
        return self.providers.names()

    async def audit(self, order_id: int) -> list[AuditEntry]:
        return await self.storage.audit_trail(order_id)

    async def figures(self, days: int) -> Figures:
        return await self.storage.figures(self.clock() - timedelta(days=days))

    async def saved_cards(self, user_id: int) -> list[SavedCard]:
        return await self.storage.saved_cards(user_id)

    async def forget_card(self, user_id: int, saved_card_id: int) -> bool:
        """Delete the customer's own saved card; False when it is not theirs or not there."""
        return await self.storage.forget_card(user_id, saved_card_id)
