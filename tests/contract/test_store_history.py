"""Store contract: attempt history (issue 14). Every attempt is recorded in the transaction
of the outcome it records (so a job and its history never disagree), read back by job, and
deleted with its job."""

from __future__ import annotations

import itertools

import pytest

from workstream.actors.batch import Batch
from workstream.actors.job_ledger import JobLedger
from workstream.actors.registry_messages import (
    Claim,
    Create,
    Finish,
    Outcome,
    Recover,
    Release,
    Sweep,
)
from workstream.jobs import attempts
from workstream.jobs.attempts import Attempt
from workstream.jobs.model import JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.spec import JobSpec

NOW = 1_700_000_000.0
OWNER = "node-a"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "handlers.py", line 12, in resize\n'
    "    raise RuntimeError('boom: \u00e9t\u00e9 \U0001f525')\n"
    "RuntimeError: boom: \u00e9t\u00e9 \U0001f525\n"
)


def attempt(job_id: str, number: int, **fields) -> Attempt:
    values = {
        "outcome": attempts.FAILED,
        "finished_at": NOW + number,
        "started_at": NOW + number - 0.5,
        "node": OWNER,
        "worker": f"process-1.{number}",
        "pid": 4000 + number,
        "error": f"RuntimeError: boom {number}",
        "error_class": "RuntimeError",
        "traceback": TRACEBACK,
        "duration": 0.25,
        **fields,
    }
    return Attempt(job_id=job_id, number=number, **values)


def test_attempts_are_read_back_by_job_in_number_order(store, jobs):
    one, two = jobs.add(), jobs.add()
    recorded = [
        attempt(one.id, 2, outcome=attempts.COMPLETED, error=None, traceback=None),
        attempt(one.id, 1),
        attempt(two.id, 1, started_at=None, duration=None, worker=None, pid=None),
    ]
    with store.transaction() as tx:
        for item in recorded:
            tx.add_attempt(item)

    assert store.attempts(one.id) == [recorded[1], recorded[0]]
    assert store.attempts(two.id) == [recorded[2]]
    assert store.attempts("no-such-job") == []


def test_a_released_attempt_keeps_its_number_and_both_records_stay_in_order(store, jobs):
    job = jobs.add()
    released = attempt(job.id, 1, outcome=attempts.RELEASED, error=None, traceback=None)
    again = attempt(job.id, 1, outcome=attempts.COMPLETED, error=None, traceback=None)
    with store.transaction() as tx:
        tx.add_attempt(released)
    with store.transaction() as tx:
        tx.add_attempt(again)

    assert store.attempts(job.id) == [released, again]


def test_a_transaction_that_fails_records_no_attempt(store, jobs):
    job = jobs.add()
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.add_attempt(attempt(job.id, 1))
        raise RuntimeError("the batch fails")

    assert store.attempts(job.id) == []


def test_attempts_are_deleted_with_their_jobs(store, jobs):
    kept, gone = jobs.add(), jobs.add()
    with store.transaction() as tx:
        tx.add_attempt(attempt(kept.id, 1))
        tx.add_attempt(attempt(gone.id, 1))
        tx.add_attempt(attempt(gone.id, 2))
    with store.transaction() as tx:
        assert tx.delete_attempts([gone.id, "no-such-job"]) == 2
        assert tx.delete_attempts([]) == 0

    assert store.attempts(gone.id) == []
    assert [a.number for a in store.attempts(kept.id)] == [1]


def test_text_is_stored_as_given(store, jobs):
    job = jobs.add()
    odd = attempt(job.id, 1, error="NUL \x00 and \ue000 escapes", traceback="line\x00\n")
    with store.transaction() as tx:
        tx.add_attempt(odd)

    assert store.attempts(job.id) == [odd]


class Runner:
    """A JobLedger over the store under test: each step one committed transaction."""

    def __init__(self, store) -> None:
        self.store = store
        ids = (f"00000000-0000-4000-8000-{n:012d}" for n in itertools.count(1))
        self.ledger = JobLedger(
            owner=OWNER,
            new_id=lambda: next(ids),
            retry_policy=RetryPolicy(base=0.0, cap=0.0, uniform=lambda low, high: 0.0),
            lease_duration=30.0,
            default_max_retries=1,
        )
        self.now = NOW

    def run(self, *commands) -> Batch:
        self.now += 1.0
        batch = Batch(now=self.now)
        with self.store.transaction() as tx:
            for command in commands:
                self.ledger.apply(command, tx, batch)
        return batch

    def submit(self, max_retries: int = 1) -> str:
        spec = JobSpec(type="resize", payload={}, max_retries=max_retries)
        batch = self.run(Create([spec], reply=None))
        return batch.answers[0][1].jobs[0].id

    def claim(self) -> list:
        return self.run(Claim(10, reply=None)).answers[0][1].jobs


def test_the_ledger_records_each_outcome_with_the_job_it_changes(store):
    runner = Runner(store)
    job_id = runner.submit(max_retries=1)

    (first,) = runner.claim()
    runner.run(
        Finish(
            Outcome(
                job_id,
                1,
                OWNER,
                "process-1.0",
                0.5,
                error="RuntimeError: boom",
                error_class="RuntimeError",
                traceback=TRACEBACK,
                pid=4242,
            )
        )
    )
    failed = store.get(job_id)
    assert failed.status is JobStatus.FAILED and failed.error_class == "RuntimeError"
    (record,) = store.attempts(job_id)
    assert record == Attempt(
        job_id=job_id,
        number=1,
        outcome=attempts.FAILED,
        finished_at=failed.updated_at,
        started_at=first.started_at,
        node=OWNER,
        worker="process-1.0",
        pid=4242,
        error="RuntimeError: boom",
        error_class="RuntimeError",
        traceback=TRACEBACK,
        duration=0.5,
    )

    runner.run(Finish(Outcome(job_id, 2, OWNER, "process-1.1", 0.0)))  # not claimed: fenced
    assert len(store.attempts(job_id)) == 1  # a refused outcome records nothing

    (second,) = runner.claim()
    runner.run(
        Finish(
            Outcome(
                job_id,
                2,
                OWNER,
                "process-1.1",
                3.0,
                error="TimeoutError: the handler ran longer than its timeout of 3s",
                ending=attempts.TIMED_OUT,
                error_class="TimeoutError",
            )
        )
    )
    done = store.get(job_id)
    assert done.failed_for_good and done.error_class == "TimeoutError"
    history = store.attempts(job_id)
    assert [(a.number, a.outcome, a.error_class) for a in history] == [
        (1, attempts.FAILED, "RuntimeError"),
        (2, attempts.TIMED_OUT, "TimeoutError"),
    ]
    assert history[1].started_at == second.started_at and history[1].traceback is None


def test_a_crash_a_recovery_and_a_release_are_recorded(store):
    runner = Runner(store)
    crashed = runner.submit(max_retries=3)
    runner.claim()
    runner.run(
        Finish(
            Outcome(
                crashed,
                1,
                OWNER,
                "process-2.0",
                1.0,
                error="worker process died (killed by signal 9)",
                ending=attempts.CRASHED,
                error_class=attempts.WORKER_DIED,
                pid=99,
            )
        )
    )
    assert store.get(crashed).error_class == attempts.WORKER_DIED

    runner.run(Sweep())  # the retry is due at once (no backoff)
    runner.claim()
    runner.run(Recover(reply=None, owner=OWNER))
    runner.run(Sweep())
    runner.claim()
    runner.run(Release(reply=None))

    history = store.attempts(crashed)
    assert [(a.number, a.outcome) for a in history] == [
        (1, attempts.CRASHED),
        (2, attempts.INTERRUPTED),
        (3, attempts.RELEASED),
    ]
    assert history[0].pid == 99 and history[0].error_class == attempts.WORKER_DIED
    assert history[1].error_class == attempts.INTERRUPTED_CLASS
    assert history[1].error is not None and "interrupted" in history[1].error
    assert history[2].error is None
    assert store.get(crashed).attempts == 2  # the released attempt is not counted


def test_an_unreadable_error_class_is_read_off_the_error_text(store):
    runner = Runner(store)
    job_id = runner.submit(max_retries=0)
    runner.claim()
    runner.run(Finish(Outcome(job_id, 1, OWNER, "w", 0.1, error="ValueError: bad input")))
    assert store.get(job_id).error_class == "ValueError"
    assert store.attempts(job_id)[0].error_class == "ValueError"
