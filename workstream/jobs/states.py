"""The job state machine: the only definition of what may change into what.

`TRANSITIONS` maps (current status, action) to the next status. Every function below goes
through `_move`, so a change the table does not list is refused with `IllegalTransition`,
never applied. Functions take a `Job` and return the changed `Job`; they do no I/O.

Completion, failure and release are *fenced*: they apply only while the job is still
`processing` under the same owner and attempt that ran it; otherwise `StaleAttempt`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from workstream.errors import IllegalTransition, StaleAttempt
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.units import valid_text

PENDING = JobStatus.PENDING
PROCESSING = JobStatus.PROCESSING
COMPLETED = JobStatus.COMPLETED
FAILED = JobStatus.FAILED
CANCELLED = JobStatus.CANCELLED


class Action(StrEnum):
    CLAIM = "claim"  # a worker slot takes the job: attempt + 1, owner and lease set
    COMPLETE = "complete"  # the handler returned
    FAIL = "fail"  # the handler raised, timed out, or the attempt was lost with no runs left
    RELEASE = "release"  # graceful shutdown returns a running job: attempt not counted
    SNOOZE = "snooze"  # the handler deferred its job (Snooze, RateLimited): not counted
    RECOVER = "recover"  # the attempt was interrupted (crash, expired lease): attempt counted
    REQUEUE = "requeue"  # the sweeper: a failed job's backoff is over
    RETRY = "retry"  # a person asks for another round of runs
    CANCEL = "cancel"


TRANSITIONS: dict[tuple[JobStatus, Action], JobStatus] = {
    (PENDING, Action.CLAIM): PROCESSING,
    (PENDING, Action.CANCEL): CANCELLED,
    (PROCESSING, Action.COMPLETE): COMPLETED,
    (PROCESSING, Action.FAIL): FAILED,
    (PROCESSING, Action.RELEASE): PENDING,
    (PROCESSING, Action.SNOOZE): PENDING,
    (PROCESSING, Action.RECOVER): PENDING,
    (FAILED, Action.REQUEUE): PENDING,
    (FAILED, Action.RETRY): PENDING,
    (FAILED, Action.CANCEL): CANCELLED,
}

MAX_ERROR_LENGTH = 4000


def allowed_changes() -> frozenset[tuple[JobStatus, JobStatus]]:
    """Every (from, to) status pair that some action allows."""
    return frozenset((src, dst) for (src, _), dst in TRANSITIONS.items())


def _move(job: Job, action: Action) -> JobStatus:
    target = TRANSITIONS.get((job.status, action))
    if target is None:
        raise IllegalTransition(f"cannot {action.value} a job that is {job.status.value}")
    return target


def _check_fence(job: Job, attempt: int, owner: str) -> None:
    if job.status is not PROCESSING or job.attempts != attempt or job.owner != owner:
        raise StaleAttempt(
            f"job {job.id} attempt {attempt} by {owner} no longer holds the job "
            f"(now {job.status.value}, attempt {job.attempts}, owner {job.owner})"
        )


_CLIPPED = " ... (truncated)"


def clip_error(message: str) -> str:
    """Bound an error message's length and make it storable: text that cannot be encoded
    as UTF-8 (lone surrogates, e.g. from undecodable file names) is replaced."""
    message = valid_text(message)
    if len(message) <= MAX_ERROR_LENGTH:
        return message
    return message[: MAX_ERROR_LENGTH - len(_CLIPPED)] + _CLIPPED


def claim(job: Job, *, owner: str, now: float, lease: float) -> Job:
    status = _move(job, Action.CLAIM)
    if job.run_at is not None and job.run_at > now:
        raise IllegalTransition(f"job {job.id} is not due yet")
    return job.replace(
        status=status,
        attempts=job.attempts + 1,
        owner=owner,
        lease_expires_at=now + lease,
        started_at=now,
        updated_at=now,
    )


def complete(job: Job, *, attempt: int, owner: str, result: Any, now: float) -> Job:
    _check_fence(job, attempt, owner)
    status = _move(job, Action.COMPLETE)
    return job.replace(
        status=status,
        result=result,
        run_at=None,
        finished_at=now,
        updated_at=now,
        owner=None,
        lease_expires_at=None,
    )


def _end_attempt(
    job: Job, status: JobStatus, *, error: str, run_at: float | None, now: float
) -> Job:
    """The attempt is over and failed: record why, and when (if ever) the job runs next."""
    return job.replace(
        status=status,
        last_error=clip_error(error),
        run_at=run_at,
        finished_at=now if run_at is None and status is FAILED else None,
        updated_at=now,
        owner=None,
        lease_expires_at=None,
    )


def _fail_or_schedule(job: Job, *, error: str, now: float, policy: RetryPolicy) -> Job:
    """The attempt has failed: schedule the next run if the budget allows, else fail for good."""
    status = _move(job, Action.FAIL)
    run_at = now + policy.delay(job.runs_used) if job.runs_used < job.runs_allowed else None
    return _end_attempt(job, status, error=error, run_at=run_at, now=now)


def fail(job: Job, *, attempt: int, owner: str, error: str, now: float, policy: RetryPolicy) -> Job:
    _check_fence(job, attempt, owner)
    return _fail_or_schedule(job, error=error, now=now, policy=policy)


def release(job: Job, *, attempt: int, owner: str, now: float) -> Job:
    """Graceful shutdown: give the job back without counting the attempt that was cut short."""
    _check_fence(job, attempt, owner)
    status = _move(job, Action.RELEASE)
    return job.replace(
        status=status,
        attempts=job.attempts - 1,
        run_at=now,
        updated_at=now,
        owner=None,
        lease_expires_at=None,
    )


def snooze(job: Job, *, attempt: int, owner: str, now: float, run_at: float) -> Job:
    """The handler put its job off (Snooze, RateLimited): pending again at `run_at`,
    without counting the attempt."""
    _check_fence(job, attempt, owner)
    status = _move(job, Action.SNOOZE)
    return job.replace(
        status=status,
        attempts=job.attempts - 1,
        run_at=run_at,
        updated_at=now,
        owner=None,
        lease_expires_at=None,
    )


def recover(job: Job, *, now: float, reason: str) -> Job:
    """An attempt was interrupted (crash, lost lease). It counts: run again if runs are left."""
    if job.runs_used < job.runs_allowed:
        return _end_attempt(job, _move(job, Action.RECOVER), error=reason, run_at=now, now=now)
    return _end_attempt(job, _move(job, Action.FAIL), error=reason, run_at=None, now=now)


def requeue(job: Job, *, now: float) -> Job:
    """The sweeper: a failed job whose backoff is over runs again."""
    status = _move(job, Action.REQUEUE)
    if job.run_at is None:
        raise IllegalTransition(f"job {job.id} failed for good; only a manual retry re-queues it")
    if job.run_at > now:
        raise IllegalTransition(f"job {job.id} is not due for retry yet")
    return job.replace(status=status, updated_at=now, finished_at=None)


def retry(job: Job, *, now: float) -> Job:
    """A manual retry: pending now, with a fresh budget of 1 + max_retries runs."""
    status = _move(job, Action.RETRY)
    return job.replace(
        status=status,
        retry_base=job.attempts,
        run_at=now,
        finished_at=None,
        updated_at=now,
    )


def cancel(job: Job, *, now: float) -> Job:
    status = _move(job, Action.CANCEL)
    return job.replace(status=status, run_at=None, finished_at=now, updated_at=now)
