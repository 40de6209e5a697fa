"""The `job_started` event, made in one place for both Workers: the in-process one
publishes it from its built-in middleware, the process Worker when a job goes down to its
child (the child has no event bus)."""

from __future__ import annotations

from workstream.jobs.events import JOB_STARTED, JobEvent
from workstream.jobs.model import Job


def started_event(job: Job, worker: str, now: float) -> JobEvent:
    due = job.run_at if job.run_at is not None else job.created_at
    started_at = job.started_at or now
    return JobEvent(
        JOB_STARTED,
        job.id,
        job.type,
        job.attempts,
        now,
        worker=worker,
        queue_wait=max(0.0, started_at - due),
    )
