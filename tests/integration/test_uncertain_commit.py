"""A COMMIT that lands although the node hears an error (the connection dropped while the
server committed; docs/scaling.md), on real storage: the Registry alone on PostgreSQL,
and the whole engine on SQLite and PostgreSQL.

The acknowledgement is lost by a wrapper around the real store: the transaction commits
for real, then `transaction()` raises StorageUnavailable, as the PostgreSQL store does
when the connection breaks during COMMIT. The Registry-level cases on the in-memory
store and SQLite are in tests/unit/actors/test_registry_uncertain_commit.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.integration.conftest import StoreFactory, engine_factory
from tests.pg import ScratchDatabase
from tests.support import FakeClock
from tests.unit.actors.test_registry import LEASE, OWNER, Harness
from tests.unit.actors.test_registry_uncertain_commit import (
    LANDED,
    ROLLED_BACK,
    UncertainCommits,
    check_a_release_spares_another_owner,
    claim_failing,
    finish_failing,
    released_events,
    same_row,
)
from workstream.actors.registry_messages import Sweep, Swept
from workstream.errors import StorageUnavailable
from workstream.handlers import Handler
from workstream.jobs.events import (
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_FENCED,
    JOB_RECOVERED,
    JOB_RELEASED,
)
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.spec import JobSpec
from workstream.store.base import Store
from workstream.store.postgres import PostgresStore

# -- the Registry alone, on PostgreSQL --------------------------------------------------


@pytest.fixture
def pg_reg(pg_database: ScratchDatabase, clock: FakeClock) -> Iterator[Harness]:
    inner = PostgresStore(pg_database.url, statement_timeout=5.0, lock_timeout=2.0)
    inner.open()
    pg_database.reset()
    harness = Harness(clock, UncertainCommits(inner))  # type: ignore[arg-type]
    yield harness
    harness.ref.stop()
    inner.close()


def test_postgres_a_claim_stored_despite_its_error_is_given_back_and_runs(
    pg_reg: Harness, clock: FakeClock
) -> None:
    [job] = pg_reg.create(JobSpec("echo", max_retries=0)).jobs
    claim_failing(pg_reg, LANDED)
    stored = pg_reg.stored(job.id)
    assert (stored.status, stored.attempts, stored.owner) == (JobStatus.PROCESSING, 1, OWNER)
    pg_reg.barrier()
    assert same_row(pg_reg.stored(job.id), job)
    assert len(released_events(pg_reg)) == 1
    clock.advance(LEASE + 1)  # on its last attempt, and nothing left to recover
    assert pg_reg.ask(lambda reply: Sweep(reply)) == Swept(0, 0, False)
    [again] = pg_reg.claim().jobs
    assert again.attempts == 1
    pg_reg.finish(job.id, 1, result="ran")
    done = pg_reg.stored(job.id)
    assert (done.status, done.attempts, done.result) == (JobStatus.COMPLETED, 1, "ran")
    assert not {JOB_FAILED, JOB_RECOVERED, JOB_FENCED} & set(pg_reg.log.kinds())


@pytest.mark.parametrize("mode", [LANDED, ROLLED_BACK])
def test_postgres_a_release_never_touches_a_job_another_node_holds(
    pg_reg: Harness, clock: FakeClock, mode: str
) -> None:
    check_a_release_spares_another_owner(pg_reg, clock, mode)


def test_postgres_an_outcome_stored_despite_its_error_is_not_fenced(pg_reg: Harness) -> None:
    [job] = pg_reg.create(JobSpec("echo")).jobs
    pg_reg.claim()
    finish_failing(pg_reg, LANDED, job.id, result={"rows": (1, 2)})  # reads back as a list
    assert pg_reg.stored(job.id).status is JobStatus.COMPLETED
    assert pg_reg.log.kinds().count(JOB_COMPLETED) == 1
    assert JOB_FENCED not in pg_reg.log.kinds()


# -- the engine, on SQLite and PostgreSQL -----------------------------------------------


class LoseAckOnce:
    """A real store that loses the acknowledgement of the first transaction that writes a
    job as `matches` picks it (e.g. a claim): it commits, then raises StorageUnavailable."""

    def __init__(self, store: Store, matches: Callable[[Job, Job], bool]) -> None:
        self.inner = store
        self._matches = matches
        self.lost: list[Job] = []  # the writes whose acknowledgement was lost

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        hit: list[Job] = []
        with self.inner.transaction() as tx:
            yield _Watched(tx, lambda job, expected: self._pick(job, expected, hit))
        if hit:
            self.lost += hit
            raise StorageUnavailable("connection lost during COMMIT (injected; it landed)")

    def _pick(self, job: Job, expected: Job, hit: list[Job]) -> None:
        if not self.lost and self._matches(job, expected):
            hit.append(job)


class _Watched:
    def __init__(self, tx: Any, seen: Callable[[Job, Job], None]) -> None:
        self._tx = tx
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def update(self, job: Job, expected: Job) -> bool:
        written = self._tx.update(job, expected)
        if written:
            self._seen(job, expected)
        return written


def is_claim(job: Job, expected: Job) -> bool:
    return expected.status is JobStatus.PENDING and job.status is JobStatus.PROCESSING


def is_completion(job: Job, expected: Job) -> bool:
    return job.status is JobStatus.COMPLETED


class Counting:
    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, payload: Any, job: Any) -> Any:
        with self._lock:
            self.runs[job.id] += 1
        return {"attempt": job.attempt}


def test_engine_runs_a_job_whose_claim_was_stored_despite_its_error(
    new_store: StoreFactory,
) -> None:
    lossy = LoseAckOnce(new_store(), is_claim)
    handler = Counting()
    start, engines = engine_factory(lambda: lossy)  # type: ignore[arg-type, return-value]
    try:
        engine, watcher = start(handlers=[Handler("count", handler)])
        # Due a moment later, so that no claim shares the transaction that stores it (a
        # claim batched with the insert would take it there, and lose that ack instead).
        soon = time.time() + 0.3
        [job] = engine.jobs.submit([JobSpec("count", max_retries=0, run_at=soon)]).jobs
        # Without the release, the job would sit `processing` for the 30 s lease and then
        # fail (its only attempt counted) without having run.
        watcher.wait_for(JOB_COMPLETED, timeout=10.0, job_id=job.id)
        assert [lost.id for lost in lossy.lost] == [job.id]
        done = engine.jobs.get(job.id)
        assert (done.status, done.attempts, done.result) == (
            JobStatus.COMPLETED,
            1,
            {"attempt": 1},
        )
        assert handler.runs[job.id] == 1
        assert watcher.count(JOB_RELEASED, job_id=job.id) == 1
        assert watcher.count(JOB_FAILED) == 0
    finally:
        for engine in engines:
            engine.stop()


def test_engine_an_outcome_stored_despite_its_error_is_not_refused(
    new_store: StoreFactory,
) -> None:
    lossy = LoseAckOnce(new_store(), is_completion)
    start, engines = engine_factory(lambda: lossy)  # type: ignore[arg-type, return-value]
    try:
        engine, watcher = start()
        [job] = engine.jobs.submit([JobSpec("echo", {"n": 1})]).jobs
        watcher.wait_for(JOB_COMPLETED, timeout=10.0, job_id=job.id)
        assert [lost.id for lost in lossy.lost] == [job.id]
        assert engine.jobs.get(job.id).status is JobStatus.COMPLETED
        assert watcher.count(JOB_COMPLETED, job_id=job.id) == 1
        assert watcher.count(JOB_FENCED) == 0
        assert engine.jobs.stats()["late_outcomes_refused"] == 0
    finally:
        for engine in engines:
            engine.stop()
