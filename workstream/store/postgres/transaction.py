"""One group commit on the writer connection, in as few round trips as it can take.

Statements that need no answer in between go out pipelined, in one round trip: `BEGIN` with
the first statement, and pending writes (below) with the next query or with `NOTIFY` and
`COMMIT`. A drain batch (outcomes, then a claim) is three round trips.

Concurrency between nodes:
- `get` locks the row (`FOR UPDATE`); `claimable`, `due_retries` and `expired_leases` take
  `FOR UPDATE SKIP LOCKED`, so nodes claiming or sweeping at once get disjoint rows and
  never wait on each other; `update` is fenced on (status, attempts, owner) anyway.
- A fenced update of a row the transaction already holds (read `FOR UPDATE`, claimed,
  inserted) is decided from what it read — nobody else can change a row it has locked —
  and sent with the others, pipelined, with the next query or at commit: no round trip of
  its own. Rows about to be updated without having been read in this transaction (the
  outcomes of jobs claimed in earlier batches) are locked first, all in one
  `SELECT … FOR UPDATE` (`lock`), so that their updates are decided and sent the same way.
- Admission: `count_ready` first takes a transaction-scoped advisory lock, in a statement
  of its own (so the count's snapshot is taken after the lock is granted): the
  count-then-insert of concurrent submissions on several nodes is serialised, and capacity
  is never overshot.
- `insert` uses `ON CONFLICT DO NOTHING`: a taken id or idempotency key is `Conflict`, and
  the transaction stays usable without a savepoint round trip per insert.
- A transaction that inserted a job or made one `pending` has `notify` set: the store sends
  `NOTIFY` just before COMMIT (delivered only if it commits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, LiteralString, cast

import psycopg
from psycopg import errors as pg_errors

from workstream.errors import Conflict, ServiceBusy, StorageUnavailable
from workstream.jobs.attempts import Attempt
from workstream.jobs.model import Job, JobStatus
from workstream.store.postgres.codec import (
    Fence,
    attempt_params,
    enc,
    fence,
    insert_params,
    row_fence,
    row_to_job,
    update_params,
)
from workstream.store.postgres.connections import Connection
from workstream.store.postgres.errors import describe, unavailable
from workstream.store.postgres.queries import SQL

# A transaction-scoped advisory lock key (per database); migrations have the next one.
ADMISSION_LOCK = 0x57530001

_PENDING = JobStatus.PENDING
_BEGIN = SQL["begin"]
_HELD_UPDATE = SQL["held_update"]
_INSERT_ATTEMPT = SQL["insert_attempt"]


class PostgresTransaction:
    """Fenced updates of rows this transaction holds (locked by `get`, `claimable`, the
    sweeper's queries, `processing`, or inserted here) are decided at once and written
    together, pipelined, with the next query that could see them or with COMMIT. `lock`
    makes rows held ahead of their updates (one query for many rows); updates of rows not
    held run at once."""

    def __init__(self, conn: Connection, reconnect: Callable[[], Connection] | None = None):
        self._conn = conn
        # A new connection for one found dead by the first round trip: it was idle since
        # the last transaction (a server restart, a killed session) and nothing of this one
        # ran. None when the connection is new.
        self._reconnect = reconnect
        self.begun = False  # BEGIN was sent (it goes with the first statement)
        self._admission_locked = False
        self.notify = False  # a job became pending: tell the other nodes at commit
        # Rows this transaction holds: encoded id -> their fence as it is now (pending
        # writes included).
        self._held: dict[str, Fence] = {}
        # Writes decided but not sent: encoded id -> (job, the row's fence in the database).
        self._pending: dict[str, tuple[Job, Fence]] = {}
        # Attempt records not sent: inserted with the pending writes (no round trip of
        # their own; nothing in the transaction reads them).
        self._attempts: list[tuple[Any, ...]] = []

    @property
    def connection(self) -> Connection:
        return self._conn

    def _send(
        self,
        sql: str | None,
        params: tuple[Any, ...] | list[Any] = (),
        *,
        flush: bool = False,
        then: tuple[str, ...] = (),
    ) -> psycopg.Cursor[Any] | None:
        """One round trip, pipelined: BEGIN if it was not sent yet, the pending fenced
        updates (with `flush`), `sql`, then the statements `then` (NOTIFY, COMMIT). Returns
        the cursor of `sql`. The server runs them in order and stops at the first error."""
        pending = self._take_pending() if flush else []
        attempts, self._attempts = (self._attempts, []) if flush else ([], self._attempts)
        while True:
            begin = not self.begun
            statements = int(begin) + len(pending) + len(attempts) + (sql is not None) + len(then)
            try:
                if statements == 1 and sql is not None:
                    return self._conn.execute(sql, params)
                cursor = None
                with self._conn.pipeline():
                    if begin:
                        self.begun = True
                        self._conn.execute(_BEGIN)
                    if pending:
                        self._conn.cursor().executemany(_HELD_UPDATE, pending)
                    if attempts:
                        self._conn.cursor().executemany(_INSERT_ATTEMPT, attempts)
                    if sql is not None:
                        cursor = self._conn.execute(sql, params)
                    for statement in then:
                        self._conn.execute(cast(LiteralString, statement))  # ours: trusted SQL
                self._reconnect = None
                return cursor
            except psycopg.Error as exc:
                if (
                    begin
                    and self._reconnect is not None
                    and (self._conn.broken or self._conn.closed)
                ):
                    # Found dead before anything of this transaction ran: once more, on a
                    # new connection (the pending list is empty: nothing was held yet).
                    self._conn, self._reconnect = self._reconnect(), None
                    self.begun = False
                    continue
                if isinstance(exc, pg_errors.DivisionByZero):
                    # Every pending row is held, so each must match; a miss is a bug, and
                    # it aborts the transaction rather than lose a write silently.
                    raise RuntimeError("held rows changed: a pending write matched no row") from exc
                if unavailable(exc):
                    raise StorageUnavailable(describe(exc)) from exc
                raise

    def _exec(self, sql: str, params: tuple[Any, ...] | list[Any]) -> psycopg.Cursor[Any]:
        """A statement that reads no row with a pending write."""
        cursor = self._send(sql, params)
        assert cursor is not None
        return cursor

    def _query(self, sql: str, params: tuple[Any, ...] | list[Any]) -> psycopg.Cursor[Any]:
        """A statement that may read rows with pending writes: those go first, in the same
        round trip."""
        cursor = self._send(sql, params, flush=True)
        assert cursor is not None
        return cursor

    def _take_pending(self) -> list[tuple[Any, ...]]:
        pending, self._pending = self._pending, {}
        return [update_params(job, key, stored) for key, (job, stored) in pending.items()]

    def _hold(self, rows: list[tuple[Any, ...]]) -> list[Job]:
        jobs = []
        for row in rows:
            self._held[row[0]] = row_fence(row)
            jobs.append(row_to_job(row))
        return jobs

    def _many(self, sql: str, params: tuple[Any, ...]) -> list[Job]:
        """Rows read FOR UPDATE: held by this transaction from now on."""
        return self._hold(self._query(sql, params).fetchall())

    def flush(self) -> None:
        """Send the pending fenced updates, pipelined (one round trip)."""
        if self._pending or self._attempts:
            self._send(None, flush=True)

    def commit(self, notify: str | None = None) -> None:
        """The pending fenced updates, `notify` and COMMIT in one round trip (with BEGIN if
        nothing was sent: an empty batch still finds out whether the database is there)."""
        commit = SQL["commit"]
        self._send(None, flush=True, then=(commit,) if notify is None else (notify, commit))

    def insert(self, job: Job) -> None:
        cursor = self._exec(SQL["insert"], insert_params(job))
        if cursor.rowcount != 1:
            raise Conflict("a job with this id or idempotency key already exists")
        self._held[enc(job.id)] = fence(job)
        if job.status is _PENDING:
            self.notify = True

    def get(self, job_id: str) -> Job | None:
        key = enc(job_id)
        if key in self._pending:
            return self._pending[key][0]
        # Pending writes touch other rows only: no flush needed for this one.
        row = self._exec(SQL["get_for_update"], (key,)).fetchone()
        return None if row is None else self._hold([row])[0]

    def update(self, job: Job, expected: Job) -> bool:
        key = enc(job.id)
        expected_fence = fence(expected)
        now_held = self._held.get(key)
        if now_held is not None:
            # A row this transaction holds: the fence is decided here, exactly.
            if now_held != expected_fence:
                return False
            stored = self._pending[key][1] if key in self._pending else now_held
            self._pending[key] = (job, stored)
            self._held[key] = fence(job)
        else:
            cursor = self._exec(SQL["update"], update_params(job, key, expected_fence))
            if cursor.rowcount != 1:
                return False
            self._held[key] = fence(job)
        if job.status is _PENDING:
            self.notify = True
        return True

    def lock(self, job_ids: list[str]) -> None:
        """Lock the rows of `job_ids` not yet held, in one statement, and remember their
        fences: their fenced updates are then decided here, exactly as the UPDATE would
        decide them, and pipelined. Reads only the fence; `get` still reads a whole row.
        Pending writes are to held rows only, so nothing needs to be flushed first."""
        keys = sorted({enc(job_id) for job_id in job_ids}.difference(self._held))
        if not keys:
            return
        rows = self._exec(SQL["lock"], (keys,)).fetchall()
        for key, status, attempts, owner in rows:
            self._held[key] = (status, attempts, owner)

    def find_by_idempotency_key(self, key: str) -> Job | None:
        found = self._many(SQL["find_by_idempotency_key"], (enc(key),))
        return found[0] if found else None

    def count_ready(self, now: float, limit: int) -> int:
        if not self._admission_locked:
            self._lock_admission()
            self._admission_locked = True
        row = self._query(SQL["count_ready"], (now, limit)).fetchone()
        return int(row[0]) if row else 0

    def _lock_admission(self) -> None:
        """Take the admission lock, in a statement of its own: the count that follows then
        sees every admission committed before the lock was granted (READ COMMITTED takes
        a snapshot per statement). Under a savepoint: if another node holds the lock past
        `lock_timeout` (it stalled mid-transaction), only the submissions of this batch
        are refused (ServiceBusy, 503); its claims, outcomes and renewals still commit."""
        self._query(SQL["admission_savepoint"], ())
        try:
            self._conn.execute(SQL["advisory_lock"], (ADMISSION_LOCK,))
        except pg_errors.LockNotAvailable:
            self._exec(SQL["admission_rollback"], ())
            raise ServiceBusy(
                "admission is held up by another node (it stalled while admitting); "
                "nothing was stored; try again"
            ) from None
        except psycopg.Error as exc:
            if unavailable(exc):
                raise StorageUnavailable(describe(exc)) from exc
            raise
        self._exec(SQL["admission_release"], ())

    def claimable(self, now: float, limit: int) -> list[Job]:
        return self._many(SQL["claimable"], (now, limit))

    def next_run_at(self, now: float) -> float | None:
        row = self._query(SQL["next_run_at"], (now, now)).fetchone()
        return None if row is None else row[0]

    def due_retries(self, now: float, limit: int) -> list[Job]:
        return self._many(SQL["due_retries"], (now, limit))

    def expired_leases(self, now: float, limit: int) -> list[Job]:
        return self._many(SQL["expired_leases"], (now, limit))

    def processing(self, owner: str | None = None) -> list[Job]:
        if owner is None:
            return self._many(SQL["processing"], ())
        return self._many(SQL["processing_of_owner"], (enc(owner),))

    def renew_leases(self, owner: str, job_ids: list[str], until: float) -> int:
        if not job_ids:
            return 0
        cursor = self._query(
            SQL["renew_leases"], (until, enc(owner), [enc(job_id) for job_id in job_ids])
        )
        return cursor.rowcount

    def add_attempt(self, attempt: Attempt) -> None:
        """Sent with the pending writes, at the latest with COMMIT."""
        self._attempts.append(attempt_params(attempt))

    def delete_attempts(self, job_ids: list[str]) -> int:
        if not job_ids:
            return 0
        cursor = self._query(SQL["delete_attempts"], ([enc(job_id) for job_id in job_ids],))
        return cursor.rowcount
