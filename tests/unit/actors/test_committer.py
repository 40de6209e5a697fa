"""Group commit without an actor: a Committer over the in-memory store, recording what it
settles after each transaction instead of answering and publishing.

How a failure spreads (docs/architecture.md, "Transaction boundaries"): a storage failure
fails the batch and keeps its outcomes, a poison command fails alone, and the claims of a
commit reported failed are given back by the next flush if the commit landed after all.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support import FakeClock, make_job
from tests.unit.actors.test_registry_uncertain_commit import (
    LANDED,
    ROLLED_BACK,
    UncertainCommits,
)
from workstream.actors.batch import Answer
from workstream.actors.committer import Committer
from workstream.actors.job_ledger import JobLedger
from workstream.actors.registry_messages import (
    Barrier,
    Claim,
    Create,
    Finish,
    Outcome,
    RenewLeases,
    Unpark,
)
from workstream.actors.repair import CommitRepair, stored_already
from workstream.actors.write_health import WriteHealth
from workstream.errors import StorageUnavailable
from workstream.jobs.events import JOB_COMPLETED, JOB_CREATED, JOB_FAILED, JOB_RELEASED, JobEvent
from workstream.jobs.model import JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.spec import JobSpec
from workstream.store.memory import MemoryStore

OWNER = "node-a"
LEASE = 30.0
NO_REPLY: Any = None


class Settled:
    """What the Committer settled, one entry per transaction it ended."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Answer], Sequence[JobEvent] | None]] = []

    def __call__(self, answers: list[Answer], events: Sequence[JobEvent] | None) -> None:
        self.calls.append((list(answers), events))

    def errors(self) -> list[type[BaseException] | None]:
        return [type(e) if e else None for answers, _ in self.calls for _, _, e in answers]

    def kinds(self) -> list[list[str] | None]:
        return [None if events is None else [e.kind for e in events] for _, events in self.calls]


class Rig:
    def __init__(self, store: Any, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.health = WriteHealth()
        self.settled = Settled()
        ids = (f"job-{n}" for n in itertools.count(1))
        self.committer = Committer(
            store=store,
            ledger=JobLedger(
                owner=OWNER,
                new_id=lambda: next(ids),
                retry_policy=RetryPolicy(base=2.0, cap=100.0, uniform=lambda low, high: 1.0),
                lease_duration=LEASE,
                default_max_retries=2,
            ),
            repair=CommitRepair(),
            clock=clock,
            write_health=self.health,
            settle=self.settled,
        )

    def flush(self, *commands: Any) -> Settled:
        self.settled.calls.clear()
        self.committer.flush(list(commands))
        return self.settled

    def finish(self, job_id: str, result: Any = "ok") -> Finish:
        return Finish(Outcome(job_id, 1, OWNER, "worker-1", 0.01, result))

    def status(self, job_id: str) -> JobStatus:
        job = self.store.get(job_id)
        assert job is not None
        return job.status


@pytest.fixture
def rig(clock: FakeClock) -> Rig:
    return Rig(MemoryStore(), clock)


def test_a_batch_is_one_transaction_settled_once_after_it(rig: Rig) -> None:
    settled = rig.flush(Create([JobSpec("echo")], NO_REPLY), Create([JobSpec("echo")], NO_REPLY))
    assert rig.store.transactions == 1
    [(answers, events)] = settled.calls
    assert [value.created for _, value, _ in answers] == [True, True]
    assert [event.kind for event in events or []] == [JOB_CREATED, JOB_CREATED]


def test_a_storage_failure_refuses_requests_and_keeps_outcomes_for_their_own_commit(
    rig: Rig,
) -> None:
    rig.flush(Create([JobSpec("echo")], NO_REPLY), Claim(5, NO_REPLY))
    rig.store.fail_next_transaction()
    settled = rig.flush(rig.finish("job-1"), RenewLeases(), Barrier(NO_REPLY))
    assert settled.kinds() == [None]  # nothing committed, nothing published
    assert settled.errors() == [StorageUnavailable]  # the Barrier; not Finish nor renewal
    assert rig.health.consecutive_failures == 1
    assert rig.status("job-1") is JobStatus.PROCESSING

    before = rig.store.transactions
    settled = rig.flush(Barrier(NO_REPLY))  # the kept outcome goes first, alone
    assert rig.store.transactions == before + 2
    assert settled.kinds() == [[JOB_COMPLETED], []]
    assert rig.status("job-1") is JobStatus.COMPLETED
    assert rig.health.consecutive_failures == 0


def test_a_kept_outcome_that_fails_again_does_not_hold_the_next_batch(rig: Rig) -> None:
    rig.flush(Create([JobSpec("echo")], NO_REPLY), Claim(5, NO_REPLY))
    rig.store.fail_next_transaction()
    rig.flush(rig.finish("job-1"))
    rig.store.fail_next_transaction()  # the kept outcome's own commit fails again
    settled = rig.flush(Create([JobSpec("echo")], NO_REPLY))
    assert settled.kinds() == [None, [JOB_CREATED]]
    assert rig.status("job-1") is JobStatus.PROCESSING
    assert rig.flush().kinds() == [[JOB_COMPLETED]]


def test_three_failed_commits_in_a_row_make_write_health_failing(rig: Rig) -> None:
    rig.store.fail_next_transaction(WriteHealth.FAILING_AFTER)
    for _ in range(WriteHealth.FAILING_AFTER):
        rig.flush(Barrier(NO_REPLY))
    assert rig.health.failing
    rig.flush(Barrier(NO_REPLY))
    assert not rig.health.failing


class PoisonStore(MemoryStore):
    """Refuses one value as a database might (not a storage failure: a ValueError)."""

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with super().transaction() as tx:
            update = tx.update

            def picky(job: Any, expected: Any) -> bool:
                if job.result == "poison":
                    raise ValueError("the database cannot take this value")
                return update(job, expected)

            tx.update = picky
            yield tx


def test_a_poison_command_fails_alone_and_its_outcome_becomes_a_failed_attempt(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(PoisonStore(), clock)
    rig.flush(Create([JobSpec("echo", max_retries=0)] * 2, NO_REPLY), Claim(5, NO_REPLY))
    with caplog.at_level(logging.ERROR, logger="workstream.actors.registry"):
        settled = rig.flush(
            rig.finish("job-1", "poison"),
            rig.finish("job-2", "fine"),
            Create([JobSpec("echo")], NO_REPLY),
        )
    # The batch fails, then runs one command per transaction: the poison's replacement
    # (a failed attempt) is committed where the poison was.
    assert settled.kinds() == [[JOB_FAILED], [JOB_COMPLETED], [JOB_CREATED]]
    assert rig.status("job-1") is JobStatus.FAILED
    job = rig.store.get("job-1")
    assert job is not None and "could not be stored (ValueError)" in (job.last_error or "")
    assert rig.status("job-2") is JobStatus.COMPLETED
    assert "registry command failed: ValueError" in caplog.text


def test_a_poison_request_is_refused_with_nothing_changed(clock: FakeClock) -> None:
    class Broken(MemoryStore):
        @contextmanager
        def transaction(self) -> Iterator[Any]:
            with super().transaction() as tx:

                def count_ready(now: float, limit: int) -> int:
                    raise RuntimeError("a bug")

                tx.count_ready = count_ready
                yield tx

    rig = Rig(Broken(), clock)
    settled = rig.flush(Create([JobSpec("echo")], NO_REPLY, limit=5))
    [([(_, _, error)], events)] = settled.calls
    assert isinstance(error, StorageUnavailable) and events is None
    assert "nothing was changed" in str(error)
    assert rig.store.all_jobs() == []


# -- a commit reported failed that may have landed ------------------------------------


@pytest.fixture
def uncertain(clock: FakeClock) -> Rig:
    return Rig(UncertainCommits(MemoryStore()), clock)


def claim_in_doubt(rig: Rig, mode: str) -> None:
    rig.flush(Create([JobSpec("echo")], NO_REPLY))
    rig.store.fail_next(mode)
    assert rig.flush(Claim(5, NO_REPLY)).errors() == [StorageUnavailable]


def test_a_claim_that_landed_is_given_back_by_the_next_flush(
    uncertain: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    claim_in_doubt(uncertain, LANDED)
    assert uncertain.status("job-1") is JobStatus.PROCESSING
    with caplog.at_level(logging.WARNING, logger="workstream.actors.registry"):
        settled = uncertain.flush()
    [released] = settled.calls[0][1] or []
    assert (released.kind, released.reason) == (JOB_RELEASED, "unconfirmed_claim")
    job = uncertain.store.get("job-1")
    assert job is not None and (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert "released: its commit was reported failed but had landed" in caplog.text
    assert uncertain.flush().calls == []  # settled: nothing left to repair


def test_a_claim_that_did_not_land_is_released_as_a_no_op(uncertain: Rig) -> None:
    claim_in_doubt(uncertain, ROLLED_BACK)
    assert uncertain.flush().kinds() == [[]]  # the fenced release matched nothing
    assert uncertain.status("job-1") is JobStatus.PENDING


def test_past_its_lease_an_unconfirmed_claim_is_left_to_the_sweeper(
    uncertain: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    claim_in_doubt(uncertain, LANDED)
    uncertain.clock.advance(LEASE)
    with caplog.at_level(logging.WARNING, logger="workstream.actors.registry"):
        assert uncertain.flush().calls == []
    assert "left to lease expiry" in caplog.text
    assert uncertain.status("job-1") is JobStatus.PROCESSING


def test_claiming_again_confirms_the_claim(uncertain: Rig) -> None:
    """The release fails with its batch, and the same flush claims the job for real: the
    release is dropped, so it cannot undo the claim a worker now runs."""
    claim_in_doubt(uncertain, ROLLED_BACK)
    uncertain.store.fail_next("unavailable")
    settled = uncertain.flush(Claim(5, NO_REPLY))
    [(_, claimed, _)] = settled.calls[1][0]
    assert [job.id for job in claimed.jobs] == ["job-1"]
    assert uncertain.flush().calls == []


def test_stored_already_compares_results_as_they_read_back() -> None:
    done = Outcome("job-1", 2, OWNER, "worker-1", 0.1, result=(1, 2))
    stored = make_job(status=JobStatus.COMPLETED, attempts=2, result=[1, 2])
    assert stored_already(stored, done)
    assert not stored_already(stored.replace(attempts=3), done)
    assert not stored_already(stored.replace(owner=OWNER), done)
    assert not stored_already(stored.replace(result=[2, 1]), done)
    failed = Outcome("job-1", 2, OWNER, "worker-1", 0.1, error="boom")
    assert stored_already(stored.replace(status=JobStatus.FAILED, last_error="boom"), failed)
    assert not stored_already(stored, failed)


# -- parked claims: a job submitted while a worker is idle is stored and claimed in one commit


class Reply:
    """A reply that records what it was answered with."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def set(self, value: Any = None) -> None:
        self.values.append(value)

    def set_exception(self, exc_info: Any = None) -> None:
        self.values.append(exc_info[1])


def answered(settled: Settled, reply: Reply) -> list[Any]:
    return [value for answers, _ in settled.calls for to, value, _ in answers if to is reply]


def test_a_parked_claim_takes_a_new_job_in_the_transaction_that_stores_it(rig: Rig) -> None:
    claim, parked = Reply(), Reply()
    delayed = rig.clock() + 60
    rig.flush(Create([JobSpec("echo", run_at=delayed)], NO_REPLY))
    settled = rig.flush(Claim(2, claim, parked=parked))  # nothing due: parked, not answered
    assert answered(settled, claim) == [] and [
        note.next_run_at for note in answered(settled, parked)
    ] == [delayed]
    before = rig.store.transactions
    settled = rig.flush(Create([JobSpec("echo")], NO_REPLY))
    assert rig.store.transactions == before + 1  # stored and claimed in one commit
    [claimed] = answered(settled, claim)
    [job] = claimed.jobs
    assert rig.status(job.id) is JobStatus.PROCESSING and job.owner == OWNER
    assert claimed.next_run_at == delayed
    assert answered(rig.flush(Create([JobSpec("echo")], NO_REPLY)), claim) == []  # answered once


def test_a_parked_claim_stays_parked_through_batches_that_make_no_due_work(rig: Rig) -> None:
    claim, parked = Reply(), Reply()
    rig.flush(Claim(1, claim, parked=parked))
    settled = rig.flush(
        Create([JobSpec("echo", run_at=rig.clock() + 60)], NO_REPLY), Barrier(NO_REPLY)
    )
    assert answered(settled, claim) == []
    settled = rig.flush(Create([JobSpec("echo")], NO_REPLY))
    assert [len(value.jobs) for value in answered(settled, claim)] == [1]


def test_unpark_answers_the_parked_claim_even_with_nothing_found(rig: Rig) -> None:
    claim, parked = Reply(), Reply()
    rig.flush(Claim(3, claim, parked=parked))
    settled = rig.flush(Unpark())
    [claimed] = answered(settled, claim)
    assert claimed.jobs == [] and claimed.next_run_at is None
    assert answered(rig.flush(Create([JobSpec("echo")], NO_REPLY)), claim) == []


def test_a_failed_batch_leaves_the_claim_parked_for_the_next(rig: Rig) -> None:
    claim, parked = Reply(), Reply()
    rig.flush(Claim(1, claim, parked=parked))
    rig.store.fail_next_transaction()
    settled = rig.flush(Create([JobSpec("echo")], NO_REPLY))
    assert settled.errors() == [StorageUnavailable] and answered(settled, claim) == []
    settled = rig.flush(Create([JobSpec("echo")], NO_REPLY))
    assert [len(value.jobs) for value in answered(settled, claim)] == [1]


def test_a_poke_runs_the_parked_claim_which_stays_parked_if_it_finds_nothing(rig: Rig) -> None:
    claim, parked = Reply(), Reply()
    rig.flush(Claim(1, claim, parked=parked))
    assert answered(rig.flush(Unpark(answer=False)), claim) == []
    delayed = rig.clock() + 30
    with rig.store.transaction() as tx:  # another node's job, not this Registry's work
        tx.insert(make_job("elsewhere", run_at=delayed))
    settled = rig.flush(Unpark(answer=False))
    assert answered(settled, claim) == [] and [
        note.next_run_at for note in answered(settled, parked)
    ] == [delayed]
    with rig.store.transaction() as tx:
        tx.insert(make_job("due-elsewhere", run_at=rig.clock()))
    [claimed] = answered(rig.flush(Unpark(answer=False)), claim)
    assert [job.id for job in claimed.jobs] == ["due-elsewhere"]


def test_a_workers_claim_with_its_outcome_leaves_the_parked_claim_parked(rig: Rig) -> None:
    """Finish-and-claim: a Worker's claim (no `parked`) shares the batch of the outcome
    that freed its slot, and neither answers nor displaces the Dispatcher's parked claim,
    which still takes the next submission in the commit that stores it."""
    rig.flush(Create([JobSpec("echo")], NO_REPLY))
    first = Reply()
    [claimed] = answered(rig.flush(Claim(1, first)), first)
    [job] = claimed.jobs
    parking, parked = Reply(), Reply()
    rig.flush(Claim(1, parking, parked=parked))  # another idle slot: nothing due, parks
    done = Outcome(job.id, job.attempts, OWNER, "worker-1.0", 0.1)
    again = Reply()
    settled = rig.flush(Finish(done), Claim(1, again))
    assert rig.status(job.id) is JobStatus.COMPLETED
    assert [value.jobs for value in answered(settled, again)] == [[]]
    assert answered(settled, parking) == []
    settled = rig.flush(Create([JobSpec("echo")], NO_REPLY))
    assert [len(value.jobs) for value in answered(settled, parking)] == [1]


def test_a_workers_claim_takes_due_jobs_in_the_transaction_of_its_outcome(rig: Rig) -> None:
    rig.flush(Create([JobSpec("echo"), JobSpec("echo")], NO_REPLY))
    first = Reply()
    [claimed] = answered(rig.flush(Claim(1, first)), first)
    [job] = claimed.jobs
    before, again = rig.store.transactions, Reply()
    settled = rig.flush(Finish(Outcome(job.id, job.attempts, OWNER, "w", 0.1)), Claim(1, again))
    assert rig.store.transactions == before + 1
    [[following]] = [value.jobs for value in answered(settled, again)]
    assert following.id != job.id and rig.status(following.id) is JobStatus.PROCESSING
