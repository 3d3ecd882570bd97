"""Which language a user gets: their /language choice, else Telegram's `language_code`, else
the default. gettext catalogs are compiled from the .po files when they load, so there are no
stale .mo files to commit."""

from __future__ import annotations

import gettext
import io
from pathlib import Path
from typing import Any

from aiogram.types import Chat, TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.config import LOCALES
from storage.base import Storage

LOCALES_DIR = Path(__file__).parent / "locales"
SUPPORTED = LOCALES


class PoI18n(I18n):
    """aiogram's I18n reading `<locale>/LC_MESSAGES/<domain>.po` directly."""

    def find_locales(self) -> dict[str, gettext.GNUTranslations]:
        found: dict[str, gettext.GNUTranslations] = {}
        if not self.path.is_dir():
            return found
        for po_path in sorted(self.path.glob(f"*/LC_MESSAGES/{self.domain}.po")):
            locale = po_path.parent.parent.name
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file, locale=locale)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            buffer.seek(0)
            found[locale] = gettext.GNUTranslations(buffer)
        return found


# aiogram's gettext helpers look the instance up through I18n's own context variable; a subclass
# would get a variable of its own, so share I18n's.
PoI18n._ContextInstanceMixin__context_instance = I18n._ContextInstanceMixin__context_instance  # type: ignore[attr-defined]


def build_i18n(default_locale: str = "en", path: Path = LOCALES_DIR) -> PoI18n:
    return PoI18n(path=path, default_locale=default_locale, domain="messages")


def pick_locale(language_code: str | None, default: str) -> str:
    """Telegram's 'ru-RU' or 'kk' -> a locale we have; anything else -> the default."""
    code = (language_code or "").split("-")[0].split("_")[0].lower()
    return code if code in SUPPORTED else default


class LocaleMiddleware(I18nMiddleware):
    """Looks up a user's saved choice once, then keeps it in memory. The merchant's chat is
    answered in its own language (MERCHANT_LOCALE), whoever writes there."""

    def __init__(
        self,
        i18n: I18n,
        storage: Storage,
        merchant_chat: tuple[int, str] | None = None,
    ) -> None:
        super().__init__(i18n=i18n, middleware_key="locale_middleware")
        self.storage = storage
        self.merchant_chat = merchant_chat
        self._chosen: dict[int, str | None] = {}

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        chat: Chat | None = data.get("event_chat")
        if self.merchant_chat and chat is not None and chat.id == self.merchant_chat[0]:
            return self.merchant_chat[1]
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.i18n.default_locale
        if user.id not in self._chosen:
            if len(self._chosen) > 50_000:
                self._chosen.clear()
            self._chosen[user.id] = await self.storage.get_user_locale(user.id)
        chosen = self._chosen[user.id]
        return chosen or pick_locale(user.language_code, self.i18n.default_locale)

    async def set_locale(self, user_id: int, locale: str) -> None:
        await self.storage.set_user_locale(user_id, locale)
        self._chosen[user_id] = locale
