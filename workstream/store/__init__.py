"""Storage behind one protocol (`base.Store`): SQLite by default, PostgreSQL for several
nodes on one database, an in-memory fake for tests."""

from __future__ import annotations

from pathlib import Path

from workstream.errors import ConfigError
from workstream.store.base import Counts, Store, Transaction

__all__ = ["Counts", "Store", "Transaction", "sqlite_path", "store_from_url"]


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/path` (relative to the working directory) or
    `sqlite:////absolute/path` to a filesystem path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(
            "DATABASE_URL: not a SQLite URL "
            "(use sqlite:///relative/path or sqlite:////absolute/path)"
        )
    rest = url[len(prefix) :]
    if "?" in rest or "#" in rest:
        # The URL is not echoed: what follows `?` may be a password meant for another store.
        shown = prefix + rest.partition("?")[0].partition("#")[0]
        raise ConfigError(f"DATABASE_URL: {shown!r}: query strings are not supported")
    return Path(rest)


def store_from_url(url: str, *, busy_timeout: float = 5.0) -> Store:
    """The store a DATABASE_URL names."""
    if url.startswith("sqlite:"):
        from workstream.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url), busy_timeout=busy_timeout)
    if url.startswith(("postgresql://", "postgres://")):
        from workstream.store.postgres import PostgresStore

        return PostgresStore(url)
    scheme = url.partition(":")[0] if ":" in url else "(none)"  # never the whole URL: a password
    raise ConfigError(
        f"DATABASE_URL: scheme {scheme!r} is not supported (use sqlite:///path or postgresql://...)"
    )
