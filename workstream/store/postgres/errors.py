"""What a psycopg failure means, and what may be said about it.

Connection and operational failures (unreachable, killed session, timeout, lock timeout,
deadlock, disk full, read-only server) are outages: the store reports them as
`StorageUnavailable` with a client-safe message (no SQL, no host, no password). Anything
else (a value PostgreSQL refuses, a bug) is about a batch's content and propagates as it
is, so the Registry can isolate the command that causes it.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict


def unavailable(exc: BaseException) -> bool:
    """A failure of the database or the connection (not of this batch's content)."""
    if isinstance(exc, psycopg.OperationalError):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state == "25006" or state[:2] in ("08", "53", "57", "58")


def describe(exc: BaseException) -> str:
    """A client-safe description of a database failure (no SQL, no host, no password)."""
    if isinstance(exc, pg_errors.LockNotAvailable):
        return "storage is busy (rows are locked by another node); try again"
    if isinstance(exc, pg_errors.QueryCanceled):
        return "storage is busy (a database operation timed out); try again"
    if isinstance(exc, pg_errors.TransactionRollback):
        return "storage is busy (conflicting concurrent writes); try again"
    if isinstance(exc, pg_errors.DiskFull):
        return "storage is full; nothing was stored"
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return "storage is read-only; nothing was stored"
    return "storage is unavailable (the database cannot be reached); try again"


def connect_reason(exc: BaseException) -> str:
    """Why a connection attempt failed, for the operator (start-up, `workstream migrate`)."""
    text = str(exc).lower()
    for needle, reason in (
        ("password", "authentication failed"),
        ("authentication", "authentication failed"),
        ("does not exist", "the database or role does not exist"),
        ("refused", "connection refused"),
        ("timeout", "connection timed out"),
        ("timed out", "connection timed out"),
        ("could not translate host name", "unknown host"),
        ("starting up", "the server is starting up"),
        ("shutting down", "the server is shutting down"),
        ("too many", "too many connections"),
        ("ssl", "SSL negotiation failed"),
    ):
        if needle in text:
            return reason
    return "cannot connect"


_BAD_OPTION = re.compile(r"invalid [\w ]*(?:value|parameter)[^\n]*")


def bad_option(exc: BaseException) -> str | None:
    """libpq's complaint about a connection option in the URL (a bad port, sslmode or
    query parameter), or None when the failure is not about the URL's options."""
    found = _BAD_OPTION.search(str(exc))
    return found.group(0).strip() if found else None


def describe_url(url: str) -> str:
    """`postgresql://user@host:port/dbname`, without the password (for messages)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(invalid URL)"
    user = str(params.get("user") or "")
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or user or ""
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{dbname}"
