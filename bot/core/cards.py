"""Saved cards: the customer adds a card on the provider's page (after a paid order), we keep
only the masked name and the provider's card id, and offer it at the next checkout.

The card page returns to `/cards/{provider}/{token}`; the token is signed, so it names the user
without any state on our side and cannot be forged.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from bot.core.outbox import OutboxKind, message
from providers.base import Capability, ProviderError, SavedCards
from providers.registry import Registry, UnknownProvider
from storage.base import SavedCard, Storage

TOKEN_LIFETIME = 3600  # the provider's card session lives 60 minutes


class CardError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CardService:
    def __init__(
        self, storage: Storage, providers: Registry, *, public_url: str, secret: str
    ) -> None:
        self.storage = storage
        self.providers = providers
        self.public_url = public_url.rstrip("/")
        self._secret = secret.encode()

    def _wallet(self, provider_name: str) -> SavedCards:
        try:
            provider = self.providers.get(provider_name)
        except UnknownProvider:
            raise CardError("no_wallet") from None
        if Capability.SAVED_CARDS not in provider.capabilities or not isinstance(
            provider, SavedCards
        ):
            raise CardError("no_wallet")
        return provider

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]

    def token(self, user_id: int, now: float | None = None) -> str:
        expires = int((now or time.time()) + TOKEN_LIFETIME)
        payload = f"{user_id}-{expires}"
        return f"{payload}-{self._sign(payload)}"

    def user_of(self, token: str, now: float | None = None) -> int | None:
        user, _, rest = token.partition("-")
        expires, _, signature = rest.partition("-")
        if not (user.isdigit() and expires.isdigit()):
            return None
        if not hmac.compare_digest(signature, self._sign(f"{user}-{expires}")):
            return None
        if int(expires) < (now or time.time()):
            return None
        return int(user)

    async def open_session(self, provider_name: str, user_id: int) -> str:
        """The URL of the provider's page where the customer adds a card."""
        wallet = self._wallet(provider_name)
        return_url = f"{self.public_url}/cards/{provider_name}/{self.token(user_id)}"
        try:
            checkout = await wallet.open_card_session(
                f"tg{user_id}", ip="127.0.0.1", return_url=return_url
            )
        except ProviderError:
            raise CardError("provider_unavailable") from None
        return checkout.pay_url

    async def card_page_returned(
        self, provider_name: str, token: str, result: str
    ) -> list[SavedCard] | None:
        """The customer is back from the card page. None for a forged or stale token."""
        user_id = self.user_of(token)
        if user_id is None:
            return None
        if result.lower() != "true":
            await self.storage.enqueue(None, message(OutboxKind.CARD_FAILED, user_id))
            return []
        wallet = self._wallet(provider_name)
        try:
            cards = await wallet.list_cards(f"tg{user_id}")
        except ProviderError:
            raise CardError("provider_unavailable") from None
        known = {c.card_id for c in await self.storage.saved_cards(user_id, provider_name)}
        saved = []
        for card in cards:
            stored = await self.storage.save_card(
                user_id, provider_name, card.card_id, card.card_name
            )
            if card.card_id not in known:
                saved.append(stored)
        for card in saved:
            await self.storage.enqueue(
                None, message(OutboxKind.CARD_SAVED, user_id, {"card": card.card_name})
            )
        return saved

    async def forget(self, user_id: int, saved_card_id: int) -> bool:
        return await self.storage.forget_card(user_id, saved_card_id)
