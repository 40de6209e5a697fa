"""SQLite storage: the embedded default.

Durability settings are deliberate: WAL, `synchronous=FULL` (a commit survives power loss),
every write transaction under `BEGIN IMMEDIATE` with a busy timeout, and one writer
connection owned by the Registry's thread. Readers get a connection per thread, so listing
and detail reads run beside the writer. An exclusive `flock` on `<database>.lock` keeps a
second server off the same file; the kernel drops it if the process dies.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workstream.errors import Conflict, DatabaseInUse, StorageUnavailable
from workstream.jobs.listing import JobFilter, JobPage
from workstream.jobs.model import Job, JobStatus
from workstream.store.base import Counts, chunked
from workstream.store.schema import load_migrations, split_sql
from workstream.units import valid_text

log = logging.getLogger(__name__)

__all__ = ["SqliteStore", "SqliteTransaction", "load_migrations"]

COLUMNS = (
    "id, type, payload, status, attempts, retry_base, max_retries, last_error, result, "
    "created_at, updated_at, started_at, finished_at, run_at, owner, lease_expires_at, "
    "idempotency_key, request_hash"
)
_SELECT = f"SELECT {COLUMNS} FROM jobs"
_STATUS = {status.value: status for status in JobStatus}
_MAX_PARAMS = 500


def _dumps(value: Any) -> str:
    # ASCII escapes keep any Python string exactly, lone surrogates included, and are
    # the C encoder's fast path.
    return json.dumps(value, separators=(",", ":"))


def _text(value: str | None) -> str | None:
    """Text columns take valid Unicode only."""
    return None if value is None else valid_text(value)


def _row_to_job(row: tuple[Any, ...]) -> Job:
    return Job(
        id=row[0],
        type=row[1],
        payload=json.loads(row[2]),
        status=_STATUS[row[3]],
        attempts=row[4],
        retry_base=row[5],
        max_retries=row[6],
        last_error=row[7],
        result=None if row[8] is None else json.loads(row[8]),
        created_at=row[9],
        updated_at=row[10],
        started_at=row[11],
        finished_at=row[12],
        run_at=row[13],
        owner=row[14],
        lease_expires_at=row[15],
        idempotency_key=row[16],
        request_hash=row[17],
    )


def _describe(exc: sqlite3.Error) -> str:
    """A client-safe description of a database failure (no SQL, no paths)."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "storage is busy (the database is locked by another process); try again"
    if "full" in text:
        return "storage is full; nothing was stored"
    if "readonly" in text or "read-only" in text:
        return "storage is read-only; nothing was stored"
    return "storage failed; nothing was stored"


class SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _one(self, sql: str, params: tuple[Any, ...]) -> Job | None:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else _row_to_job(row)

    def _many(self, sql: str, params: tuple[Any, ...]) -> list[Job]:
        return [_row_to_job(row) for row in self._conn.execute(sql, params)]

    def insert(self, job: Job) -> None:
        try:
            self._insert(job)
        except sqlite3.IntegrityError:
            raise Conflict("a job with this id or idempotency key already exists") from None

    def _insert(self, job: Job) -> None:
        self._conn.execute(
            f"INSERT INTO jobs ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                job.id,
                job.type,
                _dumps(job.payload),
                job.status.value,
                job.attempts,
                job.retry_base,
                job.max_retries,
                _text(job.last_error),
                None if job.result is None else _dumps(job.result),
                job.created_at,
                job.updated_at,
                job.started_at,
                job.finished_at,
                job.run_at,
                job.owner,
                job.lease_expires_at,
                job.idempotency_key,
                job.request_hash,
            ),
        )

    def get(self, job_id: str) -> Job | None:
        return self._one(f"{_SELECT} WHERE id = ?", (job_id,))

    def update(self, job: Job, expected: Job) -> bool:
        cursor = self._conn.execute(
            "UPDATE jobs SET status = ?, attempts = ?, retry_base = ?, last_error = ?, "
            "result = ?, updated_at = ?, started_at = ?, finished_at = ?, run_at = ?, "
            "owner = ?, lease_expires_at = ? "
            "WHERE id = ? AND status = ? AND attempts = ? AND owner IS ?",
            (
                job.status.value,
                job.attempts,
                job.retry_base,
                _text(job.last_error),
                None if job.result is None else _dumps(job.result),
                job.updated_at,
                job.started_at,
                job.finished_at,
                job.run_at,
                job.owner,
                job.lease_expires_at,
                job.id,
                expected.status.value,
                expected.attempts,
                expected.owner,
            ),
        )
        return cursor.rowcount == 1

    def lock(self, job_ids: list[str]) -> None:
        pass  # the write transaction holds the whole database (see base.Transaction.lock)

    def find_by_idempotency_key(self, key: str) -> Job | None:
        return self._one(f"{_SELECT} WHERE idempotency_key = ?", (key,))

    def count_ready(self, now: float, limit: int) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM jobs "
            "WHERE status = 'pending' AND run_at <= ? LIMIT ?)",
            (now, limit),
        ).fetchone()
        return int(row[0])

    def claimable(self, now: float, limit: int) -> list[Job]:
        return self._many(
            f"{_SELECT} WHERE status = 'pending' AND run_at <= ? ORDER BY run_at, seq LIMIT ?",
            (now, limit),
        )

    def next_run_at(self, now: float) -> float | None:
        row = self._conn.execute(
            "SELECT min(run_at) FROM jobs WHERE status = 'pending' AND run_at > ?", (now,)
        ).fetchone()
        return row[0]

    def due_retries(self, now: float, limit: int) -> list[Job]:
        return self._many(
            f"{_SELECT} WHERE status = 'failed' AND run_at <= ? ORDER BY run_at LIMIT ?",
            (now, limit),
        )

    def expired_leases(self, now: float, limit: int) -> list[Job]:
        return self._many(
            f"{_SELECT} WHERE status = 'processing' AND lease_expires_at < ? "
            "ORDER BY lease_expires_at LIMIT ?",
            (now, limit),
        )

    def processing(self, owner: str | None = None) -> list[Job]:
        if owner is None:
            return self._many(f"{_SELECT} WHERE status = 'processing' ORDER BY seq", ())
        return self._many(
            f"{_SELECT} WHERE status = 'processing' AND owner = ? ORDER BY seq", (owner,)
        )

    def renew_leases(self, owner: str, job_ids: list[str], until: float) -> int:
        renewed = 0
        for chunk in chunked(job_ids, _MAX_PARAMS):
            marks = ",".join("?" * len(chunk))
            cursor = self._conn.execute(
                f"UPDATE jobs SET lease_expires_at = ? WHERE status = 'processing' "
                f"AND owner = ? AND id IN ({marks})",
                (until, owner, *chunk),
            )
            renewed += cursor.rowcount
        return renewed


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode = WAL")
            self.migrate()
        except sqlite3.Error as exc:
            self.close()
            raise StorageUnavailable(f"cannot open the database: {_describe(exc)}") from exc
        except BaseException:
            self.close()
            raise

    def _take_lock(self) -> None:
        # The real file's name: two paths to one file (a symlink) must meet at one lock.
        lock_path = Path(os.path.realpath(self.path) + ".lock")
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the store's life
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
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def migrate(self) -> list[int]:
        """Apply the migrations this database has not seen, each in its own transaction."""
        assert self._writer is not None
        conn = self._writer
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in load_migrations("sqlite"):
            if version in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in split_sql(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, strftime('%s','now'))",
                    (version, name),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("migration applied", extra={"event": "migration_applied", "version": name})
            applied.append(version)
        return applied

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
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                log.warning("begin failed: %s", exc, extra={"event": "storage_error"})
                raise StorageUnavailable(_describe(exc)) from exc
            try:
                yield SqliteTransaction(conn)
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                # Locked, busy, full, read-only, I/O: the database cannot write *now*.
                self._rollback(conn)
                log.warning("transaction failed: %s", exc, extra={"event": "storage_error"})
                raise StorageUnavailable(_describe(exc)) from exc
            except BaseException:
                # Anything else (a value SQLite refuses, a bug) is about this batch's
                # content, not the database: it propagates as it is.
                self._rollback(conn)
                raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed", extra={"event": "storage_error"})

    # -- reads (any thread) -------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._writer is None:
                raise StorageUnavailable("storage is closed")
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            log.warning("read failed: %s", exc, extra={"event": "storage_error"})
            raise StorageUnavailable(_describe(exc)) from exc

    def get(self, job_id: str) -> Job | None:
        rows = self._read(f"{_SELECT} WHERE id = ?", (job_id,))
        return _row_to_job(rows[0]) if rows else None

    def list(self, query: JobFilter) -> JobPage:
        status, job_type, limit = query.status, query.job_type, query.limit
        after, max_bytes = query.after, query.max_bytes
        where = ["seq > ?"]
        params: list[Any] = [after or 0]
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if job_type is not None:
            where.append("type = ?")
            params.append(job_type)
        sql = f"SELECT seq, {COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        try:
            cursor = self._reader().execute(sql, (*params, limit + 1))
            page: list[tuple[Any, ...]] = []
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
            raise StorageUnavailable(_describe(exc)) from exc
        next_after = page[-1][0] if more else None
        return JobPage([_row_to_job(row[1:]) for row in page], next_after)

    def counts(self, now: float) -> Counts:
        by_status = dict(self._read("SELECT status, count(*) FROM jobs GROUP BY status", ()))
        ready = self._read(
            "SELECT count(*) FROM jobs WHERE status = 'pending' AND run_at <= ?", (now,)
        )[0][0]
        return Counts(ready=ready, by_status=by_status)

    def ping(self) -> None:
        self._read("SELECT 1", ())
