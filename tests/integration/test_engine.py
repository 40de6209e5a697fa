"""The engine end to end in one process: real actors, a real SQLite file."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.integration.conftest import EngineFactory, StoreFactory
from tests.support import make_job
from workstream.errors import (
    DatabaseInUse,
    IllegalTransition,
    QueueFull,
    ServiceBusy,
    ShuttingDown,
    StorageUnavailable,
)
from workstream.handlers import Handler
from workstream.jobs.events import JOB_COMPLETED, JOB_FAILED, JOB_RECOVERED, JOB_STARTED
from workstream.jobs.listing import JobFilter
from workstream.jobs.model import JobStatus
from workstream.jobs.spec import JobSpec


class Flaky:
    """Fails the first `failures` attempts of each job, then returns the attempt number."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, payload: Any, job: Any) -> Any:
        with self._lock:
            self.calls[job.id] += 1
        if job.attempt <= self.failures:
            raise RuntimeError(f"attempt {job.attempt} failed")
        return {"attempt": job.attempt}


class Gate:
    """A handler that blocks until the test opens the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def __call__(self, payload: Any, job: Any) -> str:
        assert self.open.wait(30), "gate never opened"
        return "through"


def stored(new_store: StoreFactory, job_id: str) -> Any:
    """Read a job through a store handle of its own (the engine may be stopped)."""
    store = new_store()
    store.open()
    try:
        return store.get(job_id)
    finally:
        store.close()


def test_a_thousand_jobs_complete(start_engine: EngineFactory) -> None:
    engine, watcher = start_engine()
    ids = []
    for start in range(0, 1000, 100):
        specs = [JobSpec("echo", {"n": n}) for n in range(start, start + 100)]
        ids += [job.id for job in engine.jobs.submit(specs, batch=True).jobs]
    watcher.wait_for(JOB_COMPLETED, 1000)
    counts = engine.jobs.count_jobs()
    assert counts.of(JobStatus.COMPLETED) == 1000
    assert counts.ready == 0
    sample = engine.jobs.get(ids[537])
    assert sample.result == {"n": 537} and sample.attempts == 1
    assert engine.jobs.stats()["jobs_completed"] == 1000


def test_an_always_failing_job_runs_one_plus_max_retries_times(
    start_engine: EngineFactory,
) -> None:
    flaky = Flaky(failures=99)
    engine, watcher = start_engine([Handler("flaky", flaky)])
    [job] = engine.jobs.submit([JobSpec("flaky", max_retries=2)]).jobs
    watcher.wait_for(JOB_FAILED, final=True)
    done = engine.jobs.get(job.id)
    assert flaky.calls[job.id] == 3
    assert done.status is JobStatus.FAILED and done.run_at is None
    assert done.attempts == 3
    assert done.last_error == "RuntimeError: attempt 3 failed"
    stats = engine.jobs.stats()
    assert (stats["jobs_failed"], stats["jobs_retried"], stats["job_attempts_failed"]) == (1, 2, 3)


def test_a_job_that_fails_twice_then_succeeds_completes_on_attempt_three(
    start_engine: EngineFactory,
) -> None:
    flaky = Flaky(failures=2)
    engine, watcher = start_engine([Handler("flaky", flaky)])
    [job] = engine.jobs.submit([JobSpec("flaky")]).jobs
    watcher.wait_for(JOB_COMPLETED)
    done = engine.jobs.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 3
    assert done.result == {"attempt": 3}
    assert done.last_error == "RuntimeError: attempt 2 failed"  # kept after the success


def test_capacity_refuses_past_its_limit_and_stores_nothing_refused(
    start_engine: EngineFactory,
) -> None:
    gate = Gate()
    engine, watcher = start_engine([Handler("gate", gate)], worker_count=1, job_queue_capacity=3)
    try:
        engine.jobs.submit([JobSpec("gate")])
        watcher.wait_for(JOB_STARTED)  # the only worker is busy: nothing else leaves
        engine.jobs.submit([JobSpec("gate"), JobSpec("gate")])
        engine.jobs.submit([JobSpec("gate", run_at=9e9)])  # delayed: not counted
        engine.jobs.submit([JobSpec("gate")])
        with pytest.raises(QueueFull) as one:
            engine.jobs.submit([JobSpec("gate")])
        with pytest.raises(QueueFull) as two:
            engine.jobs.submit([JobSpec("gate")] * 2, batch=True)
        # One job started while the engine watched (at least a second is counted), so
        # places free at most once a second: two jobs need at least two.
        assert 1 <= one.value.retry_after <= 10
        assert 2 <= two.value.retry_after <= 10
        assert len(engine.jobs.list(JobFilter(order="oldest", limit=1000)).jobs) == 5
        assert engine.jobs.stats()["jobs_rejected"] == 3
    finally:
        gate.open.set()
    watcher.wait_for(JOB_COMPLETED, 4)


def test_cancel_and_manual_retry_obey_the_table(start_engine: EngineFactory) -> None:
    flaky = Flaky(failures=1)
    engine, watcher = start_engine([Handler("flaky", flaky)])
    [later] = engine.jobs.submit([JobSpec("echo", run_at=9e9)]).jobs
    assert engine.jobs.cancel(later.id).status is JobStatus.CANCELLED
    with pytest.raises(IllegalTransition):
        engine.jobs.cancel(later.id)
    with pytest.raises(IllegalTransition):
        engine.jobs.retry(later.id)
    [job] = engine.jobs.submit([JobSpec("flaky", max_retries=0)]).jobs
    watcher.wait_for(JOB_FAILED, final=True)
    again = engine.jobs.retry(job.id)
    assert again.status is JobStatus.PENDING
    watcher.wait_for(JOB_COMPLETED)
    done = engine.jobs.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    with pytest.raises(IllegalTransition):
        engine.jobs.retry(job.id)
    with pytest.raises(IllegalTransition):
        engine.jobs.cancel(job.id)


def test_after_a_manual_retry_a_handler_knows_its_attempt_within_the_new_budget(
    start_engine: EngineFactory,
) -> None:
    seen: list[tuple[int, int, bool]] = []

    def always_fails(payload: Any, job: Any) -> Any:
        seen.append((job.attempt, job.attempt_in_budget, job.is_last_attempt))
        raise RuntimeError("no")

    engine, watcher = start_engine([Handler("fails", always_fails)])
    [job] = engine.jobs.submit([JobSpec("fails", max_retries=1)]).jobs
    watcher.wait_for(JOB_FAILED, final=True)
    engine.jobs.retry(job.id)
    watcher.wait_for(JOB_FAILED, 2, final=True)
    assert seen == [(1, 1, False), (2, 2, True), (3, 1, False), (4, 2, True)]


def test_a_delayed_job_starts_at_its_time_not_at_the_next_sweep(
    start_engine: EngineFactory,
) -> None:
    engine, watcher = start_engine(sweeper_interval=600.0)
    [job] = engine.jobs.submit([JobSpec("echo", {"late": True}, run_at=_now() + 0.3)]).jobs
    watcher.wait_for(JOB_COMPLETED, timeout=10)
    done = engine.jobs.get(job.id)
    assert done.started_at is not None and done.started_at >= job.run_at


def test_a_retry_starts_at_its_backoff_not_at_the_next_sweep(
    start_engine: EngineFactory,
) -> None:
    flaky = Flaky(failures=1)
    engine, watcher = start_engine(
        [Handler("flaky", flaky)], sweeper_interval=600.0, retry_backoff=0.3
    )
    [job] = engine.jobs.submit([JobSpec("flaky")]).jobs
    watcher.wait_for(JOB_COMPLETED, timeout=10)  # not 600 s: the sweep never came
    [failed] = [event for event in watcher.events if event.kind == JOB_FAILED]
    assert failed.run_at is not None and not failed.final
    done = engine.jobs.get(job.id)
    assert done.attempts == 2
    assert done.started_at is not None and failed.run_at <= done.started_at < failed.run_at + 3


def test_a_handler_raising_system_exit_fails_its_attempt_and_nothing_stops(
    start_engine: EngineFactory,
) -> None:
    def exits(payload: Any, job: Any) -> None:
        raise SystemExit(1)

    engine, watcher = start_engine([Handler("exits", exits)])
    [job] = engine.jobs.submit([JobSpec("exits", max_retries=0)]).jobs
    watcher.wait_for(JOB_FAILED, final=True)
    assert engine.jobs.get(job.id).last_error == "SystemExit: 1"
    assert engine.jobs.health().ok
    engine.jobs.submit([JobSpec("echo")])
    watcher.wait_for(JOB_COMPLETED)


def test_stop_waits_for_running_jobs_that_finish_in_time(start_engine: EngineFactory) -> None:
    gate = Gate()
    engine, watcher = start_engine([Handler("gate", gate)], shutdown_timeout=30.0)
    engine.jobs.submit([JobSpec("gate")])
    watcher.wait_for(JOB_STARTED)
    result: list[Any] = []
    stopper = threading.Thread(target=lambda: result.append(engine.stop()))
    stopper.start()
    # Admission and hand-out close first, while the job still runs.
    assert engine.actors.handout_stopped.wait(5)
    with pytest.raises(ShuttingDown):
        engine.jobs.submit([JobSpec("echo")])
    gate.open.set()
    stopper.join(30)
    [summary] = result
    assert (summary.running_at_start, summary.finished_during_drain) == (1, 1)
    assert summary.returned_to_pending == 0 and summary.drained


def test_stop_returns_jobs_still_running_at_the_timeout_uncounted(
    start_engine: EngineFactory, new_store: StoreFactory
) -> None:
    gate = Gate()
    engine, watcher = start_engine([Handler("gate", gate)], shutdown_timeout=0.2)
    try:
        [job] = engine.jobs.submit([JobSpec("gate")]).jobs
        watcher.wait_for(JOB_STARTED)
        summary = engine.stop()
    finally:
        gate.open.set()
    assert summary.returned_to_pending == 1 and not summary.drained
    back = stored(new_store, job.id)
    assert back.status is JobStatus.PENDING
    assert back.attempts == 0  # the interrupted attempt is not counted


def test_jobs_left_processing_by_a_crash_are_recovered_and_finish(
    start_engine: EngineFactory, new_store: StoreFactory
) -> None:
    # Their owner is gone and their leases ran out: every store recovers them at start-up
    # (SQLite every `processing` job, PostgreSQL those whose lease expired).
    store = new_store()
    store.open()
    gone = {"status": JobStatus.PROCESSING, "owner": "dead", "lease_expires_at": _now() - 1}
    with store.transaction() as tx:
        tx.insert(make_job("crashed-1", attempts=1, now=_now(), **gone))
        tx.insert(make_job("crashed-2", attempts=4, now=_now(), **gone))
    store.close()
    engine, watcher = start_engine()
    assert engine.recovered == 2
    watcher.wait_for(JOB_COMPLETED)
    first = engine.jobs.get("crashed-1")
    assert first.status is JobStatus.COMPLETED and first.attempts == 2
    second = engine.jobs.get("crashed-2")  # 1 + 3 runs used: out of attempts
    assert second.status is JobStatus.FAILED and second.run_at is None
    assert "interrupted" in (second.last_error or "")
    assert watcher.count(JOB_RECOVERED) == 2


def test_a_second_engine_on_the_same_sqlite_file_refuses_to_start(
    start_sqlite_engine: EngineFactory,
) -> None:
    start_sqlite_engine()
    with pytest.raises(DatabaseInUse, match="in use by another WorkStream process"):
        start_sqlite_engine()


def _now() -> float:
    import time

    return time.time()


def test_a_stuck_registry_costs_a_bounded_wait_not_a_hung_request(
    start_engine: EngineFactory,
) -> None:
    engine, _ = start_engine(request_timeout=0.2)
    stuck = threading.Event()
    release = threading.Event()
    original = engine.store.transaction

    def slow_transaction() -> Any:
        stuck.set()
        assert release.wait(30)
        return original()

    engine.store.transaction = slow_transaction  # the Registry's next batch hangs
    try:
        with pytest.raises(ServiceBusy):
            engine.jobs.submit([JobSpec("echo")])
        assert stuck.is_set()
    finally:
        release.set()
    engine.store.transaction = original


def test_health_reports_a_dead_core_actor(start_engine: EngineFactory) -> None:
    engine, _ = start_engine()
    assert engine.jobs.health().ok
    engine.actors.sweeper.stop()
    health = engine.jobs.health()
    assert not health.ok and health.status == "unavailable"
    assert "sweeper" in health.details["reason"]


def test_health_reports_storage_that_keeps_failing_writes(start_engine: EngineFactory) -> None:
    engine, _ = start_engine()
    original = engine.store.transaction

    def failing() -> Any:
        raise StorageUnavailable("storage is full; nothing was stored")

    engine.store.transaction = failing
    try:
        for _ in range(3):
            with pytest.raises(StorageUnavailable):
                engine.jobs.submit([JobSpec("echo")])
        health = engine.jobs.health()
        assert not health.ok and health.details["reason"] == "storage is failing writes"
    finally:
        engine.store.transaction = original
    engine.jobs.submit([JobSpec("echo")])
    assert engine.jobs.health().ok


def test_a_submission_whose_commit_outlasts_the_request_timeout_gets_its_job(
    start_engine: EngineFactory,
) -> None:
    """The Registry has begun storing the job when the caller's REQUEST_TIMEOUT ends (a
    slow disk, a database lock): the caller waits for the commit and gets its 201 rather
    than a 503 for a job that is then stored."""
    engine, _ = start_engine(request_timeout=0.2)
    committing = threading.Event()
    original = engine.store.transaction

    @contextmanager
    def slow_commit() -> Iterator[Any]:
        with original() as tx:
            yield tx
            if tx.find_by_idempotency_key("slow") is not None:  # the batch storing our job
                committing.set()
                time.sleep(1.0)  # a commit five times longer than the request timeout

    engine.store.transaction = slow_commit
    try:
        started = time.monotonic()
        [job] = engine.jobs.submit([JobSpec("echo")], idempotency_key="slow", request_hash="h").jobs
        waited = time.monotonic() - started
    finally:
        engine.store.transaction = original
    assert committing.is_set() and waited >= 1.0
    assert engine.jobs.get(job.id).id == job.id
