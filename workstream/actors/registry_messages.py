"""The Registry's messages: the commands it takes and the answers it gives.

Every change of job state is one of these, sent with `tell`. A command that needs an answer
carries a `reply` (see `replies.py`); the answer is resolved only after the command's batch
is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workstream.actors.replies import Reply, Ticket
from workstream.jobs.limits import SWEEP_BATCH
from workstream.jobs.model import Job
from workstream.jobs.spec import JobSpec


@dataclass(frozen=True, slots=True)
class Create:
    """Store `specs` as new jobs, all or none. `limit` is the capacity: the most jobs that
    may be pending and due once these are added (None: no limit)."""

    specs: list[JobSpec]
    reply: Reply
    limit: int | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    ticket: Ticket | None = None  # settles a race with a caller that stops waiting


@dataclass(frozen=True, slots=True)
class Created:
    jobs: list[Job]
    created: bool  # False: an idempotent repeat, `jobs` is what the first request stored


@dataclass(frozen=True, slots=True)
class Claim:
    """Mark up to `limit` due jobs `processing` for this process and hand them back."""

    limit: int
    reply: Reply


@dataclass(frozen=True, slots=True)
class Claimed:
    jobs: list[Job]
    next_run_at: float | None  # when the earliest not-yet-due pending job becomes due


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a Worker reports about one attempt. `error` None means success."""

    job_id: str
    attempt: int
    owner: str
    worker: str
    duration: float
    result: Any = None
    error: str | None = None
    error_is_internal: bool = False  # set when the Registry itself failed to store an outcome
    abandoned: bool = False  # timed out, and the handler's call may still be running
    # For the attempt history (workstream.jobs.attempts): how a failed attempt ended (None:
    # `failed`), the error's class, its traceback (bounded), the worker process's pid.
    ending: str | None = None
    error_class: str | None = None
    traceback: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """An abandoned (timed-out) handler call has finally returned: the job may be retried."""

    job_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Cancel:
    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class Retry:
    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class Sweep:
    """Requeue failed jobs whose backoff is over and recover jobs whose lease expired."""

    reply: Reply | None = None
    limit: int = SWEEP_BATCH


@dataclass(frozen=True, slots=True)
class Swept:
    requeued: int
    recovered: int
    more: bool  # the batch limit was reached: sweep again


@dataclass(frozen=True, slots=True)
class RenewLeases:
    pass


@dataclass(frozen=True, slots=True)
class Recover:
    """Start-up: every job left `processing` (by `owner`, or by anyone when None) was
    interrupted; its attempt counts."""

    reply: Reply
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """Graceful shutdown: give back this process's running jobs (all of them, or `job_ids`)
    without counting the attempt. Answers how many were returned to pending."""

    reply: Reply | None = None
    job_ids: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Barrier:
    """Answers once everything sent before it is committed."""

    reply: Reply
