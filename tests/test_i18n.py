"""The gettext catalogs: complete in every language, placeholders intact, template current;
money formatted by Babel per locale."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.formatting import format_money
from bot.locale import LOCALES_DIR, SUPPORTED, build_i18n, pick_locale
from money import Money

PLACEHOLDER = re.compile(r"\{\w+\}")


def catalog(locale: str):
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=locale)


def template_ids() -> set[str | tuple[str, ...]]:
    with (LOCALES_DIR / "messages.pot").open("rb") as pot:
        return {m.id for m in read_po(pot) if m.id}


def forms(text: str | tuple[str, ...]) -> tuple[str, ...]:
    """A message's id or translation as its forms: one, or each plural form (ngettext)."""
    return (text,) if isinstance(text, str) else tuple(text)


@pytest.mark.parametrize("locale", [code for code in SUPPORTED if code != "en"])
def test_every_catalog_translates_every_string(locale: str) -> None:
    language = catalog(locale)
    messages = {m.id: m for m in language if m.id}
    translated = {i for i, m in messages.items() if all(forms(m.string)) and not m.fuzzy}
    missing = sorted(map(str, template_ids() - translated))
    assert not missing, f"{locale} misses {len(missing)} strings, e.g. {missing[:3]}"
    for message in messages.values():
        wanted = {p for form in forms(message.id) for p in PLACEHOLDER.findall(form)}
        if message.pluralizable:  # every plural form the language has, each with the same fields
            assert len(forms(message.string)) == language.num_plurals, (locale, message.id)
        for form in forms(message.string):
            assert set(PLACEHOLDER.findall(form)) == wanted, (locale, message.id)


def test_plural_forms_follow_the_number() -> None:
    """ngettext entries load with their plural rules: "1 day" but "5 days", three Russian forms."""
    i18n = build_i18n()
    one, many = "Orders of the last {days} day", "Orders of the last {days} days"
    assert i18n.gettext(one, many, 1, locale="en") == one
    assert i18n.gettext(one, many, 7, locale="en") == many
    shown = [i18n.gettext(one, many, n, locale="ru").format(days=n) for n in (1, 3, 5, 21)]
    assert shown == [
        "Заказы за последний 1 день",
        "Заказы за последние 3 дня",
        "Заказы за последние 5 дней",
        "Заказы за последний 21 день",
    ]


def test_the_template_has_every_string_of_the_code(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.pot"
    subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-k",
            "_",
            "--no-location",
            "--omit-header",
            "-o",
            str(fresh),
            "bot",
        ],
        cwd=LOCALES_DIR.parent.parent,
        check=True,
        capture_output=True,
    )
    with fresh.open("rb") as pot:
        in_code = {m.id for m in read_po(pot) if m.id}
    assert in_code == template_ids(), "run `make i18n-extract` and translate the new strings"


def test_catalogs_load_and_untranslated_falls_back_to_english() -> None:
    i18n = build_i18n()
    assert set(i18n.available_locales) == set(SUPPORTED)
    assert i18n.gettext("Pay", locale="ru") == "Оплатить"
    assert i18n.gettext("A string nobody translated", locale="mn") == "A string nobody translated"


@pytest.mark.parametrize(
    ("money", "locale", "shown"),
    [
        (Money(15000, "TRY"), "tr", "₺150,00"),
        (Money(123450, "RUB"), "ru", "1\xa0234,50\xa0₽"),
        (Money(500000, "MNT"), "mn", "₮\xa05,000.00"),
        (Money(99900, "KZT"), "kk", "999,00\xa0₸"),
        (Money(1050, "TMT"), "tk", "10,50\xa0TMT"),
        (Money(50, "XTR"), "en", "50 ⭐"),
        (Money(15000, "TRY"), "en", "₺150.00"),  # the currency's own sign in every language
        (Money(15000, "TRY"), "ru", "150,00\xa0₺"),
        (Money(45000, "RUB"), "tk", "450,00\xa0₽"),
        (Money(1050, "TMT"), "en", "TMT10.50"),
    ],
)
def test_money_is_formatted_per_locale(money: Money, locale: str, shown: str) -> None:
    assert format_money(money, locale) == shown


@pytest.mark.parametrize(
    ("code", "picked"), [("ru-RU", "ru"), ("kk", "kk"), ("TK", "tk"), ("de", "en"), (None, "en")]
)
def test_telegram_language_codes_map_to_our_locales(code: str | None, picked: str) -> None:
    assert pick_locale(code, "en") == picked


def test_every_alert_fits_in_a_callback_answer_in_every_language() -> None:
    """answerCallbackQuery takes at most 200 characters; our alerts are one-liners."""
    for locale in SUPPORTED:
        for message in catalog(locale):
            text = message.string or message.id
            if message.id and "\n" not in message.id and len(text) > 200:
                pytest.fail(f"{locale}: {message.id!r} is {len(text)} characters")


def test_a_reason_with_parentheses_is_read_in_the_readers_language() -> None:
    """The core's "(from review)" was read as a regex group and never matched: English."""
    from bot import audit_texts

    i18n = build_i18n()
    with i18n.context(), i18n.use_locale("ru"):
        said = audit_texts.reason("refund 150.00 TRY (from review)")
    assert said.replace("\xa0", " ") == "возврат 150,00 ₺, из проверки"  # Babel's no-break space
