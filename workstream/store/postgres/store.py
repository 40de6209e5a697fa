"""`PostgresStore`: the connections of one node, and what it does with each.

- **One writer connection**, used only inside `transaction()` (the Registry's thread; a
  lock keeps other callers out). A group commit is a handful of statements on one
  connection: no pool checkout per batch, its prepared statements stay warm, and readers
  can never starve it of a connection (nor it them). If it breaks, the failing batch gets
  `StorageUnavailable` and the next `transaction()` connects anew; a connection found dead
  by a transaction's first round trip (`BEGIN` and its first statement), before anything
  ran, is replaced and that round trip sent again at once.
- **A bounded pool for reads** (autocommit): `get`, `list`, `counts` and `ping` come from
  any thread and never queue behind the writer.
- **One listening connection** (listener.py) for `watch()`.

Every call is also bounded on the client side (store/watchdog.py): a frozen server cannot
hold a caller.
"""

from __future__ import annotations

import builtins
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from workstream.errors import ConfigError, StorageUnavailable
from workstream.jobs.attempts import Attempt
from workstream.jobs.listing import FailureGroup, JobFilter, JobPage
from workstream.jobs.model import Job
from workstream.store.base import Counts
from workstream.store.postgres import connections
from workstream.store.postgres.codec import dec, enc, row_to_attempt, row_to_job
from workstream.store.postgres.connections import Connection
from workstream.store.postgres.errors import (
    bad_option,
    connect_reason,
    describe,
    describe_url,
    unavailable,
)
from workstream.store.postgres.listener import Listener
from workstream.store.postgres.migrator import migrate
from workstream.store.postgres.queries import SQL
from workstream.store.postgres.transaction import PostgresTransaction
from workstream.store.sql import like_pattern, listing_filters, prefix_range
from workstream.store.watchdog import Watchdog, shut_down

log = logging.getLogger(__package__)  # the package's logger: its name is in every log line

_NO_BUDGET = 2**62  # list() without max_bytes


def _selection(query: JobFilter) -> tuple[list[str], list[Any]]:
    """The filters of `query` and their parameters. The planner picks the index (it
    knows from statistics whether, say, an error text is rare or frequent)."""
    parts, params = listing_filters(query, SQL, enc)
    if query.id_prefix is not None:
        parts.append(SQL["list_id_prefix"])
        params += list(prefix_range(query.id_prefix))
    if query.error is not None:
        parts.append(SQL["list_error"])
        params.append(enc(like_pattern(query.error)))
    return parts, params


class PostgresStore:
    exclusive = False  # several nodes share the database (see base.Store.exclusive)

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 3.0,
        statement_timeout: float = 5.0,
        lock_timeout: float = 3.0,
        idle_in_transaction_timeout: float = 10.0,
        pool_size: int = 8,
        pool_timeout: float = 3.0,
        migrate_timeout: float = 60.0,
        listen_backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        try:
            conninfo_to_dict(url)
        except psycopg.Error:
            raise ConfigError(
                f"DATABASE_URL: {describe_url(url)} is not a valid PostgreSQL URL"
            ) from None
        self.url = url
        self.where = describe_url(url)
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.lock_timeout = lock_timeout
        self.pool_timeout = pool_timeout
        self.migrate_timeout = migrate_timeout
        self._pool_size = max(1, pool_size)
        self._listen_backoff = listen_backoff
        self._conninfo = connections.conninfo(
            url,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            lock_timeout=lock_timeout,
            idle_in_transaction_timeout=idle_in_transaction_timeout,
        )
        self.token = secrets.token_hex(8)  # this store's NOTIFY payload
        self._notify = SQL["notify"].format(token=self.token)
        self._writer: Connection | None = None
        self._writer_lost = False  # dropped after a failure: log when it is back
        self._write_lock = threading.Lock()
        self._pool: ConnectionPool[Connection] | None = None
        self._opened = False
        self._wake: Callable[[], None] | None = None
        self._listener: Listener | None = None
        # Client-side bounds (see watchdog.py): a frozen server cannot hold a caller.
        self._watchdog = Watchdog()
        self._read_bound = statement_timeout + 2.0
        self._check_bound = connect_timeout + 2.0
        self._batch_bound = 3 * max(statement_timeout, lock_timeout) + 2.0

    # -- life cycle ---------------------------------------------------------------------

    def _connect(self) -> Connection:
        return connections.connect(self._conninfo)

    def open(self) -> None:
        """Connect, migrate, and open the read pool. No exclusive lock: nodes share this."""
        if self._opened:
            return
        try:
            self._writer = self._connect()
        except psycopg.Error as exc:
            option = bad_option(exc)
            if option is not None:  # a setting to fix, not an outage to wait out
                raise ConfigError(f"DATABASE_URL: {self.where}: {option}") from None
            raise StorageUnavailable(
                f"cannot connect to the database {self.where}: {connect_reason(exc)}"
            ) from exc
        try:
            self.migrate()
        except psycopg.Error as exc:
            self._drop_writer()
            reason = describe(exc) if unavailable(exc) else type(exc).__name__
            raise StorageUnavailable(f"cannot migrate the database {self.where}: {reason}") from exc
        except BaseException:
            self._drop_writer()
            raise
        self._pool = connections.reader_pool(
            self._conninfo,
            size=self._pool_size,
            timeout=self.pool_timeout,
            check=self._check_reader,
        )
        self._watchdog.start()
        self._opened = True
        if self._wake is not None:
            self._start_listener()

    def migrate(self) -> list[int]:
        """Apply the migrations this database has not seen (see migrator.py)."""
        conn = self._writer
        if conn is None:
            raise StorageUnavailable("storage is closed")
        return migrate(conn, self.migrate_timeout)

    def close(self) -> None:
        self._opened = False
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop(timeout=5.0)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5.0)
        if not self._write_lock.acquire(timeout=self._batch_bound + 1.0):
            # The Registry's batch is stuck on the writer past its bound: cut it loose.
            log.warning("closing: the writer is stuck; cutting its connection")
            shut_down(self._writer)
            if not self._write_lock.acquire(timeout=5.0):
                log.error("closing: the writer did not let go", extra={"event": "storage_error"})
                self._watchdog.stop()
                return
        try:
            self._drop_writer()
            self._writer_lost = False
        finally:
            self._write_lock.release()
        self._watchdog.stop()

    def _check_reader(self, conn: Connection) -> None:
        """The pool's check of a connection it hands out, under the watchdog."""
        with self._watchdog.limit(lambda: conn, self._check_bound):
            ConnectionPool.check_connection(conn)

    def _drop_writer(self, lost: bool = False) -> None:
        self._writer_lost = self._writer_lost or lost
        conn, self._writer = self._writer, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()

    # -- writes -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        with self._write_lock, self._watchdog.limit(lambda: self._writer, self._batch_bound):
            conn, reused = self._begin()
            tx = PostgresTransaction(conn, self._replace_writer if reused else None)
            try:
                yield tx
                tx.commit(self._notify if tx.notify else None)
            except BaseException as exc:
                if tx.begun:
                    self._rollback(tx.connection)
                if isinstance(exc, psycopg.Error) and unavailable(exc):
                    log.warning("transaction failed: %s", exc, extra={"event": "storage_error"})
                    raise StorageUnavailable(describe(exc)) from exc
                if isinstance(exc, StorageUnavailable):
                    log.warning(
                        "transaction failed: %s",
                        exc.__cause__ or exc,
                        extra={"event": "storage_error"},
                    )
                # Anything else (a value PostgreSQL refuses, a bug) is about this batch's
                # content, not the database: it propagates as it is.
                raise

    def _begin(self) -> tuple[Connection, bool]:
        """The writer connection, and whether it is reused (it may have died while idle).
        BEGIN itself goes with the transaction's first statement (one round trip)."""
        if not self._opened:
            raise StorageUnavailable("storage is closed")
        if self._writer is not None:
            return self._writer, True
        try:
            return self._connect_writer(), False
        except StorageUnavailable as exc:
            log.warning("begin failed: %s", exc.__cause__, extra={"event": "storage_error"})
            raise

    def _connect_writer(self) -> Connection:
        try:
            self._writer = self._connect()
        except psycopg.Error as exc:
            self._drop_writer(lost=True)
            raise StorageUnavailable(describe(exc)) from exc
        if self._writer_lost:
            self._writer_lost = False
            log.warning(
                "database connection re-established", extra={"event": "storage_reconnected"}
            )
        return self._writer

    def _replace_writer(self) -> Connection:
        """An idle writer found dead by a transaction's first round trip (server restart,
        killed session): nothing of the transaction has run, so it goes on with a new one."""
        self._drop_writer(lost=True)
        return self._connect_writer()

    def _rollback(self, conn: Connection) -> None:
        if conn.closed or conn.broken:
            self._drop_writer(lost=True)
            return
        try:
            conn.execute(SQL["rollback"])
        except psycopg.Error:
            log.warning("rollback failed", extra={"event": "storage_error"})
            self._drop_writer(lost=True)

    # -- reads (any thread) -------------------------------------------------------------

    def _read(
        self, sql: str, params: tuple[Any, ...] | list[Any], *, prepare: bool | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows of one statement from the read pool. `prepare=False` for a statement whose
        best plan depends on its parameters (listing filters): planned for each call."""
        pool = self._pool
        if pool is None or not self._opened:
            raise StorageUnavailable("storage is closed")
        try:
            with pool.connection() as conn, self._watchdog.limit(lambda: conn, self._read_bound):
                return conn.execute(sql, params, prepare=prepare).fetchall()
        except psycopg.Error as exc:
            if not unavailable(exc):
                raise
            log.warning("read failed: %s", exc, extra={"event": "storage_error"})
            raise StorageUnavailable(describe(exc)) from exc

    def get(self, job_id: str) -> Job | None:
        rows = self._read(SQL["get"], (enc(job_id),))
        return row_to_job(rows[0]) if rows else None

    def listing_statement(self, query: JobFilter) -> tuple[str, tuple[Any, ...]]:
        """The statement `list` sends for `query`, and its parameters (for the planner
        checks in the tests and the benchmark)."""
        parts, params = _selection(query)
        sql = SQL["list_page"].format(
            filters=" AND ".join(parts) or SQL["list_all"],
            order=SQL["newest" if query.newest_first else "oldest"],
        )
        budget = _NO_BUDGET if query.max_bytes is None else query.max_bytes
        return sql, (*params, query.limit + 1, query.limit, budget)

    def list(self, query: JobFilter) -> JobPage:
        sql, params = self.listing_statement(query)
        rows = self._read(sql, params, prepare=False)
        if not rows:
            return JobPage([], None)
        more = rows[0][0] > 0
        jobs = [row_to_job(row[2:]) for row in rows]
        return JobPage(jobs, (jobs[-1].created_at, rows[-1][1]) if more else None)

    def count(self, query: JobFilter, cap: int) -> int:
        parts, params = _selection(replace(query, after=None))
        sql = SQL["count_matching"].format(filters=" AND ".join(parts) or SQL["list_all"])
        return int(self._read(sql, (*params, cap), prepare=False)[0][0])

    def failure_groups(self, limit: int) -> builtins.list[FailureGroup]:
        rows = self._read(SQL["failure_groups"], (limit,))
        return [FailureGroup(dec(t), dec(c), n, latest) for t, c, n, latest in rows]

    def finished_per_minute(self, since: float) -> builtins.list[tuple[float, str, int]]:
        return [(float(m), status, n) for m, status, n in self._read(SQL["throughput"], (since,))]

    def attempts(self, job_id: str) -> builtins.list[Attempt]:
        return [row_to_attempt(row) for row in self._read(SQL["attempts_of_job"], (enc(job_id),))]

    def counts(self, now: float) -> Counts:
        rows = self._read(SQL["counts"], (now,))
        return Counts(
            ready=sum(ready for _, _, ready in rows),
            by_status={status: count for status, count, _ in rows},
        )

    def ping(self) -> None:
        self._read(SQL["ping"], ())

    # -- wake-ups from other nodes -------------------------------------------------------

    def watch(self, wake: Callable[[], None]) -> None:
        """LISTEN for other nodes' new work on a connection of its own (listener.py)."""
        self._wake = wake
        if self._opened:
            self._start_listener()

    def _start_listener(self) -> None:
        if self._listener is not None:
            return
        self._listener = Listener(self._connect, self.token, self._wake_up, self._listen_backoff)
        self._listener.start()

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None:
            wake()
