"""Errors of the storage layer that callers handle."""

from __future__ import annotations


class StorageUnavailable(RuntimeError):
    """The database cannot be reached or opened. The message names the file or host, never a
    password."""
