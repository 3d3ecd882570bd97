"""Storage: the protocol and records in `storage.base`; SQLite or PostgreSQL behind it."""

from __future__ import annotations

from urllib.parse import urlsplit

from storage.base import Storage
from storage.errors import StorageUnavailable

__all__ = ["Storage", "StorageUnavailable", "storage_from_url"]


def storage_from_url(url: str) -> Storage:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, `sqlite:///:memory:` or
    `postgresql://user:password@host:port/database`. Not opened yet."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from storage.sqlite import SQLiteStorage

        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError("DATABASE_URL: write SQLite as sqlite:///path/to/file.db")
        return SQLiteStorage(path)
    if scheme in ("postgresql", "postgres"):
        from storage.postgres import PostgresStorage

        return PostgresStorage(url)
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}" if parts.scheme else "(none)"
    raise ValueError(
        f"DATABASE_URL {shown}: use sqlite:///path/to/file.db or postgresql://host/database"
    )
