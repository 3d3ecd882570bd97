"""The providers a merchant has enabled, looked up by name or by the currency they take."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from providers.base import Provider


class UnknownProvider(KeyError):
    """A name that no enabled provider has (a stale button, a forged callback path)."""


class Registry:
    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        self._by_name: dict[str, Provider] = {}
        for provider in providers:
            self.add(provider)

    def add(self, provider: Provider) -> None:
        if provider.name in self._by_name:
            raise ValueError(f"provider {provider.name!r} is registered twice")
        self._by_name[provider.name] = provider

    def get(self, name: str) -> Provider:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownProvider(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def names(self) -> list[str]:
        return list(self._by_name)

    def for_currency(self, currency: str) -> list[Provider]:
        """Enabled providers that take this currency, in registration order."""
        return [p for p in self if currency in p.amount_format.currencies]
