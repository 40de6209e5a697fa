"""The job state machine (workstream/jobs/states.py): the table, every action from every
status, fencing, run budgets and backoff scheduling. Pure functions: `now` is passed in."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from workstream.errors import IllegalTransition, StaleAttempt
from workstream.jobs import states
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.states import MAX_ERROR_LENGTH, TRANSITIONS, Action, allowed_changes

NOW = 1_700_000_000.0
OWNER = "node-a"
LEASE = 30.0

PENDING = JobStatus.PENDING
PROCESSING = JobStatus.PROCESSING
COMPLETED = JobStatus.COMPLETED
FAILED = JobStatus.FAILED
CANCELLED = JobStatus.CANCELLED

EXPECTED_CHANGES = frozenset(
    {
        (PENDING, PROCESSING),
        (PENDING, CANCELLED),
        (PROCESSING, COMPLETED),
        (PROCESSING, FAILED),
        (PROCESSING, PENDING),
        (FAILED, PENDING),
        (FAILED, CANCELLED),
    }
)


def exact_policy(base: float = 2.0, cap: float = 10_000.0) -> RetryPolicy:
    """Backoff without jitter: delay(n) == base * 2 ** (n - 1) exactly (below the cap)."""
    return RetryPolicy(base=base, cap=cap, uniform=lambda low, high: 1.0)


def job_in(status: JobStatus, **changes: Any) -> Job:
    """A consistent job in `status`, as the state machine would have left it."""
    base = Job(
        id="job-1",
        type="echo",
        payload={"n": 1},
        status=PENDING,
        max_retries=3,
        created_at=NOW - 100,
        updated_at=NOW - 100,
        run_at=NOW - 100,
    )
    shapes: dict[JobStatus, dict[str, Any]] = {
        PENDING: {},
        PROCESSING: {
            "attempts": 1,
            "owner": OWNER,
            "lease_expires_at": NOW + LEASE,
            "started_at": NOW - 10,
            "updated_at": NOW - 10,
        },
        COMPLETED: {
            "attempts": 1,
            "run_at": None,
            "result": {"ok": True},
            "started_at": NOW - 20,
            "finished_at": NOW - 10,
            "updated_at": NOW - 10,
        },
        FAILED: {  # failed with a retry due (backoff over)
            "attempts": 1,
            "run_at": NOW - 1,
            "last_error": "boom",
            "started_at": NOW - 20,
            "updated_at": NOW - 10,
        },
        CANCELLED: {"run_at": None, "finished_at": NOW - 10, "updated_at": NOW - 10},
    }
    return base.replace(status=status, **shapes[status]).replace(**changes)


def failed_for_good(**changes: Any) -> Job:
    return job_in(FAILED, attempts=4, run_at=None, finished_at=NOW - 10, **changes)


# -- the table --------------------------------------------------------------------------


def test_allowed_changes_is_exactly_the_expected_set():
    assert allowed_changes() == EXPECTED_CHANGES


@pytest.mark.parametrize(
    ("src", "dst"),
    list(itertools.product(JobStatus, JobStatus)),
    ids=lambda status: status.value,
)
def test_every_status_pair_is_legal_exactly_when_expected(src, dst):
    assert ((src, dst) in allowed_changes()) is ((src, dst) in EXPECTED_CHANGES)


def test_finished_statuses_have_no_way_out():
    for (src, _action), _dst in TRANSITIONS.items():
        assert src not in (COMPLETED, CANCELLED)


# -- every (status, action) -------------------------------------------------------------

# How each action is invoked on a job, with the arguments a real caller passes. The fenced
# actions use the job's own attempt and owner, so only the status decides.
ACTION_CALLS: dict[Action, Callable[[Job], Job]] = {
    Action.CLAIM: lambda job: states.claim(job, owner=OWNER, now=NOW, lease=LEASE),
    Action.COMPLETE: lambda job: states.complete(
        job, attempt=job.attempts, owner=OWNER, result="r", now=NOW
    ),
    Action.FAIL: lambda job: states.fail(
        job, attempt=job.attempts, owner=OWNER, error="e", now=NOW, policy=exact_policy()
    ),
    Action.RELEASE: lambda job: states.release(job, attempt=job.attempts, owner=OWNER, now=NOW),
    Action.SNOOZE: lambda job: states.snooze(
        job, attempt=job.attempts, owner=OWNER, now=NOW, run_at=NOW + 30
    ),
    Action.RECOVER: lambda job: states.recover(job, now=NOW, reason="interrupted"),
    Action.REQUEUE: lambda job: states.requeue(job, now=NOW),
    Action.RETRY: lambda job: states.retry(job, now=NOW),
    Action.CANCEL: lambda job: states.cancel(job, now=NOW),
}
FENCED = {Action.COMPLETE, Action.FAIL, Action.RELEASE, Action.SNOOZE}


def test_every_action_has_a_call_in_this_test():
    assert set(ACTION_CALLS) == set(Action)


@pytest.mark.parametrize(
    ("status", "action"),
    list(itertools.product(JobStatus, Action)),
    ids=lambda value: value.value,
)
def test_each_action_from_each_status_follows_the_table(status, action):
    job = job_in(status)
    target = TRANSITIONS.get((status, action))
    if target is not None:
        assert ACTION_CALLS[action](job).status is target
    elif action in FENCED:
        # Fenced actions refuse anything that is no longer `processing` as stale.
        with pytest.raises(StaleAttempt):
            ACTION_CALLS[action](job)
    else:
        with pytest.raises(IllegalTransition, match=f"cannot {action.value}"):
            ACTION_CALLS[action](job)


def test_a_refused_action_leaves_the_job_unchanged():
    job = job_in(COMPLETED)
    before = job.replace()
    with pytest.raises(IllegalTransition):
        states.cancel(job, now=NOW)
    with pytest.raises(IllegalTransition):
        states.retry(job, now=NOW)
    assert job == before


# -- fencing ----------------------------------------------------------------------------

FENCED_CALLS = {
    "complete": lambda job, attempt, owner: states.complete(
        job, attempt=attempt, owner=owner, result=None, now=NOW
    ),
    "fail": lambda job, attempt, owner: states.fail(
        job, attempt=attempt, owner=owner, error="e", now=NOW, policy=exact_policy()
    ),
    "release": lambda job, attempt, owner: states.release(
        job, attempt=attempt, owner=owner, now=NOW
    ),
}


@pytest.mark.parametrize("name", sorted(FENCED_CALLS))
def test_fenced_action_with_a_wrong_attempt_is_stale(name):
    job = job_in(PROCESSING, attempts=2)
    with pytest.raises(StaleAttempt, match="no longer holds"):
        FENCED_CALLS[name](job, 1, OWNER)


@pytest.mark.parametrize("name", sorted(FENCED_CALLS))
def test_fenced_action_with_a_wrong_owner_is_stale(name):
    job = job_in(PROCESSING)
    with pytest.raises(StaleAttempt):
        FENCED_CALLS[name](job, job.attempts, "node-b")


@pytest.mark.parametrize("name", sorted(FENCED_CALLS))
@pytest.mark.parametrize("status", [PENDING, COMPLETED, FAILED, CANCELLED], ids=str)
def test_fenced_action_on_a_job_no_longer_processing_is_stale(name, status):
    # Same attempt number and owner as the run that ended, but the job moved on.
    job = job_in(status, attempts=1, owner=OWNER)
    with pytest.raises(StaleAttempt):
        FENCED_CALLS[name](job, 1, OWNER)


def test_a_late_completion_after_recovery_and_a_new_claim_is_stale():
    first = job_in(PROCESSING)
    recovered = states.recover(first, now=NOW, reason="lease expired")
    second = states.claim(recovered, owner="node-b", now=NOW, lease=LEASE)
    with pytest.raises(StaleAttempt):
        states.complete(second, attempt=first.attempts, owner=OWNER, result=1, now=NOW)
    # The current holder still can.
    done = states.complete(second, attempt=second.attempts, owner="node-b", result=1, now=NOW)
    assert done.status is COMPLETED


# -- claim ------------------------------------------------------------------------------


def test_claim_takes_the_job_and_counts_the_attempt():
    job = job_in(PENDING, attempts=2, retry_base=2)
    taken = states.claim(job, owner=OWNER, now=NOW, lease=LEASE)
    assert taken.status is PROCESSING
    assert taken.attempts == 3
    assert taken.retry_base == 2
    assert taken.owner == OWNER
    assert taken.lease_expires_at == NOW + LEASE
    assert taken.started_at == NOW
    assert taken.updated_at == NOW
    assert taken.finished_at is None


def test_claim_refuses_a_job_not_yet_due():
    job = job_in(PENDING, run_at=NOW + 0.001)
    with pytest.raises(IllegalTransition, match="not due"):
        states.claim(job, owner=OWNER, now=NOW, lease=LEASE)


def test_claim_takes_a_job_due_exactly_now():
    job = job_in(PENDING, run_at=NOW)
    assert states.claim(job, owner=OWNER, now=NOW, lease=LEASE).status is PROCESSING


# -- complete ---------------------------------------------------------------------------


def test_complete_finishes_the_job_and_keeps_the_earlier_error():
    job = job_in(PROCESSING, attempts=2, last_error="attempt 1 failed")
    done = states.complete(job, attempt=2, owner=OWNER, result={"x": [1, 2]}, now=NOW)
    assert done.status is COMPLETED
    assert done.result == {"x": [1, 2]}
    assert done.last_error == "attempt 1 failed"
    assert done.run_at is None
    assert done.finished_at == NOW
    assert done.updated_at == NOW
    assert done.owner is None
    assert done.lease_expires_at is None
    assert done.attempts == 2
    assert done.finished


# -- fail and the run budget ------------------------------------------------------------


def test_fail_with_runs_left_schedules_a_retry_after_the_backoff():
    job = job_in(PROCESSING, attempts=1, max_retries=3)
    failed = states.fail(job, attempt=1, owner=OWNER, error="boom", now=NOW, policy=exact_policy())
    assert failed.status is FAILED
    assert failed.run_at == NOW + 2.0  # base 2 x 2^0
    assert failed.finished_at is None
    assert failed.last_error == "boom"
    assert failed.attempts == 1
    assert failed.owner is None
    assert failed.lease_expires_at is None
    assert failed.updated_at == NOW
    assert not failed.failed_for_good
    assert not failed.finished


def test_fail_backoff_grows_with_the_runs_used():
    job = job_in(PROCESSING, attempts=3, max_retries=5)
    failed = states.fail(job, attempt=3, owner=OWNER, error="e", now=NOW, policy=exact_policy())
    assert failed.run_at == NOW + 8.0  # base 2 x 2^(3-1)


def test_fail_with_no_runs_left_fails_for_good():
    job = job_in(PROCESSING, attempts=4, max_retries=3)
    failed = states.fail(job, attempt=4, owner=OWNER, error="last", now=NOW, policy=exact_policy())
    assert failed.status is FAILED
    assert failed.run_at is None
    assert failed.finished_at == NOW
    assert failed.last_error == "last"
    assert failed.failed_for_good
    assert failed.finished


def test_fail_with_max_retries_zero_fails_for_good_at_once():
    job = job_in(PROCESSING, attempts=1, max_retries=0)
    failed = states.fail(job, attempt=1, owner=OWNER, error="e", now=NOW, policy=exact_policy())
    assert failed.failed_for_good


def run_until_failed_for_good(job: Job, policy: RetryPolicy, start: float) -> tuple[Job, list]:
    """Claim, fail and requeue (when due) until the job fails for good.
    Returns the job and the delays between each failure and its retry."""
    now = start
    delays = []
    for _ in range(1000):
        job = states.claim(job, owner=OWNER, now=now, lease=LEASE)
        job = states.fail(
            job,
            attempt=job.attempts,
            owner=OWNER,
            error=f"run {job.attempts}",
            now=now,
            policy=policy,
        )
        if job.failed_for_good:
            return job, delays
        delays.append(job.run_at - now)
        now = job.run_at
        job = states.requeue(job, now=now)
    raise AssertionError("the job never failed for good")


@pytest.mark.parametrize("max_retries", [0, 1, 3, 6])
def test_a_job_that_always_fails_runs_exactly_one_plus_max_retries_times(max_retries):
    job = job_in(PENDING, max_retries=max_retries, run_at=NOW)
    final, delays = run_until_failed_for_good(job, exact_policy(base=2.0), NOW)
    assert final.attempts == 1 + max_retries
    assert delays == [2.0 * 2 ** (n - 1) for n in range(1, max_retries + 1)]
    assert final.last_error == f"run {1 + max_retries}"


def test_manual_retry_gives_a_fresh_budget_while_attempts_keep_counting():
    policy = exact_policy(base=2.0)
    job = job_in(PENDING, max_retries=1, run_at=NOW)
    first, _ = run_until_failed_for_good(job, policy, NOW)
    assert (first.attempts, first.retry_base) == (2, 0)

    again = states.retry(first, now=NOW + 500)
    assert again.status is PENDING
    assert again.retry_base == 2
    assert again.attempts == 2
    assert again.runs_used == 0
    assert again.run_at == NOW + 500
    assert again.finished_at is None
    assert again.updated_at == NOW + 500
    assert again.last_error == first.last_error

    second, delays = run_until_failed_for_good(again, policy, NOW + 500)
    # Two more runs (1 + max_retries), and the backoff starts over from the base delay.
    assert second.attempts == 4
    assert second.retry_base == 2
    assert delays == [2.0]


def test_fail_after_a_manual_retry_counts_runs_from_the_retry():
    # attempts 6, retry_base 5: one run used of the new budget of 2.
    job = job_in(PROCESSING, attempts=6, retry_base=5, max_retries=1)
    failed = states.fail(job, attempt=6, owner=OWNER, error="e", now=NOW, policy=exact_policy())
    assert failed.run_at == NOW + 2.0
    # attempts 7, retry_base 5: both runs used.
    job = job_in(PROCESSING, attempts=7, retry_base=5, max_retries=1)
    failed = states.fail(job, attempt=7, owner=OWNER, error="e", now=NOW, policy=exact_policy())
    assert failed.failed_for_good


# -- recover: an interrupted attempt counts ---------------------------------------------


def test_recover_with_runs_left_puts_the_job_back_to_pending_now():
    job = job_in(PROCESSING, attempts=1, max_retries=1)
    reason = "attempt 1 was interrupted: its lease expired"
    back = states.recover(job, now=NOW, reason=reason)
    assert back.status is PENDING
    assert back.attempts == 1  # counted
    assert back.last_error == reason
    assert back.run_at == NOW
    assert back.owner is None
    assert back.lease_expires_at is None
    assert back.finished_at is None
    assert back.updated_at == NOW


def test_recover_with_no_runs_left_fails_for_good_with_the_interrupted_message():
    job = job_in(PROCESSING, attempts=2, max_retries=1)
    reason = "attempt 2 was interrupted: the server stopped while it ran"
    gone = states.recover(job, now=NOW, reason=reason)
    assert gone.status is FAILED
    assert gone.failed_for_good
    assert gone.last_error == reason
    assert "interrupted" in gone.last_error
    assert gone.run_at is None
    assert gone.finished_at == NOW
    assert gone.owner is None
    assert gone.lease_expires_at is None


def test_a_job_that_crashes_every_time_ends_failed_after_its_attempts():
    job = job_in(PENDING, max_retries=2, run_at=NOW)
    for attempt in range(1, 10):
        job = states.claim(job, owner=OWNER, now=NOW, lease=LEASE)
        job = states.recover(job, now=NOW, reason=f"attempt {attempt} was interrupted")
        if job.status is FAILED:
            break
    assert job.failed_for_good
    assert job.attempts == 3
    assert job.last_error == "attempt 3 was interrupted"


def test_recover_after_a_manual_retry_uses_the_new_budget():
    job = job_in(PROCESSING, attempts=5, retry_base=4, max_retries=1)
    assert states.recover(job, now=NOW, reason="interrupted").status is PENDING
    job = job_in(PROCESSING, attempts=5, retry_base=4, max_retries=0)
    assert states.recover(job, now=NOW, reason="interrupted").failed_for_good


def test_recover_clips_a_long_reason():
    job = job_in(PROCESSING)
    back = states.recover(job, now=NOW, reason="x" * (MAX_ERROR_LENGTH * 2))
    assert back.last_error.endswith("(truncated)")
    assert len(back.last_error) == MAX_ERROR_LENGTH


# -- release: a cut-short attempt does not count ----------------------------------------


def test_release_gives_the_job_back_without_counting_the_attempt():
    job = job_in(PROCESSING, attempts=3, retry_base=1, last_error="earlier")
    back = states.release(job, attempt=3, owner=OWNER, now=NOW)
    assert back.status is PENDING
    assert back.attempts == 2
    assert back.retry_base == 1
    assert back.run_at == NOW
    assert back.owner is None
    assert back.lease_expires_at is None
    assert back.last_error == "earlier"
    assert back.updated_at == NOW
    # The next claim reuses the same attempt number.
    again = states.claim(back, owner="node-b", now=NOW, lease=LEASE)
    assert again.attempts == 3


def test_snooze_defers_the_job_without_counting_the_attempt():
    job = job_in(PROCESSING, attempts=3, retry_base=1, last_error="earlier")
    back = states.snooze(job, attempt=3, owner=OWNER, now=NOW, run_at=NOW + 30)
    assert (back.status, back.attempts, back.retry_base) == (PENDING, 2, 1)
    assert back.run_at == NOW + 30
    assert back.owner is None and back.lease_expires_at is None
    assert back.last_error == "earlier"
    with pytest.raises(StaleAttempt):
        states.snooze(job, attempt=2, owner=OWNER, now=NOW, run_at=NOW)


# -- requeue: the sweeper ---------------------------------------------------------------


def test_requeue_puts_a_due_failed_job_back_to_pending():
    job = job_in(FAILED, run_at=NOW - 1, last_error="boom")
    back = states.requeue(job, now=NOW)
    assert back.status is PENDING
    assert back.run_at == NOW - 1
    assert back.finished_at is None
    assert back.last_error == "boom"
    assert back.attempts == job.attempts
    assert back.updated_at == NOW


def test_requeue_when_due_exactly_now():
    assert states.requeue(job_in(FAILED, run_at=NOW), now=NOW).status is PENDING


def test_requeue_refuses_a_job_failed_for_good():
    with pytest.raises(IllegalTransition, match="failed for good"):
        states.requeue(failed_for_good(), now=NOW)


def test_requeue_refuses_a_job_whose_backoff_is_not_over():
    with pytest.raises(IllegalTransition, match="not due"):
        states.requeue(job_in(FAILED, run_at=NOW + 0.5), now=NOW)


# -- retry and cancel -------------------------------------------------------------------


def test_retry_of_a_job_failed_for_good():
    job = failed_for_good(last_error="final")
    again = states.retry(job, now=NOW)
    assert again.status is PENDING
    assert again.retry_base == job.attempts
    assert again.run_at == NOW
    assert again.finished_at is None
    assert again.last_error == "final"


@pytest.mark.parametrize("status", [PROCESSING, COMPLETED, CANCELLED, PENDING], ids=str)
def test_retry_only_from_failed(status):
    with pytest.raises(IllegalTransition):
        states.retry(job_in(status), now=NOW)


@pytest.mark.parametrize(
    "job",
    [job_in(PENDING), job_in(PENDING, run_at=NOW + 3600), job_in(FAILED), failed_for_good()],
    ids=["pending", "pending-delayed", "failed-retry-due", "failed-for-good"],
)
def test_cancel_from_pending_or_failed(job):
    gone = states.cancel(job, now=NOW)
    assert gone.status is CANCELLED
    assert gone.run_at is None
    assert gone.finished_at == NOW
    assert gone.updated_at == NOW
    assert gone.finished


@pytest.mark.parametrize("status", [PROCESSING, COMPLETED, CANCELLED], ids=str)
def test_cancel_refused_from_other_statuses(status):
    with pytest.raises(IllegalTransition, match="cannot cancel"):
        states.cancel(job_in(status), now=NOW)


# -- error messages ---------------------------------------------------------------------


def test_short_error_messages_are_kept_whole():
    assert states.clip_error("boom") == "boom"
    exact = "y" * MAX_ERROR_LENGTH
    assert states.clip_error(exact) == exact


def test_long_error_messages_are_clipped_and_marked():
    message = "".join(str(n % 10) for n in range(MAX_ERROR_LENGTH * 3))
    clipped = states.clip_error(message)
    assert clipped.endswith(" ... (truncated)")
    assert message.startswith(clipped.removesuffix(" ... (truncated)"))
    assert len(clipped) == MAX_ERROR_LENGTH


@pytest.mark.parametrize("length", [MAX_ERROR_LENGTH + 1, MAX_ERROR_LENGTH + 16, 10**6])
def test_a_clipped_error_message_fits_the_limit_exactly(length):
    assert len(states.clip_error("z" * length)) == MAX_ERROR_LENGTH


def test_fail_clips_a_long_error():
    job = job_in(PROCESSING)
    failed = states.fail(
        job, attempt=1, owner=OWNER, error="e" * 100_000, now=NOW, policy=exact_policy()
    )
    assert failed.last_error.endswith("(truncated)")
    assert len(failed.last_error) == MAX_ERROR_LENGTH
