"""What only the PostgreSQL store promises: several stores (nodes) on one database —
disjoint claims, admission that does not overshoot capacity, shared idempotency keys,
migrations that do not race — bounded waits and StorageUnavailable when the database is
gone or busy, recovery without reopening, and LISTEN/NOTIFY wake-ups that survive a
killed session. Real PostgreSQL (tests/pg.py), no mocks."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from tests.pg import ScratchDatabase, admin_connect, scratch_database
from tests.support import wait_until
from workstream.errors import ConfigError, Conflict, ServiceBusy, StorageUnavailable
from workstream.jobs import states
from workstream.jobs.listing import JobFilter
from workstream.jobs.model import Job, JobStatus
from workstream.store import store_from_url
from workstream.store.postgres import ADMISSION_LOCK, PostgresStore, describe_url
from workstream.store.schema import load_migrations

NOW = 1_700_000_000.0
WAIT = 10.0  # bound for waits on threads and asynchronous events

PENDING = JobStatus.PENDING
PROCESSING = JobStatus.PROCESSING


def make_job(number: int, **changes) -> Job:
    job = Job(
        id=f"00000000-0000-4000-8000-{number:012d}",
        type="echo",
        payload={"n": number},
        status=PENDING,
        max_retries=3,
        created_at=NOW,
        updated_at=NOW,
        run_at=NOW - 10 + number / 1000,
    )
    return job.replace(**changes)


def insert(store: PostgresStore, *jobs: Job) -> None:
    with store.transaction() as tx:
        for job in jobs:
            tx.insert(job)


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> object:
    """Poll for an asynchronous external event (a notification, a reconnection)."""
    return wait_until(predicate, timeout, what, interval=0.01)


@pytest.fixture
def db(pg_database: ScratchDatabase) -> ScratchDatabase:
    """The session's database, emptied (the schema is kept)."""
    pg_database.reset()
    return pg_database


@pytest.fixture
def opened(db: ScratchDatabase) -> Iterator[Callable[..., PostgresStore]]:
    """`opened(**options)`: an open PostgresStore on the test database (closed at teardown)."""
    stores: list[PostgresStore] = []

    def open_store(url: str | None = None, **options) -> PostgresStore:
        options.setdefault("lock_timeout", 2.0)
        store = PostgresStore(url or db.url, **options)
        store.open()
        stores.append(store)
        return store

    yield open_store
    for store in reversed(stores):
        store.close()


class Wakes:
    """A wake() callback that counts its calls."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.count += 1


# -- the protocol's promises for several nodes ----------------------------------------


def test_the_store_is_shared_not_exclusive(opened):
    first = opened()
    second = opened()  # no lock: another node opens the same database
    assert PostgresStore.exclusive is False
    insert(first, make_job(1))
    assert second.get(make_job(1).id) == make_job(1)


def test_concurrent_claims_on_two_nodes_take_disjoint_jobs(opened):
    node_a, node_b = opened(), opened()
    insert(node_a, *[make_job(n) for n in range(1, 21)])
    with node_a.transaction() as tx_a:
        held = tx_a.claimable(NOW, 5)  # locked until tx_a ends
        result: dict[str, object] = {}

        def claim_on_b() -> None:
            try:
                with node_b.transaction() as tx_b:
                    result["b"] = tx_b.claimable(NOW, 5)
            except Exception as exc:  # reported below
                result["error"] = exc

        other = threading.Thread(target=claim_on_b)
        other.start()
        other.join(WAIT)  # SKIP LOCKED: B does not wait for A's transaction
        assert not other.is_alive()
    assert "error" not in result, result
    a_ids = [job.id for job in held]
    b_ids = [job.id for job in result["b"]]
    assert a_ids == [make_job(n).id for n in range(1, 6)]  # by run_at, then seq
    assert b_ids == [make_job(n).id for n in range(6, 11)]


def test_claim_storm_on_three_nodes_loses_nothing_and_claims_nothing_twice(opened):
    nodes = [opened() for _ in range(3)]
    total = 300
    insert(nodes[0], *[make_job(n) for n in range(1, total + 1)])
    claimed: dict[str, list[str]] = {f"node-{i}": [] for i in range(3)}
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def drain(index: int) -> None:
        owner = f"node-{index}"
        store = nodes[index]
        try:
            start.wait(WAIT)
            while True:
                with store.transaction() as tx:
                    batch = tx.claimable(NOW, 7)
                    for job in batch:
                        taken = states.claim(job, owner=owner, now=NOW, lease=30)
                        assert tx.update(taken, job)
                        claimed[owner].append(job.id)
                if not batch:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not errors, errors
    every = [job_id for ids in claimed.values() for job_id in ids]
    assert len(every) == len(set(every)) == total
    counts = nodes[0].counts(NOW)
    assert counts.by_status == {"processing": total}
    for owner, ids in claimed.items():
        with nodes[0].transaction() as tx:
            assert sorted(job.id for job in tx.processing(owner)) == sorted(ids)


def test_admission_on_several_nodes_never_overshoots_capacity(opened):
    nodes = [opened() for _ in range(4)]
    limit = 25
    numbers = iter(range(1, 10_000))
    numbers_lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(len(nodes))

    def submit_until_full(store: PostgresStore) -> None:
        try:
            start.wait(WAIT)
            while True:
                with numbers_lock:
                    number = next(numbers)
                with store.transaction() as tx:
                    if tx.count_ready(NOW, limit + 1) + 1 > limit:
                        return
                    tx.insert(make_job(number))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit_until_full, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not errors, errors
    assert nodes[0].counts(NOW).ready == limit


def test_admission_waits_for_another_nodes_admission_and_then_sees_it(opened, db):
    node_a, node_b = opened(), opened()
    result: dict[str, object] = {}
    with node_a.transaction() as tx_a:
        assert tx_a.count_ready(NOW, 10) == 0
        tx_a.insert(make_job(1))

        def admit_on_b() -> None:
            with node_b.transaction() as tx_b:
                result["count"] = tx_b.count_ready(NOW, 10)

        other = threading.Thread(target=admit_on_b)
        other.start()
        wait_for(
            lambda: db.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
                (ADMISSION_LOCK,),
            ),
            "node B to wait for the admission lock",
        )
        assert "count" not in result
    other.join(WAIT)
    assert result == {"count": 1}  # B counted A's job, committed while it waited


def test_a_node_stalled_while_admitting_costs_others_their_submissions_not_their_batch(opened):
    """Node A took the admission lock and stopped before COMMIT (SIGSTOP, a long pause).
    Node B's batch waits `lock_timeout` for it, then refuses its submissions (503) but
    still commits the rest of the batch: claims, outcomes and renewals go on."""
    node_a, node_b = opened(), opened(lock_timeout=0.5)
    insert(node_b, make_job(1))
    with node_a.transaction() as tx_a:
        tx_a.count_ready(NOW, 10)  # holds the admission lock until A's transaction ends
        with node_b.transaction() as tx_b:
            [job] = tx_b.claimable(NOW, 10)
            assert tx_b.update(states.claim(job, owner="node-b", now=NOW, lease=30.0), job)
            with pytest.raises(ServiceBusy, match="held up by another node"):
                tx_b.count_ready(NOW, 10)
            tx_b.insert(make_job(2, run_at=NOW + 3600))  # the transaction is still usable
    claimed = node_b.get(make_job(1).id)
    assert claimed is not None and (claimed.status, claimed.owner) == (PROCESSING, "node-b")
    assert node_b.get(make_job(2).id) is not None


def test_an_idempotency_key_is_unique_across_nodes_and_the_transaction_stays_usable(opened):
    node_a, node_b = opened(), opened()
    insert(node_a, make_job(1, idempotency_key="order-7"))
    with node_b.transaction() as tx:
        with pytest.raises(Conflict):
            tx.insert(make_job(2, idempotency_key="order-7"))
        with pytest.raises(Conflict):
            tx.insert(make_job(1))  # the same id
        tx.insert(make_job(3))  # still usable
        assert tx.find_by_idempotency_key("order-7") == make_job(1, idempotency_key="order-7")
    assert node_a.get(make_job(3).id) == make_job(3)
    assert node_a.get(make_job(2).id) is None


def test_get_in_a_transaction_locks_the_row_against_other_nodes(opened):
    node_a, node_b = opened(), opened(lock_timeout=0.3)
    job = make_job(1)
    insert(node_a, job)
    with node_a.transaction() as tx_a:
        assert tx_a.get(job.id) == job
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught, node_b.transaction() as tx_b:
            tx_b.get(job.id)
        waited = time.monotonic() - started
    assert 0.2 <= waited < WAIT
    assert "busy" in caught.value.message
    with node_b.transaction() as tx_b:  # and B works again once A is done
        assert tx_b.get(job.id) == job


def test_expired_leases_and_due_retries_skip_rows_another_node_holds(opened):
    node_a, node_b = opened(), opened()
    expired = make_job(1, status=PROCESSING, attempts=1, owner="gone", lease_expires_at=NOW - 1)
    retry = make_job(2, status=JobStatus.FAILED, attempts=1, run_at=NOW - 1, last_error="x")
    insert(node_a, expired, retry)
    with node_a.transaction() as tx_a:
        assert [job.id for job in tx_a.expired_leases(NOW, 10)] == [expired.id]
        assert [job.id for job in tx_a.due_retries(NOW, 10)] == [retry.id]
        with node_b.transaction() as tx_b:
            assert tx_b.expired_leases(NOW, 10) == []
            assert tx_b.due_retries(NOW, 10) == []


# -- migrations ---------------------------------------------------------------------------


def test_migrations_are_recorded_once_and_not_reapplied(opened, db):
    store = opened()
    rows = db.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY 1")
    expected = [(version, name) for version, name, _ in load_migrations("postgres")]
    assert expected[0] == (1, "0001_initial.sql")
    assert [(version, name) for version, name, _ in rows] == expected
    assert all(isinstance(applied_at, float) and applied_at > 0 for *_, applied_at in rows)
    assert store.migrate() == []


def test_nodes_starting_together_on_a_fresh_database_migrate_once(caplog):
    with scratch_database("ws_migrate") as fresh:
        stores = [PostgresStore(fresh.url) for _ in range(4)]
        errors: list[BaseException] = []
        start = threading.Barrier(len(stores))

        def open_store(store: PostgresStore) -> None:
            try:
                start.wait(WAIT)
                store.open()
            except BaseException as exc:
                errors.append(exc)

        with caplog.at_level(logging.INFO, logger="workstream.store.postgres"):
            threads = [threading.Thread(target=open_store, args=(s,)) for s in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT * 3)
        try:
            assert not errors, errors
            applied = [r for r in caplog.records if getattr(r, "event", "") == "migration_applied"]
            assert len(applied) == len(load_migrations("postgres"))
            assert fresh.execute("SELECT count(*) FROM schema_migrations")[0][0] == len(
                load_migrations("postgres")
            )
            insert(stores[0], make_job(1))
            assert stores[3].get(make_job(1).id) == make_job(1)
        finally:
            for store in stores:
                store.close()


def test_payload_and_result_are_text_columns_not_jsonb(opened, db):
    opened()
    types = dict(
        db.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'jobs'"
        )
    )
    assert types["payload"] == types["result"] == "text"
    assert types["seq"] == "bigint"
    assert types["created_at"] == "double precision"


# -- text PostgreSQL cannot hold as it is --------------------------------------------------


def test_nul_and_the_escape_character_round_trip_in_every_text_column(opened):
    store = opened()
    odd = "a\x00b\ue000c\ue0000d\x00"
    job = make_job(
        1,
        type="type\x00" + odd,
        last_error="err " + odd,
        idempotency_key="key " + odd,
        request_hash="hash " + odd,
        payload={"text": odd},
    )
    insert(store, job)
    assert store.get(job.id) == job
    with store.transaction() as tx:
        assert tx.find_by_idempotency_key("key " + odd) == job
        assert tx.find_by_idempotency_key("key a") is None
    assert store.list(JobFilter(order="oldest", job_type="type\x00" + odd)).jobs == [job]
    assert store.list(JobFilter(order="oldest", job_type="type")).jobs == []
    assert store.get("id\x00with nul") is None  # a lookup with NUL is a miss, not an error


def test_a_value_postgresql_refuses_propagates_and_the_store_goes_on(opened):
    store = opened()
    too_big = make_job(1, attempts=2**40)  # beyond an integer column
    with pytest.raises(psycopg.errors.NumericValueOutOfRange), store.transaction() as tx:
        tx.insert(make_job(2))
        tx.insert(too_big)
    assert store.get(make_job(2).id) is None
    insert(store, make_job(3))
    assert store.get(make_job(3).id) == make_job(3)


def test_a_refused_value_in_an_update_of_a_held_row_fails_the_batch_at_commit(opened):
    store = opened()
    job = make_job(1)
    insert(store, job)
    with pytest.raises(psycopg.errors.NumericValueOutOfRange), store.transaction() as tx:
        held = tx.get(job.id)
        assert tx.update(held.replace(attempts=2**40), held)  # decided here, sent later
    assert store.get(job.id) == job
    insert(store, make_job(2))  # the writer connection is fine
    assert store.get(make_job(2).id) == make_job(2)


# -- held rows: fenced updates decided in the transaction, sent together -----------------


def test_updates_of_held_rows_are_seen_by_the_transactions_own_reads(opened):
    store = opened()
    insert(store, *[make_job(n) for n in range(1, 4)])
    with store.transaction() as tx:
        taken = []
        for job in tx.claimable(NOW, 10):
            claimed = states.claim(job, owner="node-a", now=NOW, lease=30)
            assert tx.update(claimed, job)
            taken.append(claimed)
        assert tx.get(taken[0].id) == taken[0]  # from the pending write
        assert tx.claimable(NOW, 10) == []  # the writes reached the database first
        assert [job.id for job in tx.processing("node-a")] == [job.id for job in taken]
        # A second write to the same row in the same transaction, fenced on the first.
        done = states.complete(taken[0], attempt=1, owner="node-a", result=[1], now=NOW)
        assert tx.update(taken[0], make_job(1)) is False  # stale fence: refused here
        assert tx.update(done, taken[0])
    assert store.get(taken[0].id) == done
    assert [store.get(job.id) for job in taken[1:]] == taken[1:]


def test_a_held_row_made_pending_again_notifies_other_nodes(opened):
    node_a, node_b = opened(), opened()
    running = make_job(1, status=PROCESSING, attempts=1, owner="node-a", lease_expires_at=NOW)
    insert(node_a, running)
    wakes = Wakes()
    node_b.watch(wakes)
    wait_for(lambda: wakes.count >= 1, "the wake-up after connecting")
    with node_a.transaction() as tx:
        held = tx.get(running.id)
        assert tx.update(states.release(held, attempt=1, owner="node-a", now=NOW), held)
    wait_for(lambda: wakes.count >= 2, "a wake-up for the released job")


def test_a_held_row_that_changed_anyway_aborts_the_transaction(opened):
    """Defence in depth: if a held row did not match when the pending writes are sent (a
    bug), the transaction fails rather than losing the write silently."""
    store = opened()
    job = make_job(1)
    insert(store, job)
    with pytest.raises(RuntimeError, match="held rows changed"), store.transaction() as tx:
        tx.get(job.id)
        wrong = job.replace(attempts=7)
        tx._held[job.id] = (wrong.status.value, wrong.attempts, None)  # corrupt the record
        assert tx.update(wrong.replace(status=PROCESSING), wrong)
    assert store.get(job.id) == job


class CountingConnection:
    """The writer connection, recording each round trip a transaction makes: the first word
    of each statement sent in it (a pipeline is one round trip)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self.trips: list[list[str]] = []
        self._trip: list[str] | None = None

    def _sent(self, word: str) -> None:
        if self._trip is None:
            self.trips.append([word])
        else:
            self._trip.append(word)

    def execute(self, query, params=None):
        self._sent(str(query).split()[0])
        return self._conn.execute(query, params)

    def cursor(self):
        counting, cursor = self, self._conn.cursor()

        class Cursor:
            def executemany(self, query, rows):
                rows = list(rows)
                counting._sent(f"{len(rows)} x {str(query).split()[0]}")
                return cursor.executemany(query, rows)

        return Cursor()

    @contextlib.contextmanager
    def pipeline(self):
        self._trip = []
        try:
            with self._conn.pipeline() as pipeline:
                yield pipeline
        finally:
            self.trips.append(self._trip)
            self._trip = None

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_outcomes_of_locked_rows_cost_one_round_trip_together(opened):
    """Completions of jobs claimed in earlier batches: one SELECT ... FOR UPDATE for all
    of them (with BEGIN), their updates sent with COMMIT; not one UPDATE round trip each."""
    store = opened()
    running = [
        make_job(n, status=PROCESSING, attempts=1, owner="node-a", lease_expires_at=NOW + 30)
        for n in range(1, 21)
    ]
    insert(store, *running)
    stolen = running[7]
    with store.transaction() as tx:  # another node took this one over
        tx.update(stolen.replace(owner="node-b", attempts=2), stolen)
    done = [states.complete(job, attempt=1, owner="node-a", result=n, now=NOW) for n, job in
            enumerate(running)]  # fmt: skip
    with store.transaction() as tx:
        counting = tx._conn = CountingConnection(tx._conn)
        tx.lock([job.id for job in running])
        results = [tx.update(after, before) for after, before in zip(done, running, strict=True)]
        assert counting.trips == [["BEGIN", "SELECT"]]
    assert results == [job.id != stolen.id for job in running]
    assert counting.trips == [["BEGIN", "SELECT"], ["19 x WITH", "COMMIT"]]
    for before, after in zip(running, done, strict=True):
        if before.id == stolen.id:
            assert store.get(before.id) == stolen.replace(owner="node-b", attempts=2)
        else:
            assert store.get(before.id) == after


def test_a_batch_of_outcomes_and_a_claim_is_three_round_trips(opened):
    store = opened()
    running = [make_job(n, status=PROCESSING, attempts=1, owner="node-a") for n in range(1, 4)]
    waiting = [make_job(n) for n in range(4, 8)]
    insert(store, *running, *waiting)
    with store.transaction() as tx:
        counting = tx._conn = CountingConnection(tx._conn)
        tx.lock([job.id for job in running])  # BEGIN with the lock
        for job in running:
            assert tx.update(
                states.complete(job, attempt=1, owner="node-a", result=0, now=NOW), job
            )
        claimed = []
        for job in tx.claimable(NOW, 10):  # the outcomes' updates go first
            claimed.append(states.claim(job, owner="node-a", now=NOW, lease=30))
            assert tx.update(claimed[-1], job)
    assert counting.trips == [["BEGIN", "SELECT"], ["3 x WITH", "SELECT"], ["4 x WITH", "COMMIT"]]
    assert [store.get(job.id) for job in waiting] == claimed
    assert {store.get(job.id).status for job in running} == {JobStatus.COMPLETED}


def test_an_empty_transaction_still_reaches_the_database_in_one_round_trip(opened, db):
    store = opened()
    with store.transaction() as tx:
        counting = tx._conn = CountingConnection(tx._conn)
    assert counting.trips == [["BEGIN", "COMMIT"]]
    allow(db, connections=False)
    try:
        db.terminate()
        with pytest.raises(StorageUnavailable), store.transaction():
            pass  # a batch with nothing to write still tells that the database is gone
    finally:
        allow(db, connections=True)
    with store.transaction():
        pass


def test_lock_holds_the_rows_against_other_nodes_until_commit(opened):
    """What makes deciding the fence locally exact: nobody else can change a locked row."""
    node_a, node_b = opened(), opened(lock_timeout=0.3)
    running = make_job(1, status=PROCESSING, attempts=1, owner="node-a", lease_expires_at=NOW)
    insert(node_a, running)
    recovered = states.recover(running, now=NOW, reason="lease expired")
    done = states.complete(running, attempt=1, owner="node-a", result="r", now=NOW)
    with node_a.transaction() as tx_a:
        tx_a.lock([running.id])
        started = time.monotonic()
        with pytest.raises(StorageUnavailable), node_b.transaction() as tx_b:
            tx_b.update(recovered, running)  # node B's sweeper, without SKIP LOCKED
        assert 0.2 <= time.monotonic() - started < WAIT
        assert tx_a.update(done, running)
    with node_b.transaction() as tx_b:
        assert tx_b.update(recovered, running) is False  # A's outcome landed first
    assert node_b.get(running.id) == done


def test_a_row_another_node_changed_before_the_lock_is_a_miss(opened):
    node_a, node_b = opened(), opened()
    running = make_job(1, status=PROCESSING, attempts=1, owner="node-a", lease_expires_at=NOW)
    insert(node_a, running)
    recovered = states.recover(running, now=NOW, reason="lease expired")
    reclaimed = states.claim(recovered, owner="node-b", now=NOW, lease=30)
    with node_b.transaction() as tx_b:
        assert tx_b.update(recovered, running)
        assert tx_b.update(reclaimed, recovered)
    late = states.complete(running, attempt=1, owner="node-a", result="late", now=NOW)
    with node_a.transaction() as tx_a:
        tx_a.lock([running.id])
        assert tx_a.update(late, running) is False
        assert tx_a.get(running.id) == reclaimed
    assert node_a.get(running.id) == reclaimed


# -- outages: bounded, StorageUnavailable, recovery without reopening ----------------------

FORBIDDEN = ("select", "insert", "update", "begin", "commit", "jobs", "127.0.0.1", "5432")


def assert_client_safe(message: str, db: ScratchDatabase) -> None:
    lowered = message.lower()
    for word in FORBIDDEN:
        assert word not in lowered, (word, message)
    assert db.name not in message


def test_a_closed_port_fails_open_quickly_naming_the_database_without_password():
    url = "postgresql://postgres:s3cret-pw@127.0.0.1:1/ws_nowhere"
    store = PostgresStore(url, connect_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        store.open()
    assert time.monotonic() - started < 5.0
    message = caught.value.message
    assert "ws_nowhere" in message and "127.0.0.1:1" in message
    assert "s3cret" not in message and "\n" not in message
    assert "connection refused" in message
    with pytest.raises(StorageUnavailable, match="closed"):
        store.get("x")
    with pytest.raises(StorageUnavailable, match="closed"), store.transaction():
        pass
    store.close()  # harmless


def test_a_database_that_does_not_exist_is_reported_as_such():
    store = PostgresStore("postgresql://postgres@127.0.0.1:5432/ws_no_such_database_here")
    with pytest.raises(StorageUnavailable, match="does not exist"):
        store.open()


def test_killed_sessions_cost_at_most_one_failure_and_then_the_store_works(opened, db):
    store = opened()
    insert(store, make_job(1))
    assert store.get(make_job(1).id) == make_job(1)  # a pooled reader exists now
    assert db.terminate() >= 2  # writer and reader
    failures = 0
    for number in (2, 3):
        try:
            insert(store, make_job(number))
        except StorageUnavailable:
            failures += 1
    assert failures <= 1
    assert store.get(make_job(3).id) == make_job(3)
    store.ping()
    assert store.counts(NOW).ready >= 2


def test_a_writer_killed_while_idle_is_replaced_without_failing_the_next_batch(opened, db, caplog):
    """BEGIN goes with the first statement: a dead idle connection is found there, before
    anything of the batch ran, and that round trip goes again on a new connection."""
    store = opened()
    insert(store, make_job(1))
    db.terminate()
    caplog.clear()
    logs = caplog.at_level(logging.WARNING, logger="workstream.store.postgres")
    with logs, store.transaction() as tx:
        assert tx.get(make_job(1).id) == make_job(1)
        tx.insert(make_job(2))
    ours = [r for r in caplog.records if r.name == "workstream.store.postgres"]
    assert [getattr(r, "event", "") for r in ours] == ["storage_reconnected"]
    assert store.get(make_job(2).id) == make_job(2)


def test_a_session_killed_mid_transaction_fails_that_batch_only(opened, db, caplog):
    store = opened()
    insert(store, make_job(1))
    with pytest.raises(StorageUnavailable) as caught, store.transaction() as tx:
        tx.insert(make_job(2))
        db.terminate()
        tx.get(make_job(1).id)
    assert_client_safe(caught.value.message, db)
    assert store.get(make_job(2).id) is None  # rolled back with the session
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="workstream.store.postgres"):
        insert(store, make_job(3))  # the next batch reconnects by itself
    assert [getattr(r, "event", "") for r in caplog.records] == ["storage_reconnected"]
    assert [job.id for job in store.list(JobFilter(order="oldest")).jobs] == [
        make_job(1).id,
        make_job(3).id,
    ]


def test_a_lock_held_outside_fails_the_write_after_the_lock_timeout(opened, db):
    # A row lock (the admission lock has its own test: only submissions are refused).
    store = opened(lock_timeout=0.3)
    job = make_job(1)
    insert(store, job)
    with db.connect() as other:
        other.execute("BEGIN")
        other.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job.id,))
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught, store.transaction() as tx:
            tx.get(job.id)
        assert 0.2 <= time.monotonic() - started < WAIT
        other.execute("ROLLBACK")
    assert "busy" in caught.value.message
    assert_client_safe(caught.value.message, db)
    with store.transaction() as tx:
        assert tx.get(job.id) == job


def test_a_slow_statement_is_cut_by_the_statement_timeout(opened, db):
    store = opened(statement_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="timed out"):
        store._read("SELECT pg_sleep(5)", ())
    assert time.monotonic() - started < 3.0
    store.ping()


def test_reads_while_the_pool_cannot_connect_fail_within_the_pool_timeout(opened, db):
    store = opened(pool_timeout=0.5)
    store.ping()
    allow(db, False)
    try:
        db.terminate()
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            store.get("x")
        assert time.monotonic() - started < 3.0
        assert_client_safe(caught.value.message, db)
        with pytest.raises(StorageUnavailable):
            insert(store, make_job(1))
    finally:
        allow(db, True)
    wait_for(lambda: _works(store), "the store to work again after the outage")
    assert store.get(make_job(2).id) == make_job(2)


def allow(db: ScratchDatabase, connections: bool) -> None:
    """Open or close the database to new sessions (an outage that refuses connections)."""
    with admin_connect() as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(db.name), sql.Literal(connections)
            )
        )


def _works(store: PostgresStore) -> bool:
    try:
        insert(store, make_job(2))
        store.ping()
    except StorageUnavailable:
        return False
    return True


# -- wake-ups across nodes ------------------------------------------------------------------


def test_a_job_committed_on_one_node_wakes_another_within_a_second(opened):
    node_a, node_b = opened(), opened()
    wakes = Wakes()
    node_b.watch(wakes)
    wait_for(lambda: wakes.count >= 1, "the wake-up after connecting")
    before = wakes.count
    insert(node_a, make_job(1))
    committed = time.monotonic()
    wait_for(lambda: wakes.count > before, "a wake-up for the new job", timeout=1.0)
    assert time.monotonic() - committed < 1.0


def test_a_node_is_not_woken_by_its_own_work_nor_by_rolled_back_work(opened):
    node_a, node_b = opened(), opened()
    wakes = Wakes()
    node_a.watch(wakes)
    wait_for(lambda: wakes.count >= 1, "the wake-up after connecting")
    insert(node_a, make_job(1))  # its own: no wake-up
    with pytest.raises(RuntimeError), node_b.transaction() as tx:
        tx.insert(make_job(2))
        raise RuntimeError("rolled back: no notification")
    insert(node_b, make_job(3))  # the only one that counts
    wait_for(lambda: wakes.count >= 2, "the wake-up for node B's job")
    # Notifications arrive in commit order on one connection: had the first two woken A,
    # the count would be past 2 by the time B's arrived.
    assert wakes.count == 2


def test_work_made_pending_again_wakes_other_nodes(opened):
    node_a, node_b = opened(), opened()
    running = make_job(1, status=PROCESSING, attempts=1, owner="node-a", lease_expires_at=NOW)
    insert(node_a, running)
    wakes = Wakes()
    node_b.watch(wakes)
    wait_for(lambda: wakes.count >= 1, "the wake-up after connecting")
    with node_a.transaction() as tx:
        back = states.release(running, attempt=1, owner="node-a", now=NOW)
        assert tx.update(back, running)
    wait_for(lambda: wakes.count >= 2, "a wake-up for the released job")


def test_the_listener_reconnects_after_its_session_is_killed(opened, db, caplog):
    node_a = opened()
    node_b = opened(listen_backoff=(0.05, 0.5))
    wakes = Wakes()
    with caplog.at_level(logging.WARNING, logger="workstream.store.postgres"):
        node_b.watch(wakes)
        wait_for(lambda: wakes.count >= 1, "the wake-up after connecting")
        listeners = wait_for(
            lambda: [
                pid
                for (pid,) in db.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                    "AND query ILIKE 'LISTEN%%'",
                    (db.name,),
                )
            ],
            "the listening session",
        )
        assert db.terminate(listeners) == 1
        wait_for(lambda: wakes.count >= 2, "the wake-up after reconnecting")
        assert any(getattr(r, "event", "") == "listen_reconnected" for r in caplog.records)
    before = wakes.count
    insert(node_a, make_job(1))
    wait_for(lambda: wakes.count > before, "a wake-up on the new listening session")


def test_the_listener_comes_back_after_an_outage_that_refused_connections(opened, db, caplog):
    node_a = opened()
    node_b = opened(listen_backoff=(0.05, 0.2))
    wakes = Wakes()
    node_b.watch(wakes)
    wait_for(lambda: wakes.count >= 1, "the wake-up after connecting")
    with caplog.at_level(logging.WARNING, logger="workstream.store.postgres"):
        allow(db, False)
        try:
            db.terminate()
            wait_for(
                lambda: any(getattr(r, "event", "") == "listen_failed" for r in caplog.records),
                "a failed attempt to listen again during the outage",
            )
        finally:
            allow(db, True)
        wait_for(lambda: wakes.count >= 2, "the wake-up after the outage")
    assert any(getattr(r, "event", "") == "listen_reconnected" for r in caplog.records)
    before = wakes.count
    wait_for(lambda: _works(node_a), "node A to write again")
    wait_for(lambda: wakes.count > before, "a wake-up for node A's job")


def test_close_stops_the_listener_promptly(db):
    store = PostgresStore(db.url)
    store.open()
    wakes = Wakes()
    store.watch(wakes)
    wait_for(lambda: wakes.count >= 1, "the wake-up after connecting")
    listener = store._listener
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 2.0
    assert listener is not None and not listener.is_alive()


def test_watch_before_open_starts_listening_at_open(db):
    store = PostgresStore(db.url)
    wakes = Wakes()
    store.watch(wakes)
    assert store._listener is None
    store.open()
    try:
        wait_for(lambda: wakes.count >= 1, "the wake-up after connecting")
    finally:
        store.close()


# -- URLs --------------------------------------------------------------------------------


def test_store_from_url_builds_a_postgres_store_for_both_schemes():
    for scheme in ("postgresql", "postgres"):
        store = store_from_url(f"{scheme}://postgres@127.0.0.1:5432/ws_x")
        assert isinstance(store, PostgresStore)


def test_an_invalid_url_is_a_config_error_without_the_password():
    with pytest.raises(ConfigError) as caught:
        PostgresStore("postgresql://user:pw-secret@host:notaport/db?bogus_option=1")
    assert "pw-secret" not in caught.value.message


def test_describe_url_drops_the_password():
    assert (
        describe_url("postgres://app:hunter2@db.example:6543/queue")
        == "postgresql://app@db.example:6543/queue"
    )


class FreezingProxy:
    """TCP between the store and PostgreSQL that can freeze: connections stay open (the
    kernel still acknowledges what is sent) but nothing is relayed, as with a hung server
    or pooler. Server-side timeouts cannot fire then; only the store's watchdog can."""

    def __init__(self) -> None:
        self.frozen = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", 5432))
            self._sockets += [client, server]
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        while True:
            if self.frozen.is_set():
                if self._closed:
                    return
                time.sleep(0.05)  # hold everything, answer nothing
                continue
            try:
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
            except OSError:
                return

    _closed = False

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_frozen_server_cannot_hold_reads_writes_or_close_past_their_bounds(db):
    proxy = FreezingProxy()
    url = db.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    store = PostgresStore(url, statement_timeout=0.5, lock_timeout=0.5, connect_timeout=1.0)
    try:
        store.open()
        job = make_job(1)
        insert(store, job)
        assert store.get(job.id) == job
        proxy.frozen.set()
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            store.get(job.id)  # read bound: statement_timeout + 2 s
        assert time.monotonic() - started < 6.0
        started = time.monotonic()
        with pytest.raises(StorageUnavailable), store.transaction() as tx:
            tx.insert(make_job(2))  # batch bound: 3 x 0.5 s + 2 s
        assert time.monotonic() - started < 8.0
        assert store._watchdog.cut >= 2
    finally:
        started = time.monotonic()
        store.close()
        assert time.monotonic() - started < 15.0
        proxy.close()
