"""PostgreSQL storage: several WorkStream nodes share one database (SPEC section 6).

Connections, and why:
- **One writer connection**, used only inside `transaction()` (the Registry's thread; a lock
  keeps other callers out). A group commit is a handful of statements on one connection:
  no pool checkout per batch, its prepared statements stay warm, and readers can never
  starve it of a connection (nor it them). If it breaks, the failing batch gets
  `StorageUnavailable` and the next `transaction()` connects anew; a connection found dead
  by a transaction's first round trip (`BEGIN` and its first statement), before anything
  ran, is replaced and that round trip sent again at once.
- **A bounded pool for reads** (`psycopg_pool.ConnectionPool`, autocommit): `get`, `list`,
  `counts` and `ping` come from any thread and never queue behind the writer. Connections
  are checked when taken from the pool, so a connection killed while idle is replaced
  instead of failing a read; getting one waits at most `pool_timeout`.
- **One listening connection** (autocommit, in a daemon thread) for `watch()`.

Every wait is bounded: `connect_timeout`, `pool_timeout`, and per-session
`statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout` (the last one
frees the rows and locks of a node that stops mid-transaction, e.g. under SIGSTOP).
Connection and operational failures (unreachable, killed session, timeout, lock timeout,
deadlock, disk full, read-only server) become `StorageUnavailable` with a client-safe
message; anything else (a value PostgreSQL refuses, a bug) propagates as it is, so the
Registry can isolate the command that causes it. `synchronous_commit` is left on.

Concurrency between nodes:
- `Transaction.get` locks the row (`FOR UPDATE`); `claimable`, `due_retries` and
  `expired_leases` take `FOR UPDATE SKIP LOCKED`, so nodes claiming or sweeping at once get
  disjoint rows and never wait on each other; `update` is fenced on (status, attempts,
  owner) anyway.
- Admission: `count_ready` first takes a transaction-scoped advisory lock, in a statement
  of its own (so the count's snapshot is taken after the lock is granted): the
  count-then-insert of concurrent submissions on several nodes is serialised, and capacity
  is never overshot.
- `insert` uses `ON CONFLICT DO NOTHING`: a taken id or idempotency key is `Conflict`, and
  the transaction stays usable without a savepoint round trip per insert.
- Round trips: statements that need no answer in between go out pipelined, in one round
  trip: `BEGIN` with the first statement, and pending writes (below) with the next query
  or with `NOTIFY` and `COMMIT`.
- A fenced update of a row the transaction already holds (read `FOR UPDATE`, claimed,
  inserted) is decided from what it read and sent with the others, pipelined, with the
  next query or at commit: no round trip of its own. Rows the Registry is about to update
  without having read them in this transaction (the outcomes of jobs claimed in earlier
  batches) are locked first, all in one `SELECT … FOR UPDATE` (`lock`), so that their
  updates are decided and sent the same way: one round trip for all of a batch's outcomes
  instead of one UPDATE each. A drain batch (outcomes, then a claim) is three round trips.
- Wake-ups: a transaction that inserted a job or made one `pending` sends one
  `NOTIFY workstream_jobs` just before COMMIT (delivered only if it commits), carrying this
  store's token so that a node ignores its own notifications.

Text: PostgreSQL text cannot hold NUL. Payload and result are JSON (NUL is escaped by the
encoder); the other text columns escape NUL losslessly with a private-use character
(see `_enc`), and lone surrogates are replaced (`units.valid_text`) as SQLite does.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from workstream.errors import ConfigError, Conflict, ServiceBusy, StorageUnavailable
from workstream.jobs.listing import JobFilter, JobPage
from workstream.jobs.model import Job, JobStatus
from workstream.store.base import Counts
from workstream.store.schema import load_migrations, split_sql
from workstream.store.watchdog import Watchdog, shut_down
from workstream.units import valid_text

log = logging.getLogger(__name__)

CHANNEL = "workstream_jobs"
# Transaction-scoped advisory lock keys (per database): admission and migrations.
ADMISSION_LOCK = 0x57530001
MIGRATION_LOCK = 0x57530002

COLUMNS = (
    "id, type, payload, status, attempts, retry_base, max_retries, last_error, result, "
    "created_at, updated_at, started_at, finished_at, run_at, owner, lease_expires_at, "
    "idempotency_key, request_hash"
)
_SELECT = f"SELECT {COLUMNS} FROM jobs"
_STATUS = {status.value: status for status in JobStatus}
_PENDING = JobStatus.PENDING
_NO_BUDGET = 2**62  # list() without max_bytes

_INSERT = (
    f"INSERT INTO jobs ({COLUMNS}) VALUES "
    "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING"
)
_UPDATE = (
    "UPDATE jobs SET status = %s, attempts = %s, retry_base = %s, last_error = %s, "
    "result = %s, updated_at = %s, started_at = %s, finished_at = %s, run_at = %s, "
    "owner = %s, lease_expires_at = %s "
    "WHERE id = %s AND status = %s AND attempts = %s AND owner IS NOT DISTINCT FROM %s"
)
# The same for a row this transaction holds, sent pipelined: it must match its row, so a
# miss (a bug: nobody else can change a held row) fails the statement itself (division by
# zero), and nothing sent after it in the same round trip (COMMIT) runs.
_HELD_UPDATE = f"WITH written AS ({_UPDATE} RETURNING 1) SELECT 1 / count(*) FROM written"

# -- values -------------------------------------------------------------------------------

_ESC = "\ue000"  # a private-use character: the escape for NUL in text columns
_UNESCAPE = re.compile("\ue000(.)", re.DOTALL)


def _enc(value: str | None) -> str | None:
    """Text as PostgreSQL can store it: valid Unicode, NUL escaped (reversibly)."""
    if value is None:
        return None
    value = valid_text(value)
    if "\x00" in value or _ESC in value:
        value = value.replace(_ESC, _ESC + _ESC).replace("\x00", _ESC + "0")
    return value


def _dec(value: str | None) -> str | None:
    if value is None or _ESC not in value:
        return value
    return _UNESCAPE.sub(lambda m: "\x00" if m.group(1) == "0" else m.group(1), value)


def _dumps(value: Any) -> str:
    # ASCII escapes keep any Python string exactly (NUL and lone surrogates included).
    return json.dumps(value, separators=(",", ":"))


def _row_to_job(row: tuple[Any, ...]) -> Job:
    return Job(
        id=_dec(row[0]),
        type=_dec(row[1]),
        payload=json.loads(row[2]),
        status=_STATUS[row[3]],
        attempts=row[4],
        retry_base=row[5],
        max_retries=row[6],
        last_error=_dec(row[7]),
        result=None if row[8] is None else json.loads(row[8]),
        created_at=row[9],
        updated_at=row[10],
        started_at=row[11],
        finished_at=row[12],
        run_at=row[13],
        owner=_dec(row[14]),
        lease_expires_at=row[15],
        idempotency_key=_dec(row[16]),
        request_hash=_dec(row[17]),
    )


# -- errors -------------------------------------------------------------------------------


def _unavailable(exc: BaseException) -> bool:
    """A failure of the database or the connection (not of this batch's content)."""
    if isinstance(exc, psycopg.OperationalError):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state == "25006" or state[:2] in ("08", "53", "57", "58")


def _describe(exc: BaseException) -> str:
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


def _connect_reason(exc: BaseException) -> str:
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


def _bad_option(exc: BaseException) -> str | None:
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
    user = params.get("user")
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or user or ""
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{dbname}"


def _fence(job: Job) -> tuple[str, int, str | None]:
    """What every update is fenced on, as stored: (status, attempts, owner)."""
    return (job.status.value, job.attempts, _enc(job.owner))


def _update_params(job: Job, key: str, fence: tuple[str, int, str | None]) -> tuple[Any, ...]:
    """The parameters of `_UPDATE`: the job's new state, its id and the fence."""
    return (
        job.status.value,
        job.attempts,
        job.retry_base,
        _enc(job.last_error),
        None if job.result is None else _dumps(job.result),
        job.updated_at,
        job.started_at,
        job.finished_at,
        job.run_at,
        _enc(job.owner),
        job.lease_expires_at,
        key,
        *fence,
    )


# -- the transaction ------------------------------------------------------------------------


class PostgresTransaction:
    """One group commit on the writer connection.

    Fenced updates of rows this transaction holds (locked by `get`, `claimable`, the
    sweeper's queries, `processing`, or inserted here) are decided at once from what it
    read — nobody else can change a row it has locked — and written together, pipelined,
    with the next query that could see them or with COMMIT. That saves a round trip per
    claimed or finished job. `lock` makes rows held ahead of their updates
    (one query for many rows); updates of rows not held run at once.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        reconnect: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self._conn = conn
        # A new connection for one found dead by the first round trip: it was idle since
        # the last transaction (a server restart, a killed session) and nothing of this one
        # ran. None when the connection is new.
        self._reconnect = reconnect
        self.begun = False  # BEGIN was sent (it goes with the first statement)
        self._admission_locked = False
        self.notify = False  # a job became pending: tell the other nodes at commit
        # Rows this transaction holds: encoded id -> (status, attempts, encoded owner), as
        # they are now (pending writes included).
        self._held: dict[str, tuple[str, int, str | None]] = {}
        # Writes decided but not sent: encoded id -> (job, the row's fence in the database).
        self._pending: dict[str, tuple[Job, tuple[str, int, str | None]]] = {}

    @property
    def connection(self) -> psycopg.Connection[Any]:
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
        while True:
            begin = not self.begun
            statements = int(begin) + len(pending) + (sql is not None) + len(then)
            try:
                if statements == 1 and sql is not None:
                    return self._conn.execute(sql, params)
                cursor = None
                with self._conn.pipeline():
                    if begin:
                        self.begun = True
                        self._conn.execute("BEGIN")
                    if pending:
                        self._conn.cursor().executemany(_HELD_UPDATE, pending)
                    if sql is not None:
                        cursor = self._conn.execute(sql, params)
                    for statement in then:
                        self._conn.execute(statement)  # type: ignore[arg-type] # ours
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
                if _unavailable(exc):
                    raise StorageUnavailable(_describe(exc)) from exc
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
        return [_update_params(job, key, fence) for key, (job, fence) in pending.items()]

    def _hold(self, rows: list[tuple[Any, ...]]) -> list[Job]:
        jobs = []
        for row in rows:
            self._held[row[0]] = (row[3], row[4], row[14])
            jobs.append(_row_to_job(row))
        return jobs

    def _many(self, sql: str, params: tuple[Any, ...]) -> list[Job]:
        """Rows read FOR UPDATE: held by this transaction from now on."""
        return self._hold(self._query(sql, params).fetchall())

    def flush(self) -> None:
        """Send the pending fenced updates, pipelined (one round trip)."""
        if self._pending:
            self._send(None, flush=True)

    def commit(self, notify: str | None = None) -> None:
        """The pending fenced updates, `notify` and COMMIT in one round trip (with BEGIN if
        nothing was sent: an empty batch still finds out whether the database is there)."""
        self._send(None, flush=True, then=("COMMIT",) if notify is None else (notify, "COMMIT"))

    def insert(self, job: Job) -> None:
        key = _enc(job.id)
        cursor = self._exec(
            _INSERT,
            (
                key,
                _enc(job.type),
                _dumps(job.payload),
                job.status.value,
                job.attempts,
                job.retry_base,
                job.max_retries,
                _enc(job.last_error),
                None if job.result is None else _dumps(job.result),
                job.created_at,
                job.updated_at,
                job.started_at,
                job.finished_at,
                job.run_at,
                _enc(job.owner),
                job.lease_expires_at,
                _enc(job.idempotency_key),
                _enc(job.request_hash),
            ),
        )
        if cursor.rowcount != 1:
            raise Conflict("a job with this id or idempotency key already exists")
        self._held[key] = _fence(job)
        if job.status is _PENDING:
            self.notify = True

    def get(self, job_id: str) -> Job | None:
        key = _enc(job_id)
        if key in self._pending:
            return self._pending[key][0]
        # Pending writes touch other rows only: no flush needed for this one.
        row = self._exec(f"{_SELECT} WHERE id = %s FOR UPDATE", (key,)).fetchone()
        return None if row is None else self._hold([row])[0]

    def update(self, job: Job, expected: Job) -> bool:
        key = _enc(job.id)
        fence = _fence(expected)
        now_held = self._held.get(key)
        if now_held is not None:
            # A row this transaction holds: the fence is decided here, exactly.
            if now_held != fence:
                return False
            stored = self._pending[key][1] if key in self._pending else now_held
            self._pending[key] = (job, stored)
            self._held[key] = _fence(job)
        else:
            cursor = self._exec(_UPDATE, _update_params(job, key, fence))
            if cursor.rowcount != 1:
                return False
            self._held[key] = _fence(job)
        if job.status is _PENDING:
            self.notify = True
        return True

    def lock(self, job_ids: list[str]) -> None:
        """Lock the rows of `job_ids` not yet held, in one statement (in id order, as any
        other node locking several of them does), and remember their fences: their fenced
        updates are then decided here, exactly as the UPDATE would decide them, and
        pipelined. Reads only the fence; `get` still reads a whole row. Pending writes
        are to held rows only, so nothing needs to be flushed first."""
        keys = sorted({_enc(job_id) for job_id in job_ids}.difference(self._held))
        if not keys:
            return
        rows = self._exec(
            "SELECT id, status, attempts, owner FROM jobs WHERE id = ANY(%s) "
            "ORDER BY id FOR UPDATE",
            (keys,),
        ).fetchall()
        for key, status, attempts, owner in rows:
            self._held[key] = (status, attempts, owner)

    def find_by_idempotency_key(self, key: str) -> Job | None:
        found = self._many(f"{_SELECT} WHERE idempotency_key = %s FOR UPDATE", (_enc(key),))
        return found[0] if found else None

    def count_ready(self, now: float, limit: int) -> int:
        if not self._admission_locked:
            self._lock_admission()
            self._admission_locked = True
        row = self._query(
            "SELECT count(*) FROM (SELECT 1 FROM jobs "
            "WHERE status = 'pending' AND run_at <= %s LIMIT %s) AS ready",
            (now, limit),
        ).fetchone()
        return int(row[0]) if row else 0

    def _lock_admission(self) -> None:
        """Take the admission lock, in a statement of its own: the count that follows then
        sees every admission committed before the lock was granted (READ COMMITTED takes
        a snapshot per statement). Under a savepoint: if another node holds the lock past
        `lock_timeout` (it stalled mid-transaction), only the submissions of this batch
        are refused (ServiceBusy, 503); its claims, outcomes and renewals still commit."""
        self._query("SAVEPOINT admission", ())
        try:
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADMISSION_LOCK,))
        except pg_errors.LockNotAvailable:
            self._exec("ROLLBACK TO SAVEPOINT admission", ())
            raise ServiceBusy(
                "admission is held up by another node (it stalled while admitting); "
                "nothing was stored; try again"
            ) from None
        except psycopg.Error as exc:
            if _unavailable(exc):
                raise StorageUnavailable(_describe(exc)) from exc
            raise
        self._exec("RELEASE SAVEPOINT admission", ())

    def claimable(self, now: float, limit: int) -> list[Job]:
        return self._many(
            f"{_SELECT} WHERE status = 'pending' AND run_at <= %s "
            "ORDER BY run_at, seq LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        )

    def next_run_at(self, now: float) -> float | None:
        row = self._query(
            "SELECT min(run_at) FROM jobs WHERE status = 'pending' AND run_at > %s", (now,)
        ).fetchone()
        return None if row is None else row[0]

    def due_retries(self, now: float, limit: int) -> list[Job]:
        return self._many(
            f"{_SELECT} WHERE status = 'failed' AND run_at <= %s "
            "ORDER BY run_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        )

    def expired_leases(self, now: float, limit: int) -> list[Job]:
        return self._many(
            f"{_SELECT} WHERE status = 'processing' AND lease_expires_at < %s "
            "ORDER BY lease_expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        )

    def processing(self, owner: str | None = None) -> list[Job]:
        if owner is None:
            return self._many(f"{_SELECT} WHERE status = 'processing' ORDER BY seq FOR UPDATE", ())
        return self._many(
            f"{_SELECT} WHERE status = 'processing' AND owner = %s ORDER BY seq FOR UPDATE",
            (_enc(owner),),
        )

    def renew_leases(self, owner: str, job_ids: list[str], until: float) -> int:
        if not job_ids:
            return 0
        cursor = self._query(
            "UPDATE jobs SET lease_expires_at = %s "
            "WHERE status = 'processing' AND owner = %s AND id = ANY(%s)",
            (until, _enc(owner), [_enc(job_id) for job_id in job_ids]),
        )
        return cursor.rowcount


# -- the store ------------------------------------------------------------------------------


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
        options = (
            f"-c statement_timeout={_ms(statement_timeout)} "
            f"-c lock_timeout={_ms(lock_timeout)} "
            f"-c idle_in_transaction_session_timeout={_ms(idle_in_transaction_timeout)}"
        )
        self._conninfo = make_conninfo(
            url,
            connect_timeout=max(1, round(connect_timeout)),
            options=options,
            application_name="workstream",
            # A peer that vanished without a word (host down, network cut): sent data left
            # unacknowledged closes the connection after this long, and an idle connection
            # (the listener) is probed by keepalives and dropped within about 11 s.
            tcp_user_timeout=_ms(max(connect_timeout, statement_timeout) + 2.0),
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )
        self.token = secrets.token_hex(8)  # this store's NOTIFY payload
        self._writer: psycopg.Connection[Any] | None = None
        self._writer_lost = False  # dropped after a failure: log when it is back
        self._write_lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._opened = False
        self._wake: Callable[[], None] | None = None
        self._listener: threading.Thread | None = None
        self._listen_conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        # Client-side bounds (see watchdog.py): a frozen server cannot hold a caller.
        self._watchdog = Watchdog()
        self._read_bound = statement_timeout + 2.0
        self._check_bound = connect_timeout + 2.0
        self._batch_bound = 3 * max(statement_timeout, lock_timeout) + 2.0

    # -- life cycle ---------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo, autocommit=True)

    def open(self) -> None:
        """Connect, migrate, and open the read pool. No exclusive lock: nodes share this."""
        if self._opened:
            return
        try:
            self._writer = self._connect()
        except psycopg.Error as exc:
            bad_option = _bad_option(exc)
            if bad_option is not None:  # a setting to fix, not an outage to wait out
                raise ConfigError(f"DATABASE_URL: {self.where}: {bad_option}") from None
            raise StorageUnavailable(
                f"cannot connect to the database {self.where}: {_connect_reason(exc)}"
            ) from exc
        try:
            self.migrate()
        except psycopg.Error as exc:
            self._drop_writer()
            reason = _describe(exc) if _unavailable(exc) else type(exc).__name__
            raise StorageUnavailable(f"cannot migrate the database {self.where}: {reason}") from exc
        except BaseException:
            self._drop_writer()
            raise
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            timeout=self.pool_timeout,
            kwargs={"autocommit": True},
            check=self._check_reader,
            name="workstream-readers",
            open=False,
        )
        self._pool.open(wait=False)
        self._watchdog.start()
        self._stop.clear()
        self._opened = True
        if self._wake is not None:
            self._start_listener()

    def migrate(self) -> list[int]:
        """Apply the migrations this database has not seen, each in its own transaction,
        under an advisory lock so that nodes starting together do not race."""
        conn = self._writer
        if conn is None:
            raise StorageUnavailable("storage is closed")
        applied = []
        for version, name, sql in load_migrations("postgres"):
            with conn.transaction():
                self._migration_preamble(conn)
                done = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (version,)
                ).fetchone()
                if done:
                    continue
                for statement in split_sql(sql):
                    conn.execute(statement)  # type: ignore[arg-type] # our own files
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s, extract(epoch from now()))",
                    (version, name),
                )
            log.info("migration applied", extra={"event": "migration_applied", "version": name})
            applied.append(version)
        return applied

    def _migration_preamble(self, conn: psycopg.Connection[Any]) -> None:
        timeout = _ms(self.migrate_timeout)
        conn.execute(f"SET LOCAL statement_timeout = {timeout}")
        conn.execute(f"SET LOCAL lock_timeout = {timeout}")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at double precision NOT NULL)"
        )

    def close(self) -> None:
        self._opened = False
        self._stop.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.join(timeout=5.0)
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

    def _check_reader(self, conn: psycopg.Connection[Any]) -> None:
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
                tx.commit(f"NOTIFY {CHANNEL}, '{self.token}'" if tx.notify else None)
            except BaseException as exc:
                if tx.begun:
                    self._rollback(tx.connection)
                if isinstance(exc, psycopg.Error) and _unavailable(exc):
                    log.warning("transaction failed: %s", exc, extra={"event": "storage_error"})
                    raise StorageUnavailable(_describe(exc)) from exc
                if isinstance(exc, StorageUnavailable):
                    log.warning(
                        "transaction failed: %s",
                        exc.__cause__ or exc,
                        extra={"event": "storage_error"},
                    )
                # Anything else (a value PostgreSQL refuses, a bug) is about this batch's
                # content, not the database: it propagates as it is.
                raise

    def _begin(self) -> tuple[psycopg.Connection[Any], bool]:
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

    def _connect_writer(self) -> psycopg.Connection[Any]:
        try:
            self._writer = self._connect()
        except psycopg.Error as exc:
            self._drop_writer(lost=True)
            raise StorageUnavailable(_describe(exc)) from exc
        if self._writer_lost:
            self._writer_lost = False
            log.warning(
                "database connection re-established", extra={"event": "storage_reconnected"}
            )
        return self._writer

    def _replace_writer(self) -> psycopg.Connection[Any]:
        """An idle writer found dead by a transaction's first round trip (server restart,
        killed session): nothing of the transaction has run, so it goes on with a new one."""
        self._drop_writer(lost=True)
        return self._connect_writer()

    def _rollback(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            self._drop_writer(lost=True)
            return
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            log.warning("rollback failed", extra={"event": "storage_error"})
            self._drop_writer(lost=True)

    # -- reads (any thread) -------------------------------------------------------------

    def _read(self, sql: str, params: tuple[Any, ...] | list[Any]) -> list[tuple[Any, ...]]:
        pool = self._pool
        if pool is None or not self._opened:
            raise StorageUnavailable("storage is closed")
        try:
            with pool.connection() as conn, self._watchdog.limit(lambda: conn, self._read_bound):
                return conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            if not _unavailable(exc):
                raise
            log.warning("read failed: %s", exc, extra={"event": "storage_error"})
            raise StorageUnavailable(_describe(exc)) from exc

    def get(self, job_id: str) -> Job | None:
        rows = self._read(f"{_SELECT} WHERE id = %s", (_enc(job_id),))
        return _row_to_job(rows[0]) if rows else None

    def list(self, query: JobFilter) -> JobPage:
        status, job_type, limit = query.status, query.job_type, query.limit
        after, max_bytes = query.after, query.max_bytes
        where = ["seq > %s"]
        params: list[Any] = [after or 0]
        if status is not None:
            where.append("status = %s")
            params.append(status.value)
        if job_type is not None:
            where.append("type = %s")
            params.append(_enc(job_type))
        # One statement (one snapshot): sizes of up to limit + 1 matching rows (the stored
        # size: large values are not decompressed), the prefix that fits the budget (never
        # less than one row), and only those rows fetched whole, each carrying how many of
        # the rows looked at were left out (more than none: there is a next page).
        rows = self._read(
            "WITH page AS (SELECT seq, row_number() OVER w AS n, "
            "sum(octet_length(payload) + coalesce(octet_length(result), 0)) OVER w AS running "
            f"FROM (SELECT seq, payload, result FROM jobs WHERE {' AND '.join(where)} "
            "ORDER BY seq LIMIT %s) AS candidates WINDOW w AS (ORDER BY seq)), "
            "kept AS (SELECT seq FROM page WHERE n <= %s AND (n = 1 OR running <= %s)) "
            f"SELECT (SELECT count(*) FROM page) - (SELECT count(*) FROM kept), seq, {COLUMNS} "
            "FROM jobs WHERE seq IN (SELECT seq FROM kept) ORDER BY seq",
            (*params, limit + 1, limit, _NO_BUDGET if max_bytes is None else max_bytes),
        )
        if not rows:
            return JobPage([], None)
        more = rows[0][0] > 0
        return JobPage([_row_to_job(row[2:]) for row in rows], rows[-1][1] if more else None)

    def counts(self, now: float) -> Counts:
        rows = self._read(
            "SELECT status, count(*), "
            "count(*) FILTER (WHERE status = 'pending' AND run_at <= %s) "
            "FROM jobs GROUP BY status",
            (now,),
        )
        return Counts(
            ready=sum(ready for _, _, ready in rows),
            by_status={status: count for status, count, _ in rows},
        )

    def ping(self) -> None:
        self._read("SELECT 1", ())

    # -- wake-ups from other nodes -------------------------------------------------------

    def watch(self, wake: Callable[[], None]) -> None:
        """LISTEN for other nodes' new work on a connection of its own (see module doc)."""
        self._wake = wake
        if self._opened:
            self._start_listener()

    def _start_listener(self) -> None:
        if self._listener is not None:
            return
        self._listener = threading.Thread(
            target=self._listen_loop, name="workstream-listen", daemon=True
        )
        self._listener.start()

    def _listen_loop(self) -> None:
        first_delay, max_delay = self._listen_backoff
        delay = first_delay
        connected_before = False
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except psycopg.Error as exc:
                log.warning(
                    "listen connection failed (%s); retrying in %.1fs",
                    _connect_reason(exc),
                    delay,
                    extra={"event": "listen_failed"},
                )
                self._stop.wait(delay)
                delay = min(delay * 2, max_delay)
                continue
            try:
                with conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if connected_before:
                        log.warning(
                            "listen connection re-established",
                            extra={"event": "listen_reconnected"},
                        )
                    connected_before = True
                    delay = first_delay
                    self._listen_conn = conn
                    self._call_wake()  # catch up on anything missed while away
                    self._receive(conn)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    break
                log.warning(
                    "listen connection lost: %s; reconnecting in %.1fs",
                    type(exc).__name__,
                    delay,
                    extra={"event": "listen_lost"},
                )
                self._stop.wait(delay)
                delay = min(delay * 2, max_delay)
            finally:
                self._listen_conn = None

    def _receive(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            woken = False
            for notify in conn.notifies(timeout=0.25, stop_after=1):
                woken = woken or notify.payload != self.token
            if not woken:
                continue
            for _ in conn.notifies(timeout=0):  # coalesce a burst into one wake-up
                pass
            self._call_wake()

    def _call_wake(self) -> None:
        wake = self._wake
        if wake is None:
            return
        try:
            wake()
        except Exception:
            log.exception("wake-up callback failed", extra={"event": "listen_wake_failed"})


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
