"""What every PostgreSQL test needs: the machine's server (127.0.0.1:5432, trust auth, user
postgres; CI starts it), and databases of their own that they create and drop.

    with fresh_database() as url:       # a fresh database, dropped (FORCE) afterwards
        store = PostgresStore(url)
    with scratch_database() as db:      # the same, with helpers:
        store = PostgresStore(db.url)
        ...
        db.reset()                      # empty the jobs table, restart `seq`
        db.terminate()                  # kill the sessions of WorkStream connections

Set WORKSTREAM_TEST_PG to another maintenance-database URL to use another server. When the
server cannot be reached, tests FAIL with a message saying so: they never skip silently.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ADMIN_URL = os.environ.get("WORKSTREAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CONNECT_TIMEOUT = 5


def admin_connect(url: str = ADMIN_URL) -> psycopg.Connection[Any]:
    """An autocommit connection, or a test failure that says the server is not there."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {_safe(url)} ({exc}). The PostgreSQL tests need "
            "the machine's server: start it (.ci/run does: pg_ctlcluster <version> main "
            "start) or point WORKSTREAM_TEST_PG at one.",
            pytrace=False,
        )


def database_url(name: str, base: str = ADMIN_URL) -> str:
    """The URL of database `name` on the server of `base`."""
    params = conninfo_to_dict(base)
    user = params.get("user") or "postgres"
    host = params.get("host") or "127.0.0.1"
    port = params.get("port") or "5432"
    password = params.get("password")
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@{host}:{port}/{name}"


@dataclass
class ScratchDatabase:
    name: str
    url: str
    _conn: psycopg.Connection[Any] | None = field(default=None, repr=False)

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection to this database (the caller closes it)."""
        return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)

    def _helper(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self.connect()
        return self._conn

    def execute(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on a helper connection of the test's own; the rows, if any."""
        cursor = self._helper().execute(query, params)
        return cursor.fetchall() if cursor.description else []

    def reset(self) -> None:
        """Empty the jobs table (if migrated) and restart `seq`: a clean store, kept schema."""
        exists = self.execute("SELECT to_regclass('public.jobs') IS NOT NULL")[0][0]
        if exists:
            self.execute("TRUNCATE jobs RESTART IDENTITY")

    def backends(self, application_name: str = "workstream") -> list[int]:
        """Pids of the sessions on this database with that application name."""
        rows = self.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s "
            "AND pid <> pg_backend_pid()",
            (self.name, application_name),
        )
        return [pid for (pid,) in rows]

    def terminate(self, pids: list[int] | None = None) -> int:
        """`pg_terminate_backend` on these sessions (by default every WorkStream session
        on this database); how many were terminated."""
        targets = self.backends() if pids is None else pids
        killed = 0
        for pid in targets:
            if self.execute("SELECT pg_terminate_backend(%s)", (pid,))[0][0]:
                killed += 1
        return killed

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def create_database(prefix: str = "ws_test") -> ScratchDatabase:
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return ScratchDatabase(name=name, url=database_url(name))


def drop_database(db: ScratchDatabase) -> None:
    db.close()
    with admin_connect() as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name))
        )


@contextmanager
def scratch_database(prefix: str = "ws_test") -> Iterator[ScratchDatabase]:
    """A uniquely named, empty database on the test server, dropped afterwards (its
    sessions are forced out). Use it in a session fixture for one database per run, or
    per test for a fresh one."""
    db = create_database(prefix)
    try:
        yield db
    finally:
        drop_database(db)


@contextmanager
def fresh_database(prefix: str = "ws_test") -> Iterator[str]:
    """`scratch_database` when only its URL is needed."""
    with scratch_database(prefix) as db:
        yield db.url


def _safe(url: str) -> str:
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "(invalid URL)"
    params.pop("password", None)
    return make_conninfo(**params)
