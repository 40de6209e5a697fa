"""What only the SQLite store promises: durability settings, the single-process lock file,
migrations, WAL readers beside the writer, and safe failures when the database is busy."""

from __future__ import annotations

import logging
import os
import select
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workstream.errors import Conflict, DatabaseInUse, StorageUnavailable
from workstream.jobs.listing import JobFilter
from workstream.jobs.model import Job, JobStatus
from workstream.store.schema import load_migrations
from workstream.store.sqlite import SqliteStore

NOW = 1_700_000_000.0
WAIT = 10.0  # bound for waits on threads and child processes
REPO = Path(__file__).resolve().parents[2]


def make_job(number: int, **changes) -> Job:
    job = Job(
        id=f"00000000-0000-4000-8000-{number:012d}",
        type="echo",
        payload={"n": number},
        status=JobStatus.PENDING,
        max_retries=3,
        created_at=NOW,
        updated_at=NOW,
        run_at=NOW,
    )
    return job.replace(**changes)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "workstream.db"


@pytest.fixture
def opened(db_path: Path):
    """Open SqliteStores, all closed at teardown: `opened(store)` opens and returns it."""
    stores: list[SqliteStore] = []

    def open_store(store: SqliteStore | None = None) -> SqliteStore:
        store = store or SqliteStore(db_path)
        store.open()
        stores.append(store)
        return store

    yield open_store
    for store in reversed(stores):
        store.close()


def insert(store: SqliteStore, *jobs: Job) -> None:
    with store.transaction() as tx:
        for job in jobs:
            tx.insert(job)


# -- durability settings ----------------------------------------------------------------


def test_writer_uses_wal_and_synchronous_full(opened):
    store = opened()
    writer = store._writer
    assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_reader_connections_use_synchronous_full_and_are_read_only(opened):
    store = opened()
    store.get("anything")  # creates this thread's reader connection
    reader = store._local.conn
    assert reader.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert reader.execute("PRAGMA query_only").fetchone()[0] == 1


def test_the_database_file_is_in_wal_mode_for_every_connection(opened, db_path):
    opened()
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_busy_timeout_is_set_on_the_writer(opened, db_path):
    store = opened(SqliteStore(db_path, busy_timeout=1.5))
    assert store._writer.execute("PRAGMA busy_timeout").fetchone()[0] == 1500


def test_open_creates_missing_parent_directories(opened, db_path):
    assert not db_path.parent.exists()
    opened()
    assert db_path.exists()


# -- files for this user only --------------------------------------------------------------


@pytest.fixture
def usual_umask():
    """The usual 022, under which files would be created 0644 and directories 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_directory_is_0700_and_the_files_0600(opened, db_path, tmp_path, usual_umask):
    existing = tmp_path / "srv"
    existing.mkdir(mode=0o755)
    nested = existing / "deep" / "er" / "workstream.db"
    for path in (db_path, nested):
        store = opened(SqliteStore(path))
        insert(store, make_job(1))  # the -wal and -shm exist now
        assert mode(path.parent) == 0o700
        for name in ("", "-wal", "-shm", ".lock"):
            assert mode(Path(f"{path}{name}")) == 0o600, name
    assert mode(existing / "deep") == 0o700  # every directory the store made
    assert mode(existing) == 0o755  # one that existed is the operator's


def test_files_left_readable_by_an_older_version_are_tightened(opened, db_path, usual_umask):
    store = opened()
    insert(store, make_job(1))
    store.close()
    for name in ("", "-wal", "-shm", ".lock"):
        if Path(f"{db_path}{name}").exists():
            os.chmod(f"{db_path}{name}", 0o644)
    opened()
    for name in ("", ".lock"):
        assert mode(Path(f"{db_path}{name}")) == 0o600, name
    for name in ("-wal", "-shm"):
        if Path(f"{db_path}{name}").exists():
            assert mode(Path(f"{db_path}{name}")) == 0o600, name


def test_a_symlink_at_the_lock_file_is_refused_not_followed(opened, db_path, tmp_path):
    db_path.parent.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    Path(f"{db_path}.lock").symlink_to(victim)
    with pytest.raises(StorageUnavailable, match="symbolic link"):
        opened()
    assert victim.read_text() == "precious"  # neither truncated nor written
    assert not db_path.exists()


# -- one process per database -----------------------------------------------------------


def test_a_second_store_on_the_same_file_is_refused(opened, db_path):
    opened()
    second = SqliteStore(db_path)
    with pytest.raises(DatabaseInUse) as caught:
        second.open()
    message = caught.value.message
    assert caught.value.code == "database_in_use"
    assert "in use by another WorkStream process" in message
    assert f"pid {os.getpid()}" in message
    assert "DATABASE_URL" in message


def test_a_refused_open_does_not_release_the_holders_lock(opened, db_path):
    first = opened()
    for _ in range(2):
        with pytest.raises(DatabaseInUse):
            SqliteStore(db_path).open()
    insert(first, make_job(1))  # the holder is unaffected
    assert first.get(make_job(1).id) == make_job(1)


def test_after_the_holder_closes_a_new_store_opens_and_sees_the_data(db_path, opened):
    first = SqliteStore(db_path)
    first.open()
    insert(first, make_job(1))
    first.close()
    second = opened()
    assert second.get(make_job(1).id) == make_job(1)


def test_the_same_path_spelled_differently_is_still_refused(opened, db_path):
    opened()
    roundabout = db_path.parent / ".." / db_path.parent.name / db_path.name
    with pytest.raises(DatabaseInUse):
        SqliteStore(roundabout).open()


CHILD = """
import sys
from workstream.jobs.model import Job, JobStatus
from workstream.store.sqlite import SqliteStore

store = SqliteStore(sys.argv[1])
store.open()
with store.transaction() as tx:
    tx.insert(Job(id="from-child", type="echo", payload={"by": "child"},
                  status=JobStatus.PENDING, max_retries=0, created_at=1.5, updated_at=1.5,
                  run_at=1.5))
print("ready", flush=True)
sys.stdin.read()
"""


def test_the_lock_is_released_when_the_holder_is_killed(db_path, opened):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    try:
        readable, _, _ = select.select([child.stdout], [], [], WAIT)
        assert readable, "the child did not open the store in time"
        line = child.stdout.readline()
        assert line == b"ready\n", child.stderr.read() if child.poll() is not None else line

        with pytest.raises(DatabaseInUse, match=f"pid {child.pid}"):
            SqliteStore(db_path).open()

        child.kill()  # SIGKILL: no close(), no cleanup
        assert child.wait(timeout=WAIT) == -9
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=WAIT)
        child.stdin.close()
        child.stdout.close()
        child.stderr.close()

    store = opened()
    found = store.get("from-child")
    assert found is not None
    assert found.payload == {"by": "child"}


# -- migrations -------------------------------------------------------------------------


def recorded_migrations(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()
    finally:
        conn.close()


def test_migrations_are_recorded(opened, db_path):
    opened()
    rows = recorded_migrations(db_path)
    expected = [(version, name) for version, name, _ in load_migrations("sqlite")]
    assert expected, "no migrations found"
    assert [(version, name) for version, name, _ in rows] == expected
    assert expected[0] == (1, "0001_initial.sql")
    assert all(isinstance(applied_at, float) and applied_at > 0 for _, _, applied_at in rows)


def test_migrating_again_applies_nothing(opened):
    store = opened()
    assert store.migrate() == []


def test_reopening_applies_nothing_twice(db_path, opened, caplog):
    first = SqliteStore(db_path)
    first.open()
    insert(first, make_job(1))
    first.close()
    before = recorded_migrations(db_path)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="workstream.store.sqlite"):
        second = opened()
    assert recorded_migrations(db_path) == before
    assert not [r for r in caplog.records if getattr(r, "event", None) == "migration_applied"]
    assert second.get(make_job(1).id) == make_job(1)


def test_a_fresh_database_logs_each_migration(opened, caplog):
    with caplog.at_level(logging.INFO, logger="workstream.store.sqlite"):
        opened()
    applied = [r for r in caplog.records if getattr(r, "event", None) == "migration_applied"]
    assert len(applied) == len(load_migrations("sqlite"))


# -- WAL: readers beside the writer -----------------------------------------------------


def test_readers_on_other_threads_see_committed_data_while_a_write_is_open(opened):
    store = opened()
    committed = make_job(1)
    insert(store, committed)
    uncommitted = make_job(2)
    results: dict[str, object] = {}
    done = threading.Event()

    def read() -> None:
        try:
            results["committed"] = store.get(committed.id)
            results["uncommitted"] = store.get(uncommitted.id)
            results["listed"] = [job.id for job in store.list(JobFilter(order="oldest")).jobs]
            results["pending"] = store.counts(NOW).of(JobStatus.PENDING)
            store.ping()
        except Exception as exc:  # reported below, not lost in the thread
            results["error"] = exc
        finally:
            done.set()

    reader = threading.Thread(target=read)
    with store.transaction() as tx:
        tx.insert(uncommitted)
        reader.start()
        finished_while_writing = done.wait(WAIT)
    reader.join(WAIT)
    assert finished_while_writing
    assert results == {
        "committed": committed,
        "uncommitted": None,
        "listed": [committed.id],
        "pending": 1,
    }
    assert store.get(uncommitted.id) == uncommitted


def test_reads_succeed_while_another_process_holds_the_write_lock(opened, db_path):
    store = opened()
    insert(store, make_job(1))
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE jobs SET status = 'cancelled'")
        assert store.get(make_job(1).id).status is JobStatus.PENDING
        assert store.counts(NOW).ready == 1
        store.ping()
    finally:
        other.execute("ROLLBACK")
        other.close()


# -- busy database ----------------------------------------------------------------------


def test_a_write_while_the_database_is_locked_fails_after_the_busy_timeout(opened, db_path):
    store = opened(SqliteStore(db_path, busy_timeout=0.2))
    job = make_job(1)
    body_ran = False
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught, store.transaction() as tx:
            body_ran = True
            tx.insert(job)
        waited = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not body_ran
    assert 0.15 <= waited < WAIT
    assert caught.value.code == "storage_unavailable"
    assert "busy" in caught.value.message
    assert store.get(job.id) is None
    # Service resumes by itself once the lock is gone.
    insert(store, job)
    assert store.get(job.id) == job


def test_a_database_error_mid_transaction_rolls_back(opened, db_path):
    """A failure at any point inside the transaction leaves nothing behind."""
    store = opened(SqliteStore(db_path, busy_timeout=0.2))
    insert(store, make_job(1))
    with pytest.raises(Conflict), store.transaction() as tx:
        tx.insert(make_job(2))
        tx.insert(make_job(1))  # duplicate id: the database refuses it
    assert store.get(make_job(2).id) is None
    assert [job.id for job in store.list(JobFilter(order="oldest")).jobs] == [make_job(1).id]


# -- error messages ---------------------------------------------------------------------

FORBIDDEN = (
    "select",
    "insert",
    "update",
    "begin",
    "commit",
    "pragma",
    "jobs.",
    "unique",
    "constraint",
    "sqlite",
    "traceback",
    ".db",
)


def assert_client_safe(message: str, path: Path) -> None:
    lowered = message.lower()
    for word in FORBIDDEN:
        assert word not in lowered, (word, message)
    assert str(path) not in message
    assert str(path.parent) not in message
    assert path.name not in message


def test_storage_unavailable_messages_carry_no_sql_and_no_path(opened, db_path, tmp_path):
    messages = []

    store = opened(SqliteStore(db_path, busy_timeout=0.2))
    insert(store, make_job(1))
    with pytest.raises(Conflict) as conflict, store.transaction() as tx:
        tx.insert(make_job(1))
    messages.append(conflict.value.message)

    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable) as caught, store.transaction() as tx:
            tx.insert(make_job(2))
        messages.append(caught.value.message)
    finally:
        other.execute("ROLLBACK")
        other.close()

    not_a_database = tmp_path / "garbage" / "not-a-database.db"
    not_a_database.parent.mkdir()
    not_a_database.write_bytes(b"this is not a database file\n" * 200)
    with pytest.raises(StorageUnavailable) as caught:
        SqliteStore(not_a_database).open()
    messages.append(caught.value.message)
    assert_client_safe(caught.value.message, not_a_database)

    closed = SqliteStore(tmp_path / "closed.db")
    closed.open()
    closed.close()
    with pytest.raises(StorageUnavailable) as caught, closed.transaction():
        pass
    messages.append(caught.value.message)

    assert len(messages) == 4
    for message in messages:
        assert message
        assert_client_safe(message, db_path)


def test_a_failed_open_releases_the_lock(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StorageUnavailable):
        SqliteStore(path).open()
    # Not DatabaseInUse: the failed open did not keep the lock file locked.
    with pytest.raises(StorageUnavailable):
        SqliteStore(path).open()


def test_reads_after_close_are_refused_cleanly(db_path):
    store = SqliteStore(db_path)
    store.open()
    assert store.get("x") is None  # this thread now has a reader connection
    store.close()
    with pytest.raises(StorageUnavailable):
        store.get("x")
    with pytest.raises(StorageUnavailable):
        store.ping()
