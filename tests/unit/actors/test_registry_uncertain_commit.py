"""The Registry when a failed COMMIT may have landed (docs/scaling.md, "A 503 during an
outage may hide a commit"): the connection drops while PostgreSQL commits, and the node
hears an error although the batch is stored.

`UncertainCommits` wraps a real store and makes chosen transactions fail in one of three
ways: the commit lands and then the acknowledgement is lost ("landed"), the transaction is
rolled back and then fails ("rolled_back"), or the store refuses it before anything runs
("unavailable"). Each test runs on the in-memory store and on SQLite; the same on real
PostgreSQL is in tests/integration/test_uncertain_commit.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.support import FakeClock
from tests.unit.actors.test_registry import LEASE, OWNER, Harness
from workstream.actors.registry_messages import Finish, Outcome, Sweep, Swept
from workstream.errors import StorageUnavailable
from workstream.jobs import states
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
from workstream.store.memory import MemoryStore
from workstream.store.sqlite import SqliteStore

LANDED = "landed"  # committed for real, then the acknowledgement was lost
ROLLED_BACK = "rolled_back"  # rolled back, then failed: nothing stored
UNAVAILABLE = "unavailable"  # refused before the transaction began


class UncertainCommits:
    """A real store whose next transactions fail as the test arms them (`fail_next`),
    one mode per transaction, in order; everything else is the wrapped store's."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self._modes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def fail_next(self, *modes: str) -> None:
        self._modes.extend(modes)

    @property
    def armed(self) -> int:
        return len(self._modes)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        mode = self._modes.pop(0) if self._modes else None
        if mode == UNAVAILABLE:
            raise StorageUnavailable("storage is unavailable (injected)")
        with self.inner.transaction() as tx:
            yield tx
            if mode == ROLLED_BACK:
                raise StorageUnavailable("connection lost before COMMIT (injected)")
        if mode == LANDED:
            raise StorageUnavailable("connection lost during COMMIT (injected; it landed)")


@pytest.fixture(params=["memory", "sqlite"])
def reg(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Harness]:
    inner: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    inner.open()
    harness = Harness(clock, UncertainCommits(inner))  # type: ignore[arg-type]
    yield harness
    harness.ref.stop()
    inner.close()


def uncertain(reg: Harness) -> UncertainCommits:
    assert isinstance(reg.store, UncertainCommits)
    return reg.store


def released_events(reg: Harness) -> list[Any]:
    return [event for event in reg.log.events if event.kind == JOB_RELEASED]


def claim_failing(reg: Harness, mode: str) -> None:
    """A claim whose transaction fails in `mode`; the caller hears StorageUnavailable."""
    uncertain(reg).fail_next(mode)
    with pytest.raises(StorageUnavailable):
        reg.claim()
    assert uncertain(reg).armed == 0


def same_row(job: Job, other: Job) -> bool:
    return (job.status, job.attempts, job.owner, job.lease_expires_at, job.run_at) == (
        other.status,
        other.attempts,
        other.owner,
        other.lease_expires_at,
        other.run_at,
    )


def test_a_claim_stored_despite_its_error_is_given_back_and_then_runs(reg: Harness) -> None:
    [job] = reg.create(JobSpec("echo", {"n": 1})).jobs
    claim_failing(reg, LANDED)
    stored = reg.stored(job.id)
    assert (stored.status, stored.attempts, stored.owner) == (JobStatus.PROCESSING, 1, OWNER)

    reg.barrier()  # the next batch undoes the claim, fenced on what it stored
    back = reg.stored(job.id)
    assert same_row(back, job), back
    assert back.status is JobStatus.PENDING and back.attempts == 0 and back.owner is None
    [event] = released_events(reg)
    assert (event.job_id, event.attempt, event.reason) == (job.id, 1, "unconfirmed_claim")

    [again] = reg.claim().jobs
    assert (again.id, again.attempts) == (job.id, 1)
    reg.finish(job.id, 1, result="done")
    done = reg.stored(job.id)
    assert (done.status, done.attempts, done.result) == (JobStatus.COMPLETED, 1, "done")
    assert JOB_FENCED not in reg.log.kinds()


def test_a_job_on_its_last_attempt_is_not_failed_without_running(
    reg: Harness, clock: FakeClock
) -> None:
    [job] = reg.create(JobSpec("echo", max_retries=0)).jobs
    claim_failing(reg, LANDED)
    reg.barrier()
    clock.advance(LEASE + 1)  # past the lost claim's lease: nothing is left to recover
    swept = reg.ask(lambda reply: Sweep(reply))
    assert swept == Swept(requeued=0, recovered=0, more=False)
    assert reg.stored(job.id).status is JobStatus.PENDING
    [again] = reg.claim().jobs
    assert again.attempts == 1
    reg.finish(job.id, 1, result="ran")
    assert reg.stored(job.id).status is JobStatus.COMPLETED
    assert JOB_FAILED not in reg.log.kinds()
    assert JOB_RECOVERED not in reg.log.kinds()


def test_a_claim_that_did_not_land_leaves_everything_as_it_was(reg: Harness) -> None:
    [job] = reg.create(JobSpec("echo")).jobs
    before = reg.stored(job.id)
    claim_failing(reg, ROLLED_BACK)
    assert reg.stored(job.id) == before
    reg.barrier()  # the release is tried, and its fence does not match: a no-op
    assert reg.stored(job.id) == before
    assert released_events(reg) == []
    [again] = reg.claim().jobs
    assert again.attempts == 1
    reg.finish(job.id, 1)
    assert reg.stored(job.id).status is JobStatus.COMPLETED


@pytest.mark.parametrize("mode", [LANDED, ROLLED_BACK])
def test_a_release_never_touches_a_job_another_node_holds_now(
    reg: Harness, clock: FakeClock, mode: str
) -> None:
    """Before the release runs, another node took the job: after this claim had not
    landed, or (with a clock ahead of ours) after recovering the claim that had."""
    check_a_release_spares_another_owner(reg, clock, mode)


def check_a_release_spares_another_owner(reg: Harness, clock: FakeClock, mode: str) -> None:
    """(Also run against PostgreSQL by tests/integration/test_uncertain_commit.py.)"""
    [job] = reg.create(JobSpec("echo")).jobs
    claim_failing(reg, mode)
    with reg.store.transaction() as tx:  # node-b, whose clock says our lease is over
        current = tx.get(job.id)
        assert current is not None
        if current.status is JobStatus.PROCESSING:
            back = states.recover(current, now=clock.now, reason="lease expired (node-b)")
            assert tx.update(back, current)
            current = back
        theirs = states.claim(current, owner="node-b", now=clock.now, lease=LEASE)
        assert tx.update(theirs, current)
    reg.barrier()
    assert reg.stored(job.id) == theirs
    assert released_events(reg) == []


def test_a_claim_retaken_while_the_release_fails_is_not_released(reg: Harness) -> None:
    """The claim did not land; the batch that would release it fails, and the same flush
    claims the job again (same attempt, same owner) for real. The stale release must not
    then undo the new claim that a worker is running."""
    [job] = reg.create(JobSpec("echo")).jobs
    claim_failing(reg, ROLLED_BACK)
    uncertain(reg).fail_next(UNAVAILABLE)  # the kept batch (the release) fails
    [again] = reg.claim().jobs
    assert (again.id, again.attempts, again.owner) == (job.id, 1, OWNER)
    reg.barrier()
    assert reg.stored(job.id).status is JobStatus.PROCESSING
    reg.finish(job.id, 1, result="ok")
    assert reg.stored(job.id).status is JobStatus.COMPLETED
    assert JOB_FENCED not in reg.log.kinds()
    assert released_events(reg) == []


def test_the_release_is_retried_while_the_store_keeps_failing(reg: Harness) -> None:
    [job] = reg.create(JobSpec("echo")).jobs
    claim_failing(reg, LANDED)
    uncertain(reg).fail_next(UNAVAILABLE, UNAVAILABLE, UNAVAILABLE)  # release, barrier, release
    with pytest.raises(StorageUnavailable):
        reg.barrier()
    assert reg.stored(job.id).status is JobStatus.PROCESSING
    reg.create(JobSpec("echo"))  # the release fails once more; the request gets through
    assert reg.stored(job.id).status is JobStatus.PROCESSING
    reg.barrier()
    assert same_row(reg.stored(job.id), job)
    assert len(released_events(reg)) == 1


def test_a_release_still_pending_when_the_lease_ends_is_left_to_the_sweeper(
    reg: Harness, clock: FakeClock
) -> None:
    [job] = reg.create(JobSpec("echo")).jobs
    claim_failing(reg, LANDED)
    clock.advance(LEASE + 1)  # no batch ran before the lease ended
    swept = reg.ask(lambda reply: Sweep(reply))
    assert swept.recovered == 1
    recovered = reg.stored(job.id)
    assert (recovered.status, recovered.attempts) == (JobStatus.PENDING, 1)  # counted
    assert released_events(reg) == []


# -- an outcome whose commit landed but was reported failed ---------------------------


def finish_failing(reg: Harness, mode: str, job_id: str, **outcome: Any) -> None:
    """An outcome whose batch fails in `mode`, and then the batch that retries it."""
    uncertain(reg).fail_next(mode)
    reg.ref.tell(Finish(Outcome(job_id, 1, OWNER, "worker-1", 0.01, **outcome)))
    with suppress(StorageUnavailable):
        reg.barrier()  # in the failing batch, or the one after it: the inbox decides
    reg.barrier()
    assert uncertain(reg).armed == 0


@pytest.mark.parametrize("error", [None, "boom"])
def test_an_outcome_stored_despite_its_error_is_published_once_and_not_fenced(
    reg: Harness, error: str | None
) -> None:
    [job] = reg.create(JobSpec("echo", max_retries=0)).jobs
    reg.claim()
    finish_failing(reg, LANDED, job.id, error=error, result=None if error else {"sum": [1, 2]})
    stored = reg.stored(job.id)
    assert stored.status is (JobStatus.COMPLETED if error is None else JobStatus.FAILED)
    kinds = reg.log.kinds()
    assert JOB_FENCED not in kinds
    kind = JOB_COMPLETED if error is None else JOB_FAILED
    [event] = [event for event in reg.log.events if event.kind == kind]
    assert (event.job_id, event.attempt, event.final) == (job.id, 1, True)


def test_an_outcome_kept_after_a_rolled_back_commit_is_written_once(reg: Harness) -> None:
    [job] = reg.create(JobSpec("echo")).jobs
    reg.claim()
    finish_failing(reg, ROLLED_BACK, job.id, result="ok")
    assert reg.stored(job.id).status is JobStatus.COMPLETED
    assert reg.log.kinds().count(JOB_COMPLETED) == 1
    assert JOB_FENCED not in reg.log.kinds()


def test_a_late_outcome_is_still_refused_as_before(reg: Harness, clock: FakeClock) -> None:
    """Not kept from a failed batch: a late outcome for a job recovered meanwhile is
    refused and counted, as always."""
    [job] = reg.create(JobSpec("echo")).jobs
    reg.claim()
    clock.advance(LEASE + 1)
    with reg.store.transaction() as tx:  # the sweeper of another node
        current = tx.get(job.id)
        back = states.recover(current, now=clock.now, reason="lease expired")
        assert tx.update(back, current)
    reg.finish(job.id, 1, result="late")
    assert JOB_FENCED in reg.log.kinds()
    assert JOB_COMPLETED not in reg.log.kinds()


def test_a_repeated_outcome_not_kept_from_a_failed_batch_is_still_refused(
    reg: Harness,
) -> None:
    """Only an outcome kept from a failed batch may find itself already stored; the same
    outcome reported twice is refused the second time, as always."""
    [job] = reg.create(JobSpec("echo")).jobs
    reg.claim()
    reg.finish(job.id, 1, result="ok")
    reg.finish(job.id, 1, result="ok")
    assert reg.log.kinds().count(JOB_COMPLETED) == 1
    assert reg.log.kinds().count(JOB_FENCED) == 1
