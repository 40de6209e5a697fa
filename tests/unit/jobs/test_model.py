"""The job record (workstream/jobs/model.py): budget properties and the public view."""

from __future__ import annotations

import pytest

from workstream.jobs.model import Job, JobContext, JobStatus

NOW = 1_700_000_000.0


def make(**changes) -> Job:
    job = Job(
        id="8d3b1c1e-0000-4000-8000-000000000001",
        type="echo",
        payload={"a": [1, None]},
        status=JobStatus.PENDING,
        max_retries=3,
        created_at=NOW,
        updated_at=NOW,
        run_at=NOW,
    )
    return job.replace(**changes)


def test_budget_properties():
    job = make(attempts=7, retry_base=5, max_retries=2)
    assert job.runs_used == 2
    assert job.runs_allowed == 3


@pytest.mark.parametrize(
    ("status", "run_at", "for_good", "finished"),
    [
        (JobStatus.PENDING, NOW, False, False),
        (JobStatus.PROCESSING, NOW, False, False),
        (JobStatus.FAILED, NOW + 5, False, False),
        (JobStatus.FAILED, None, True, True),
        (JobStatus.COMPLETED, None, False, True),
        (JobStatus.CANCELLED, None, False, True),
    ],
)
def test_finished_and_failed_for_good(status, run_at, for_good, finished):
    job = make(status=status, run_at=run_at)
    assert job.failed_for_good is for_good
    assert job.finished is finished


def test_public_view_renders_times_and_hides_internals():
    job = make(
        status=JobStatus.PROCESSING,
        attempts=1,
        started_at=NOW + 0.5,
        owner="node-a",
        lease_expires_at=NOW + 30,
        idempotency_key="k",
        request_hash="h",
    )
    assert job.to_public() == {
        "id": job.id,
        "type": "echo",
        "payload": {"a": [1, None]},
        "status": "processing",
        "attempts": 1,
        "max_retries": 3,
        "priority": 5,
        "last_error": None,
        "result": None,
        "created_at": "2023-11-14T22:13:20.000000Z",
        "updated_at": "2023-11-14T22:13:20.000000Z",
        "started_at": "2023-11-14T22:13:20.500000Z",
        "finished_at": None,
        "run_at": "2023-11-14T22:13:20.000000Z",
    }


def test_job_context_is_what_a_handler_sees():
    job = make(attempts=2)
    assert JobContext.of(job) == JobContext(job.id, "echo", 2, 3, NOW)
    assert JobContext.of(job).attempt_in_budget == 2


@pytest.mark.parametrize(
    ("attempts", "retry_base", "in_budget", "last"),
    [(1, 0, 1, False), (3, 0, 3, False), (4, 0, 4, True), (5, 4, 1, False), (8, 4, 4, True)],
)
def test_job_context_counts_attempts_within_the_current_budget(
    attempts: int, retry_base: int, in_budget: int, last: bool
) -> None:
    """max_retries 3: four runs per budget; a manual retry after attempt 4 starts a new one."""
    context = JobContext.of(make(attempts=attempts, retry_base=retry_base))
    assert context.attempt == attempts  # the lifetime count goes on, as in the API
    assert (context.attempt_in_budget, context.is_last_attempt) == (in_budget, last)
    assert context.attempts_allowed == 4


def test_replace_returns_a_new_job():
    job = make()
    changed = job.replace(attempts=1)
    assert (job.attempts, changed.attempts) == (0, 1)
