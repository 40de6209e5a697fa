"""The Registry's decisions without an actor: a JobLedger over the in-memory store, one
transaction per step, and a plain number for the time.

Each step returns the `Batch` it filled: the answers and events that the Registry would
settle after the commit. Requests carry no reply (None): the answer is read from the batch.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support import T0, make_job
from workstream.actors.batch import Batch
from workstream.actors.job_ledger import JobLedger
from workstream.actors.registry_messages import (
    AttemptEnded,
    Barrier,
    Cancel,
    Claim,
    Claimed,
    Create,
    Created,
    Finish,
    Outcome,
    Recover,
    Release,
    RenewLeases,
    Retry,
    Sweep,
    Swept,
)
from workstream.actors.replies import Ticket
from workstream.errors import (
    IdempotencyKeyReused,
    IllegalTransition,
    NotFound,
    QueueFull,
    ServiceBusy,
    StorageUnavailable,
)
from workstream.jobs import states
from workstream.jobs.events import (
    JOB_CANCELLED,
    JOB_COMPLETED,
    JOB_CREATED,
    JOB_FAILED,
    JOB_FENCED,
    JOB_RECOVERED,
    JOB_REJECTED,
    JOB_RELEASED,
    JOB_RETRIED,
)
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.spec import JobSpec
from workstream.store.memory import MemoryStore

OWNER = "node-a"
LEASE = 30.0
NO_REPLY: Any = None


class Book:
    """A ledger and its store; `run` applies commands in one committed transaction."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        ids = (f"job-{n}" for n in itertools.count(1))
        self.ledger = JobLedger(
            owner=OWNER,
            new_id=lambda: next(ids),
            retry_policy=RetryPolicy(base=2.0, cap=100.0, uniform=lambda low, high: 1.0),
            lease_duration=LEASE,
            default_max_retries=2,
        )

    def run(self, *commands: Any, now: float = T0, retrying: bool = False) -> Batch:
        batch = Batch(now=now, retrying=retrying)
        with self.store.transaction() as tx:
            for command in commands:
                self.ledger.apply(command, tx, batch)
        return batch

    def answer(self, command: Any, now: float = T0, retrying: bool = False) -> Any:
        """The value of `command`'s answer; its refusal is raised."""
        [(_, value, error)] = self.run(command, now=now, retrying=retrying).answers
        if error is not None:
            raise error
        return value

    def create(self, *specs: JobSpec, now: float = T0, **kwargs: Any) -> Created:
        return self.answer(Create(list(specs), NO_REPLY, **kwargs), now=now)

    def claim(self, limit: int = 10, now: float = T0) -> Claimed:
        return self.answer(Claim(limit, NO_REPLY), now=now)

    def finish(self, job_id: str, attempt: int = 1, now: float = T0, **outcome: Any) -> Batch:
        fields = {"owner": OWNER, "worker": "worker-1", "duration": 0.25, **outcome}
        return self.run(Finish(Outcome(job_id, attempt, **fields)), now=now)

    def insert(self, job: Job) -> None:
        with self.store.transaction() as tx:
            tx.insert(job)

    def stored(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        assert job is not None
        return job


def kinds(batch: Batch) -> list[str]:
    return [event.kind for event in batch.events]


@pytest.fixture
def book() -> Book:
    return Book()


# -- create ---------------------------------------------------------------------------


def test_create_stores_pending_jobs_and_records_their_answer_and_events(book: Book) -> None:
    batch = book.run(
        Create([JobSpec("echo"), JobSpec("echo", run_at=T0 - 5, max_retries=7)], NO_REPLY)
    )
    [(_, created, error)] = batch.answers
    assert error is None and created.created
    first, second = created.jobs
    assert (first.id, first.max_retries, first.run_at) == ("job-1", 2, T0)  # the default
    assert (second.max_retries, second.run_at) == (7, T0)  # a past run_at means now
    assert book.stored("job-1") == first
    assert kinds(batch) == [JOB_CREATED, JOB_CREATED]


def test_a_full_queue_refuses_the_whole_request_and_stores_nothing(book: Book) -> None:
    book.create(JobSpec("echo"), JobSpec("echo"), limit=3)
    book.create(JobSpec("echo", run_at=T0 + 60), limit=3)  # not due: not counted
    batch = book.run(Create([JobSpec("echo"), JobSpec("mail")], NO_REPLY, limit=3))
    [(_, value, error)] = batch.answers
    assert value is None and isinstance(error, QueueFull)
    assert "retry later" in str(error)
    assert [(e.kind, e.type, e.count) for e in batch.events] == [
        (JOB_REJECTED, "echo", 1),
        (JOB_REJECTED, "mail", 1),
    ]
    assert len(book.store.all_jobs()) == 3
    with pytest.raises(QueueFull, match="more than fit at once"):
        book.create(*[JobSpec("echo")] * 4, limit=3)


def test_an_idempotency_key_gets_the_stored_job_back_or_is_refused(book: Book) -> None:
    [job] = book.create(JobSpec("echo"), idempotency_key="k", request_hash="h").jobs
    again = book.run(Create([JobSpec("echo")], NO_REPLY, idempotency_key="k", request_hash="h"))
    assert again.answers == [(None, Created([job], created=False), None)]
    assert again.events == []
    with pytest.raises(IdempotencyKeyReused):
        book.create(JobSpec("echo"), idempotency_key="k", request_hash="other")
    assert book.store.all_jobs() == [job]


def test_a_create_whose_caller_gave_up_stores_nothing(book: Book) -> None:
    gone = Ticket()
    assert gone.abandon()
    with pytest.raises(ServiceBusy):
        book.create(JobSpec("echo"), ticket=gone)
    assert book.store.all_jobs() == []
    waiting = Ticket()
    book.create(JobSpec("echo"), ticket=waiting)
    assert not waiting.abandon()  # taken: the caller must wait for the answer


# -- claim and outcomes ---------------------------------------------------------------


def test_claim_takes_due_jobs_and_says_when_the_next_falls_due(book: Book) -> None:
    book.create(JobSpec("echo"), JobSpec("echo", run_at=T0 + 5))
    batch = book.run(Claim(5, NO_REPLY))
    [(_, claimed, _)] = batch.answers
    [taken] = claimed.jobs
    assert (taken.id, taken.status, taken.owner, taken.attempts) == (
        "job-1",
        JobStatus.PROCESSING,
        OWNER,
        1,
    )
    assert taken.lease_expires_at == T0 + LEASE
    assert claimed.next_run_at == T0 + 5
    [(before, after)] = batch.claims  # what the repair needs if the commit is in doubt
    assert (before.status, after) == (JobStatus.PENDING, taken)
    assert batch.events == []  # the Worker reports the start, not the ledger


def test_an_outcome_completes_the_job_it_holds(book: Book) -> None:
    book.create(JobSpec("echo"))
    book.claim()
    batch = book.finish("job-1", result={"ok": True}, now=T0 + 1)
    done = book.stored("job-1")
    assert (done.status, done.result, done.owner) == (JobStatus.COMPLETED, {"ok": True}, None)
    [event] = batch.events
    assert (event.kind, event.attempt, event.worker, event.duration_ms, event.final) == (
        JOB_COMPLETED,
        1,
        "worker-1",
        250.0,
        True,
    )
    assert batch.answers == [(None, None, None)]  # an outcome has nobody to answer


def test_a_failed_attempt_waits_for_its_backoff(book: Book) -> None:
    book.create(JobSpec("echo"))
    book.claim()
    [event] = book.finish("job-1", error="ValueError: boom").events
    job = book.stored("job-1")
    assert (job.status, job.last_error, job.run_at) == (
        JobStatus.FAILED,
        "ValueError: boom",
        T0 + 2,
    )
    assert (event.kind, event.final, event.run_at) == (JOB_FAILED, False, T0 + 2)


def test_a_claim_at_a_retrys_run_at_requeues_it_and_takes_it_without_a_sweep(
    book: Book,
) -> None:
    book.create(JobSpec("echo"))
    book.claim()
    book.finish("job-1", error="ValueError: boom")  # runs again at T0 + 2
    early = book.answer(Claim(5, NO_REPLY), now=T0 + 1.9)
    assert early.jobs == [] and early.next_run_at == T0 + 2  # the Dispatcher's alarm
    assert book.stored("job-1").status is JobStatus.FAILED
    batch = book.run(Claim(5, NO_REPLY), now=T0 + 2)
    [(_, claimed, _)] = batch.answers
    [taken] = claimed.jobs
    assert (taken.id, taken.status, taken.attempts) == ("job-1", JobStatus.PROCESSING, 2)
    [event] = batch.events
    assert (event.kind, event.reason, event.job_id) == (JOB_RETRIED, "backoff", "job-1")


def test_a_claim_with_room_takes_due_retries_after_the_pending_jobs(book: Book) -> None:
    book.create(JobSpec("echo"))
    book.claim()
    book.finish("job-1", error="ValueError: boom")  # due again at T0 + 2
    book.create(JobSpec("echo"), JobSpec("echo"), now=T0 + 1)  # job-2, job-3
    full = book.answer(Claim(2, NO_REPLY), now=T0 + 3)
    assert [job.id for job in full.jobs] == ["job-2", "job-3"]
    assert book.stored("job-1").status is JobStatus.FAILED  # a full claim looked no further
    roomy = book.answer(Claim(2, NO_REPLY), now=T0 + 3)
    assert [job.id for job in roomy.jobs] == ["job-1"]


def test_a_claim_leaves_a_retry_whose_timed_out_call_runs_on(book: Book) -> None:
    book.create(JobSpec("echo"))
    book.claim()
    book.finish("job-1", error="TimeoutError", abandoned=True)
    assert book.answer(Claim(5, NO_REPLY), now=T0 + 60).jobs == []
    assert book.stored("job-1").status is JobStatus.FAILED
    book.run(AttemptEnded("job-1", 1), now=T0 + 60)
    assert [job.id for job in book.answer(Claim(5, NO_REPLY), now=T0 + 60).jobs] == ["job-1"]


def test_a_job_failed_for_good_is_no_next_run_at(book: Book) -> None:
    book.create(JobSpec("echo", max_retries=0))
    book.claim()
    book.finish("job-1", error="ValueError: boom")
    assert book.answer(Claim(5, NO_REPLY), now=T0 + 1000).next_run_at is None


def test_an_outcome_from_another_owner_or_attempt_is_fenced(book: Book) -> None:
    book.create(JobSpec("echo"))
    book.claim()
    stranger = book.finish("job-1", owner="node-b", result="late")
    stale = book.finish("job-1", attempt=7, error="boom")
    assert [(e.kind, e.reason) for e in stranger.events + stale.events] == [
        (JOB_FENCED, "completed"),
        (JOB_FENCED, "failed"),
    ]
    assert book.stored("job-1").status is JobStatus.PROCESSING


def test_an_outcome_for_a_job_not_in_the_store_is_logged_and_dropped(
    book: Book, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="workstream.actors.registry"):
        batch = book.finish("ghost", result="x")
    assert batch.events == []
    assert "finished job ghost is not in the store" in caplog.text


@pytest.mark.parametrize("retrying", [False, True])
def test_only_a_kept_outcome_may_find_itself_stored_already(book: Book, retrying: bool) -> None:
    """A kept outcome whose first COMMIT landed counts as written; the same outcome sent
    twice otherwise is a late one."""
    book.create(JobSpec("echo"))
    [taken] = book.claim().jobs
    with book.store.transaction() as tx:  # the first, uncertain commit of this outcome
        done = states.complete(taken, attempt=1, owner=OWNER, result=(1, 2), now=T0)
        assert tx.update(done, taken)
    outcome = Outcome("job-1", 1, OWNER, "worker-1", 0.1, result=(1, 2))
    batch = book.run(Finish(outcome), retrying=retrying)
    assert kinds(batch) == ([JOB_COMPLETED] if retrying else [JOB_FENCED])


# -- cancel, retry and abandoned calls ------------------------------------------------


def test_cancel_and_retry_follow_the_table(book: Book) -> None:
    book.create(JobSpec("echo", max_retries=0), JobSpec("echo"))
    with pytest.raises(NotFound):
        book.answer(Cancel("nope", NO_REPLY))
    with pytest.raises(IllegalTransition):
        book.answer(Retry("job-1", NO_REPLY))  # pending
    book.claim(limit=1)
    book.finish("job-1", error="boom")
    batch = book.run(Retry("job-1", NO_REPLY), Cancel("job-2", NO_REPLY))
    [(_, again, _), (_, cancelled, _)] = batch.answers
    assert again.status is JobStatus.PENDING
    assert cancelled.status is JobStatus.CANCELLED
    assert [(e.kind, e.reason) for e in batch.events] == [
        (JOB_RETRIED, "manual"),
        (JOB_CANCELLED, None),
    ]


def test_a_job_whose_timed_out_call_runs_on_waits_until_the_call_returns(book: Book) -> None:
    book.create(JobSpec("echo"))
    book.claim()
    book.finish("job-1", error="TimeoutError", abandoned=True)
    later = T0 + 60  # the backoff is long over
    assert book.answer(Sweep(NO_REPLY), now=later).requeued == 0
    with pytest.raises(IllegalTransition, match="still running"):
        book.answer(Retry("job-1", NO_REPLY), now=later)
    book.run(AttemptEnded("job-1", 2), now=later)  # another attempt's call: no change
    assert book.answer(Sweep(NO_REPLY), now=later).requeued == 0
    book.run(AttemptEnded("job-1", 1), now=later)
    assert book.answer(Sweep(NO_REPLY), now=later) == Swept(requeued=1, recovered=0, more=False)


# -- leases: sweep, renew, release, recover -------------------------------------------


def test_sweep_recovers_expired_leases_but_not_the_jobs_running_here(book: Book) -> None:
    book.create(JobSpec("echo"))
    book.claim()
    book.insert(
        make_job(
            "theirs",
            status=JobStatus.PROCESSING,
            attempts=1,
            owner="node-b",
            lease_expires_at=T0 + 1,
        )
    )
    batch = book.run(Sweep(NO_REPLY), now=T0 + LEASE + 1)  # both leases ran out
    assert batch.answers == [(None, Swept(requeued=0, recovered=1, more=False), None)]
    assert [(e.kind, e.job_id, e.reason) for e in batch.events] == [
        (JOB_RECOVERED, "theirs", "lease_expired")
    ]
    assert book.stored("job-1").status is JobStatus.PROCESSING


def test_renewal_extends_only_the_leases_of_jobs_running_here(book: Book) -> None:
    assert book.answer(RenewLeases()) == 0
    book.create(JobSpec("echo"), JobSpec("echo"))
    book.claim(limit=1)
    assert book.answer(RenewLeases(), now=T0 + 10) == 1
    assert book.stored("job-1").lease_expires_at == T0 + 10 + LEASE
    assert book.stored("job-2").lease_expires_at is None


def test_release_gives_back_the_chosen_jobs_uncounted(book: Book) -> None:
    book.create(JobSpec("echo"), JobSpec("echo"))
    book.claim()
    batch = book.run(Release(NO_REPLY, job_ids=["job-2"]))
    assert batch.answers == [(None, 1, None)]
    assert [(e.kind, e.job_id) for e in batch.events] == [(JOB_RELEASED, "job-2")]
    back = book.stored("job-2")
    assert (back.status, back.attempts, back.owner) == (JobStatus.PENDING, 0, None)
    assert book.answer(RenewLeases()) == 1  # job-2 is no longer this process's


def test_recover_counts_the_interrupted_attempt_and_fails_a_job_out_of_runs(book: Book) -> None:
    book.insert(make_job("a", status=JobStatus.PROCESSING, attempts=1, owner="old"))
    book.insert(make_job("b", status=JobStatus.PROCESSING, attempts=4, owner="old"))
    batch = book.run(Recover(NO_REPLY))
    assert batch.answers == [(None, 2, None)]
    assert [(e.kind, e.job_id, e.final) for e in batch.events] == [
        (JOB_RECOVERED, "a", False),
        (JOB_RECOVERED, "b", False),
        (JOB_FAILED, "b", True),
    ]
    assert book.stored("a").status is JobStatus.PENDING
    assert book.stored("b").failed_for_good


# -- what the committer relies on -----------------------------------------------------


def test_restore_forgets_what_a_rolled_back_transaction_decided(book: Book) -> None:
    book.create(JobSpec("echo"))
    before = book.ledger.snapshot()
    book.claim()
    book.ledger.restore(before)  # as if the claim had rolled back
    assert book.answer(RenewLeases()) == 0


def test_a_barrier_answers_nothing_and_an_unknown_message_is_ignored(
    book: Book, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="workstream.actors.registry"):
        batch = book.run(Barrier(NO_REPLY), "not a command")
    assert batch.answers == [(None, None, None)]
    assert "registry ignored unknown message 'str'" in caplog.text


class BrokenStore(MemoryStore):
    """Its transactions cannot read: `get` fails as the disk would."""

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with super().transaction() as tx:

            def get(job_id: str) -> Any:
                raise StorageUnavailable("disk I/O error (injected)")

            tx.get = get
            yield tx


def test_a_storage_failure_is_not_an_answer_but_fails_the_batch(book: Book) -> None:
    book.store = BrokenStore()
    with pytest.raises(StorageUnavailable):
        book.run(Cancel("job-1", NO_REPLY))
