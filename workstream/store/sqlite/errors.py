"""What may be said about a sqlite3 failure: a client-safe description (no SQL, no paths)."""

from __future__ import annotations

import sqlite3


def describe(exc: sqlite3.Error) -> str:
    """A client-safe description of a database failure (no SQL, no paths)."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "storage is busy (the database is locked by another process); try again"
    if "full" in text:
        return "storage is full; nothing was stored"
    if "readonly" in text or "read-only" in text:
        return "storage is read-only; nothing was stored"
    return "storage failed; nothing was stored"
