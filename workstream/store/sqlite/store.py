"""`SqliteStore`: one process owns the database file.

Durability settings are deliberate: WAL, `synchronous=FULL` (a commit survives power loss),
every write transaction under `BEGIN IMMEDIATE` with a busy timeout, and one writer
connection owned by the Registry's thread. Readers get a connection per thread, so listing
and detail reads run beside the writer. An exclusive `flock` on `<database>.lock` keeps a
second server off the same file; the kernel drops it if the process dies.

Payloads may carry downstream credentials, so nothing here is for other local users: a
directory the store creates is 0700, and the database, its `-wal`/`-shm` and the lock file
are 0600 (tightened at every open if they were made wider). The lock file is opened with
`O_NOFOLLOW`: a symlink planted there is refused, never followed and truncated.
"""

from __future__ import annotations

import builtins
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from workstream.errors import DatabaseInUse, StorageUnavailable
from workstream.jobs.attempts import Attempt
from workstream.jobs.listing import FailureGroup, JobFilter, JobPage
from workstream.jobs.model import Job
from workstream.store.base import Counts
from workstream.store.sql import like_pattern, listing_filters, prefix_range
from workstream.store.sqlite.codec import row_to_attempt, row_to_job
from workstream.store.sqlite.errors import describe
from workstream.store.sqlite.migrator import migrate
from workstream.store.sqlite.queries import SQL
from workstream.store.sqlite.transaction import SqliteTransaction

log = logging.getLogger(__package__)  # the package's logger: its name is in every log line

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_SIDE_FILES = ("-wal", "-shm")  # SQLite's own: created with the database file's mode


# The id prefix and error filters use their own index when it finds at most this many
# jobs (then sorted), and walk the listing order otherwise (matches are then frequent).
FEW = 5000


class SqliteStore:
    exclusive = True  # one process at a time (see base.Store.exclusive)

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._lock_file: Any = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # -- life cycle -------------------------------------------------------------------

    def open(self) -> None:
        try:
            _make_private_dirs(self.path.parent)
        except OSError as exc:
            raise StorageUnavailable(
                f"cannot create the database directory {self.path.parent}: {exc.strerror}"
            ) from exc
        self._take_lock()
        try:
            self._make_private_files()
            self._writer = self._connect()
            self._writer.execute(SQL["journal_mode_wal"])
            self.migrate()
        except sqlite3.Error as exc:
            self.close()
            raise StorageUnavailable(f"cannot open the database: {describe(exc)}") from exc
        except BaseException:
            self.close()
            raise

    def _take_lock(self) -> None:
        # The real file's name: two paths to one file (a symlink) must meet at one lock.
        lock_path = Path(os.path.realpath(self.path) + ".lock")
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(lock_path, flags, PRIVATE_FILE)
        except OSError as exc:
            why = "it is a symbolic link" if os.path.islink(lock_path) else exc.strerror
            raise StorageUnavailable(f"cannot open the lock file {lock_path}: {why}") from exc
        handle = os.fdopen(fd, "r+")  # held for the store's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise DatabaseInUse(
                f"database {self.path} is in use by another WorkStream process "
                f"(pid {holder}); stop it, or give this one another DATABASE_URL"
            ) from None
        except BaseException:
            handle.close()
            raise
        _tighten(fd, lock_path)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def _make_private_files(self) -> None:
        """The database file made (or tightened) 0600 before SQLite opens it: SQLite gives
        its `-wal` and `-shm` the database file's mode when it creates them; existing ones
        are tightened here. Called with the lock held: no other store uses these files."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        except OSError as exc:
            raise StorageUnavailable(f"cannot open the database: {exc.strerror}") from exc
        try:
            _tighten(fd, self.path)
        finally:
            os.close(fd)
        for suffix in _SIDE_FILES:
            side = os.path.realpath(self.path) + suffix
            try:
                fd = os.open(side, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue  # none yet (SQLite creates it 0600), or not a file to touch
            try:
                _tighten(fd, Path(side))
            finally:
                os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(SQL["busy_timeout"].format(milliseconds=int(self.busy_timeout * 1000)))
        conn.execute(SQL["synchronous_full"])
        return conn

    def migrate(self) -> list[int]:
        """Apply the migrations this database has not seen (see migrator.py)."""
        assert self._writer is not None
        return migrate(self._writer)

    def watch(self, wake: Callable[[], None]) -> None:
        """No other process shares this store: nothing to watch."""

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        if self._writer is not None:
            with self._write_lock:
                self._writer.close()
                self._writer = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    # -- writes -----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StorageUnavailable("storage is closed")
            try:
                conn.execute(SQL["begin_immediate"])
            except sqlite3.Error as exc:
                log.warning("begin failed: %s", exc, extra={"event": "storage_error"})
                raise StorageUnavailable(describe(exc)) from exc
            try:
                yield SqliteTransaction(conn)
                conn.execute(SQL["commit"])
            except sqlite3.OperationalError as exc:
                # Locked, busy, full, read-only, I/O: the database cannot write *now*.
                self._rollback(conn)
                log.warning("transaction failed: %s", exc, extra={"event": "storage_error"})
                raise StorageUnavailable(describe(exc)) from exc
            except BaseException:
                # Anything else (a value SQLite refuses, a bug) is about this batch's
                # content, not the database: it propagates as it is.
                self._rollback(conn)
                raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute(SQL["rollback"])
            except sqlite3.Error:
                log.exception("rollback failed", extra={"event": "storage_error"})

    # -- reads (any thread) -------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._writer is None:
                raise StorageUnavailable("storage is closed")
            conn = self._connect()
            conn.execute(SQL["query_only"])
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            log.warning("read failed: %s", exc, extra={"event": "storage_error"})
            raise StorageUnavailable(describe(exc)) from exc

    def get(self, job_id: str) -> Job | None:
        rows = self._read(SQL["get"], (job_id,))
        return row_to_job(rows[0]) if rows else None

    def listing_statement(self, query: JobFilter) -> tuple[str, tuple[Any, ...]]:
        """The statement `list` sends for `query`, and its parameters (for the planner
        checks in the tests and the benchmark)."""
        source, parts, params = self._selection(query)
        sql = SQL["list_page"].format(
            source=source,
            filters=" AND ".join(parts) or SQL["list_all"],
            order=SQL["newest" if query.newest_first else "oldest"],
        )
        return sql, (*params, query.limit + 1)

    def list(self, query: JobFilter) -> JobPage:
        limit, max_bytes = query.limit, query.max_bytes
        sql, params = self.listing_statement(query)
        try:
            cursor = self._reader().execute(sql, params)
            page: builtins.list[tuple[Any, ...]] = []
            size = 0
            more = False
            for row in cursor:
                size += len(row[3]) + len(row[9] or "")  # payload and result JSON
                if len(page) == limit or (page and max_bytes is not None and size > max_bytes):
                    more = True
                    break
                page.append(row)
            cursor.close()
        except sqlite3.Error as exc:
            log.warning("read failed: %s", exc, extra={"event": "storage_error"})
            raise StorageUnavailable(describe(exc)) from exc
        jobs = [row_to_job(row[1:]) for row in page]
        next_after = (jobs[-1].created_at, page[-1][0]) if more else None
        return JobPage(jobs, next_after)

    def _selection(self, query: JobFilter) -> tuple[str, builtins.list[str], builtins.list[Any]]:
        """(source, filters, parameters) of the jobs `query` selects. The id prefix and the
        error text each pick their way by a capped count first: through their own index
        when it holds few jobs, else along the listing order, checking each row."""
        parts, params = listing_filters(query, SQL)
        source = SQL["list_source_jobs"]
        if query.id_prefix is not None:
            low, high = prefix_range(query.id_prefix)
            few = self._read(SQL["id_prefix_hits"], (low, high, FEW + 1))[0][0] <= FEW
            parts.append(SQL["list_id_prefix" if few else "list_id_prefix_scan"])
            params += [low, high]
        if query.error is not None:
            match = '"' + query.error.replace('"', '""') + '"'
            if self._read(SQL["error_hits"], (match, FEW + 1))[0][0] <= FEW:
                source = SQL["list_source_error_hits"]
                params.insert(0, match)  # the source's parameter comes first
            else:
                parts.append(SQL["list_error_like"])
                params.append(like_pattern(query.error))
        return source, parts, params

    def count(self, query: JobFilter, cap: int) -> int:
        source, parts, params = self._selection(replace(query, after=None))
        sql = SQL["count_matching"].format(
            source=source, filters=" AND ".join(parts) or SQL["list_all"]
        )
        return int(self._read(sql, (*params, cap))[0][0])

    def failure_groups(self, limit: int) -> builtins.list[FailureGroup]:
        rows = self._read(SQL["failure_groups"], (limit,))
        return [FailureGroup(*row) for row in rows]

    def finished_per_minute(self, since: float) -> builtins.list[tuple[float, str, int]]:
        return [(float(m), status, n) for m, status, n in self._read(SQL["throughput"], (since,))]

    def attempts(self, job_id: str) -> builtins.list[Attempt]:
        return [row_to_attempt(row) for row in self._read(SQL["attempts_of_job"], (job_id,))]

    def counts(self, now: float) -> Counts:
        by_status = dict(self._read(SQL["count_by_status"], ()))
        ready = self._read(SQL["count_due"], (now,))[0][0]
        return Counts(ready=ready, by_status=by_status)

    def ping(self) -> None:
        self._read(SQL["ping"], ())


def _tighten(fd: int, path: Path) -> None:
    """Make an open file 0600. A file this user does not own cannot be changed: say so and
    go on (its mode is its owner's choice)."""
    try:
        if os.fstat(fd).st_mode & 0o777 != PRIVATE_FILE:
            os.fchmod(fd, PRIVATE_FILE)
    except OSError as exc:
        log.warning(
            "cannot make %s private (0600): %s",
            path,
            exc.strerror,
            extra={"event": "file_mode_unchanged"},
        )


def _make_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents, each 0700 (existing ones are the
    operator's: left as they are)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(mode=PRIVATE_DIR, exist_ok=True)
