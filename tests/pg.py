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
import re
import secrets
import time
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

# A test may restart the server: a server that says it is starting or stopping is waited
# for up to RESTART_GRACE seconds, one that refuses connections up to REFUSED_GRACE (the
# moment between stop and start), and then the test fails saying the server is not there.
RESTART_GRACE = 30.0
REFUSED_GRACE = 5.0
_RESTARTING = ("starting up", "shutting down", "in recovery")
_OURS = re.compile(r"^ws_[a-z_]+_(\d+)_[0-9a-f]{8}$")


def admin_connect(url: str = ADMIN_URL) -> psycopg.Connection[Any]:
    """An autocommit connection, or a test failure that says the server is not there."""
    started = time.monotonic()
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as exc:
            text = str(exc).lower()
            grace = RESTART_GRACE if any(w in text for w in _RESTARTING) else REFUSED_GRACE
            if time.monotonic() - started < grace:
                time.sleep(0.2)  # polling a server that is coming back: no event to wait on
                continue
            pytest.fail(
                f"PostgreSQL is not reachable at {_safe(url)} ({exc}). The PostgreSQL tests "
                "need the machine's server: start it (.ci/run does: pg_ctlcluster <version> "
                "main start) or point WORKSTREAM_TEST_PG at one.",
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
            attempts = self.execute("SELECT to_regclass('public.job_attempts') IS NOT NULL")[0][0]
            tables = "jobs, job_attempts" if attempts else "jobs"
            self.execute(f"TRUNCATE {tables} RESTART IDENTITY")

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
        _drop_stale(admin)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return ScratchDatabase(name=name, url=database_url(name))


def _drop_stale(admin: psycopg.Connection[Any]) -> None:
    """Drop the scratch databases of test processes that died before dropping theirs
    (their names carry the pid of a process that no longer exists)."""
    rows = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'ws\\_%'")
    for (name,) in rows.fetchall():
        match = _OURS.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
