"""The Registry's admission of scheduled slots, delayed-job caps and retention purges,
without an actor: a JobLedger over the in-memory store, one transaction per step."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.support import T0
from workstream.actors.batch import Batch
from workstream.actors.job_ledger import JobLedger
from workstream.actors.registry_messages import Create, Created, Purge, Purged
from workstream.errors import ScheduledJobsFull
from workstream.jobs.events import JOB_CREATED, JOB_REJECTED
from workstream.jobs.model import JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.schedules import FiredSlot, ScheduleSlot
from workstream.jobs.spec import JobSpec
from workstream.store.memory import MemoryStore

NO_REPLY: Any = None


class Book:
    def __init__(self, max_scheduled: int | None = None) -> None:
        self.store = MemoryStore()
        ids = (f"job-{n}" for n in itertools.count(1))
        self.ledger = JobLedger(
            owner="node-a",
            new_id=lambda: next(ids),
            retry_policy=RetryPolicy(base=1.0, cap=10.0, uniform=lambda low, high: 1.0),
            lease_duration=30.0,
            default_max_retries=0,
            max_scheduled=max_scheduled,
        )

    def run(self, *commands: Any, now: float = T0) -> Batch:
        batch = Batch(now=now)
        with self.store.transaction() as tx:
            for command in commands:
                self.ledger.apply(command, tx, batch)
        return batch

    def fire(self, name: str, slot: float, now: float = T0) -> Created:
        key = ScheduleSlot(name, slot)
        [(_, value, error)] = self.run(
            Create([JobSpec("echo")], NO_REPLY, idempotency_key=key.key, slot=key), now=now
        ).answers
        assert error is None, error
        return value


def test_a_slot_creates_its_job_and_records_itself_in_one_transaction() -> None:
    book = Book()
    created = book.fire("nightly", T0 - 10)
    assert created.created
    [job] = created.jobs
    assert job.idempotency_key == "schedule:nightly:" + f"{T0 - 10:.0f}"
    assert book.store.fired_slots() == [FiredSlot("nightly", T0 - 10, job.id, T0)]


def test_a_slot_fired_already_creates_nothing_and_answers_its_job() -> None:
    book = Book()
    first = book.fire("nightly", T0)
    again = book.fire("nightly", T0, now=T0 + 1)  # another node, or a retried submission
    assert not again.created and again.jobs == first.jobs
    assert len(book.store.all_jobs()) == 1


def test_an_older_slot_than_the_last_fired_creates_nothing_even_without_its_job() -> None:
    book = Book()
    book.fire("nightly", T0)
    # Retention may have deleted the old slot's job: the slot row still refuses it.
    late = book.fire("nightly", T0 - 3600)
    assert not late.created and late.jobs == []
    assert book.store.fired_slots()[0].slot == T0


def test_slots_of_two_schedules_are_independent() -> None:
    book = Book()
    assert book.fire("a", T0).created and book.fire("b", T0).created
    assert book.fire("a", T0 + 60).created
    assert [(f.name, f.slot) for f in book.store.fired_slots()] == [("a", T0 + 60), ("b", T0)]


def test_max_scheduled_counts_delayed_jobs_once_per_transaction() -> None:
    book = Book(max_scheduled=3)
    later = [JobSpec("echo", run_at=T0 + 60)]
    batch = book.run(
        *(Create(later, NO_REPLY) for _ in range(4)), Create([JobSpec("echo")], NO_REPLY)
    )
    errors = [error for _, _, error in batch.answers]
    assert errors[:3] == [None, None, None]
    assert isinstance(errors[3], ScheduledJobsFull)
    assert "at most 3" in str(errors[3]) and errors[3].code == "too_many_scheduled_jobs"
    assert errors[4] is None  # a due job is not a scheduled one
    assert [e.kind for e in batch.events].count(JOB_CREATED) == 4
    assert JOB_REJECTED in [e.kind for e in batch.events]
    # The next transaction counts again from the store.
    [(_, _, error)] = book.run(Create(later, NO_REPLY)).answers
    assert isinstance(error, ScheduledJobsFull)


def test_a_request_larger_than_the_cap_says_so() -> None:
    book = Book(max_scheduled=2)
    [(_, _, error)] = book.run(
        Create([JobSpec("echo", run_at=T0 + 60) for _ in range(3)], NO_REPLY)
    ).answers
    assert isinstance(error, ScheduledJobsFull) and "this request brings 3" in str(error)
    assert book.store.all_jobs() == []


def test_purge_deletes_a_bounded_batch_and_says_whether_more_are_left() -> None:
    book = Book()
    book.run(Create([JobSpec("echo") for _ in range(5)], NO_REPLY))
    with book.store.transaction() as tx:
        for job in book.store.all_jobs():
            done = job.replace(status=JobStatus.COMPLETED, finished_at=T0, run_at=None)
            assert tx.update(done, job)
    purge = Purge(NO_REPLY, completed_before=T0 + 1, failed_before=None, limit=3)
    [(_, first, _)] = book.run(purge).answers
    assert isinstance(first, Purged) and len(first.deleted) == 3 and first.more
    [(_, second, _)] = book.run(purge).answers
    assert len(second.deleted) == 2 and not second.more
    assert book.store.all_jobs() == []


@pytest.mark.parametrize("cutoff", [None, T0 - 1])
def test_purge_keeps_jobs_not_old_enough_or_kept_for_ever(cutoff: float | None) -> None:
    book = Book()
    book.run(Create([JobSpec("echo")], NO_REPLY))
    [job] = book.store.all_jobs()
    with book.store.transaction() as tx:
        tx.update(job.replace(status=JobStatus.COMPLETED, finished_at=T0, run_at=None), job)
    [(_, purged, _)] = book.run(
        Purge(NO_REPLY, completed_before=cutoff, failed_before=None, limit=10)
    ).answers
    assert purged.deleted == [] and not purged.more
    assert len(book.store.all_jobs()) == 1


class _CountingTransactions:
    """The memory store, recording when each transaction counts the delayed jobs."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.counted: list[float] = []
        self._real = store.transaction
        store.transaction = self._transaction  # type: ignore[method-assign]

    def _transaction(self) -> Any:
        counted = self.counted
        real = self._real()

        class Tx:
            def __enter__(self) -> Any:
                inner = real.__enter__()

                class Counting:
                    def __getattr__(self, name: str) -> Any:
                        return getattr(inner, name)

                    def count_scheduled(self, now: float, limit: int) -> int:
                        counted.append(now)
                        return int(inner.count_scheduled(now, limit))

                return Counting()

            def __exit__(self, *exc: Any) -> Any:
                return real.__exit__(*exc)

        return Tx()


def test_far_below_the_cap_the_delayed_jobs_are_not_counted_at_every_commit() -> None:
    book = Book(max_scheduled=100)
    watch = _CountingTransactions(book.store)
    ten_later = [JobSpec("echo", run_at=T0 + 600) for _ in range(10)]

    def submit(at: float) -> Any:
        [(_, _, error)] = book.run(Create(ten_later, NO_REPLY), now=at).answers
        return error

    for step in range(9):  # 90 delayed jobs in 0.8 s: counted once, then estimated
        assert submit(T0 + step / 10) is None
    assert watch.counted == [T0]
    assert submit(T0 + 0.85) is None  # past 90% of the cap: counted exactly (90), fits
    assert isinstance(submit(T0 + 0.9), ScheduledJobsFull)  # counted: 100 + 10 > 100
    assert watch.counted == [T0, T0 + 0.85, T0 + 0.9]
    assert len([job for job in book.store.all_jobs() if job.run_at == T0 + 600]) == 100


def test_the_delayed_jobs_are_counted_again_after_a_second() -> None:
    book = Book(max_scheduled=1000)
    watch = _CountingTransactions(book.store)
    later = [JobSpec("echo", run_at=T0 + 600)]
    for at in (T0, T0 + 0.5, T0 + 1.0, T0 + 1.2, T0 + 2.5):
        [(_, _, error)] = book.run(Create(later, NO_REPLY), now=at).answers
        assert error is None
    assert watch.counted == [T0, T0 + 1.0, T0 + 2.5]
