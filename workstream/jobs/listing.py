"""Which jobs to list, and one page of them: the query every layer passes along unchanged
(HTTP parses it, the gateway bounds its size, the store answers it)."""

from __future__ import annotations

from dataclasses import dataclass

from workstream.jobs.model import Job, JobStatus

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class JobFilter:
    """Jobs oldest first (by submission order), after the position `after`: at most
    `limit`, and fewer once their payloads and results pass `max_bytes` (never fewer than
    one), so that a page of large jobs stays a bounded response."""

    status: JobStatus | None = None
    job_type: str | None = None
    limit: int = DEFAULT_LIMIT
    after: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_after: int | None  # pass back as `after` for the next page; None when none remain
