"""Which language a user gets: their /language choice, else Telegram's `language_code`, else
the default. gettext catalogs are compiled from the .po files when they load, so there are no
stale .mo files to commit."""

from __future__ import annotations

import tempfile
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


def build_i18n(default_locale: str = "en", path: Path = LOCALES_DIR) -> I18n:
    """aiogram's own I18n over our .po catalogs: each is compiled to a .mo in a folder that
    lives only while I18n loads them (it keeps the translations in memory)."""
    with tempfile.TemporaryDirectory(prefix="bot-locales-") as compiled:
        for po_path in sorted(path.glob("*/LC_MESSAGES/messages.po")):
            locale = po_path.parent.parent.name
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file, locale=locale)
            target = Path(compiled) / locale / "LC_MESSAGES" / "messages.mo"
            target.parent.mkdir(parents=True)
            with target.open("wb") as mo_file:
                write_mo(mo_file, catalog)
        return I18n(path=compiled, default_locale=default_locale, domain="messages")


def pick_locale(language_code: str | None, default: str) -> str:
    """Telegram's 'ru-RU' or 'kk' -> a locale we have; anything else -> the default."""
    code = (language_code or "").split("-")[0].split("_")[0].lower()
    return code if code in SUPPORTED else default


class LocaleMiddleware(I18nMiddleware):
    """A user's saved choice (read from storage, so every replica sees it), else their
    Telegram language. The merchant's chat is answered in its own language (MERCHANT_LOCALE),
    whoever writes there."""

    def __init__(
        self,
        i18n: I18n,
        storage: Storage,
        merchant_chat: tuple[int, str] | None = None,
    ) -> None:
        super().__init__(i18n=i18n, middleware_key="locale_middleware")
        self.storage = storage
        self.merchant_chat = merchant_chat

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        chat: Chat | None = data.get("event_chat")
        if self.merchant_chat and chat is not None and chat.id == self.merchant_chat[0]:
            return self.merchant_chat[1]
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.i18n.default_locale
        # read every time (one primary-key lookup): a choice made through another replica holds
        chosen = await self.storage.get_user_locale(user.id)
        return chosen or pick_locale(user.language_code, self.i18n.default_locale)

    async def set_locale(self, user_id: int, locale: str) -> None:
        await self.storage.set_user_locale(user_id, locale)
