"""The job record and its public view."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workstream.units import format_time


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored. Times are Unix seconds (floats); the API renders them as RFC 3339.

    `owner` and `lease_expires_at` are set while a process holds the job (`processing`).
    `retry_base` is the value of `attempts` when the current run budget began (0, or the
    attempt count at the last manual retry): runs used = attempts - retry_base.
    """

    id: str
    type: str
    payload: Any
    status: JobStatus
    max_retries: int
    created_at: float
    updated_at: float
    run_at: float | None
    attempts: int = 0
    retry_base: int = 0
    last_error: str | None = None
    result: Any = None
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    lease_expires_at: float | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    error_class: str | None = None  # the class of `last_error` (e.g. RuntimeError)

    def replace(self, **changes: Any) -> Job:
        """A copy with `changes` (as `dataclasses.replace`, in a third of the time: every
        claim and outcome makes one)."""
        new = _new_job(Job)
        for name in _JOB_FIELDS:
            _set(new, name, changes.pop(name) if name in changes else getattr(self, name))
        if changes:
            raise TypeError(f"Job has no field {next(iter(changes))!r}")
        return new

    @property
    def runs_used(self) -> int:
        return self.attempts - self.retry_base

    @property
    def runs_allowed(self) -> int:
        return 1 + self.max_retries

    @property
    def failed_for_good(self) -> bool:
        return self.status is JobStatus.FAILED and self.run_at is None

    @property
    def finished(self) -> bool:
        """No further run will happen without a manual retry."""
        return self.status in (JobStatus.COMPLETED, JobStatus.CANCELLED) or self.failed_for_good

    def to_public(self) -> dict[str, Any]:
        """The job as the API shows it (SPEC section 3)."""
        return {
            "id": self.id,
            "type": self.type,
            "payload": self.payload,
            "status": self.status.value,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "last_error": self.last_error,
            "result": self.result,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
            "run_at": format_time(self.run_at),
        }


_JOB_FIELDS = tuple(item.name for item in dataclasses.fields(Job))
_new_job = object.__new__
_set = object.__setattr__  # how a frozen dataclass's own __init__ sets its fields


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler sees of its job: `handler(payload, job)`.

    `attempt` counts every run of the job, across manual retries (as `attempts` in the API).
    Each manual retry gives a fresh budget of 1 + `max_retries` runs: `attempt_in_budget`
    counts within the current one (1, 2, ... and again from 1 after a manual retry), and
    `is_last_attempt` says whether a failure now fails the job for good.
    """

    id: str
    type: str
    attempt: int
    max_retries: int
    created_at: float
    attempt_in_budget: int = 0  # 0: not given, the same as `attempt` (no manual retry)

    def __post_init__(self) -> None:
        if self.attempt_in_budget <= 0:
            _set(self, "attempt_in_budget", self.attempt)

    @property
    def attempts_allowed(self) -> int:
        """Runs the current budget allows: 1 + max_retries."""
        return 1 + self.max_retries

    @property
    def is_last_attempt(self) -> bool:
        """No run follows this one if it fails (until a person retries the job)."""
        return self.attempt_in_budget >= self.attempts_allowed

    @classmethod
    def of(cls, job: Job) -> JobContext:
        return cls(job.id, job.type, job.attempts, job.max_retries, job.created_at, job.runs_used)
