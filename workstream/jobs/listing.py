"""Which jobs to list, and one page of them: the query every layer passes along unchanged
(HTTP parses it, the gateway bounds its size, the store answers it). Also the summaries the
console reads (failure groups, throughput per minute)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from workstream.jobs.model import Job, JobStatus

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MIN_ERROR_TEXT = 3  # the error-text filter is a trigram index search: at least 3 characters
MAX_ERROR_TEXT = 200
MAX_ID_PREFIX = 36  # a UUID's length

Order = Literal["newest", "oldest"]
ORDERS: tuple[Order, ...] = ("newest", "oldest")

# A position in the listing order: (created_at, seq) of a job, seq being the store's
# submission order (ties in created_at are broken by it).
Position = tuple[float, int]


@dataclass(frozen=True)
class JobFilter:
    """Jobs newest first (by `created_at`, then submission order; `order="oldest"` for
    the other way), after the position `after` in that order: at most `limit`, and fewer
    once their payloads and results pass `max_bytes` (never fewer than one), so that a page
    of large jobs stays a bounded response.

    Filters (all optional, combined with AND): `status`; `job_type`; `created_after`
    (inclusive) and `created_before` (exclusive), Unix seconds; `id_prefix` (the start of
    the id, lower-case); `idempotency_key` (exact); `error`: text contained in
    `last_error`, case-insensitively (at least `MIN_ERROR_TEXT` characters)."""

    status: JobStatus | None = None
    job_type: str | None = None
    limit: int = DEFAULT_LIMIT
    after: Position | None = None
    max_bytes: int | None = None
    order: Order = "newest"
    created_after: float | None = None
    created_before: float | None = None
    id_prefix: str | None = None
    idempotency_key: str | None = None
    error: str | None = None

    @property
    def newest_first(self) -> bool:
        return self.order == "newest"

    def matches(self, job: Job) -> bool:
        """Whether `job` passes the filters (not the position): the definition every store
        implements in its own query language, written out once for the in-memory store and
        the tests."""
        return (
            (self.status is None or job.status is self.status)
            and (self.job_type is None or job.type == self.job_type)
            and (self.created_after is None or job.created_at >= self.created_after)
            and (self.created_before is None or job.created_at < self.created_before)
            and (self.id_prefix is None or job.id.startswith(self.id_prefix))
            and (self.idempotency_key is None or job.idempotency_key == self.idempotency_key)
            and (
                self.error is None
                or (job.last_error is not None and self.error.lower() in job.last_error.lower())
            )
        )


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_after: Position | None  # pass back as `after` for the next page; None when none remain


@dataclass(frozen=True)
class FailureGroup:
    """Jobs of one type that failed for good with one error class: how many, and when the
    latest of them failed (Unix seconds)."""

    job_type: str
    error_class: str | None
    count: int
    latest_at: float | None


@dataclass(frozen=True)
class MinuteCount:
    """Jobs that finished in the minute starting at `minute_start` (Unix seconds, a
    multiple of 60): completed, and failed for good."""

    minute_start: float
    completed: int
    failed: int


MAX_THROUGHPUT_MINUTES = 24 * 60
MAX_FAILURE_GROUPS = 1000


def minute_window(now: float, minutes: int) -> float:
    """The start of the first of the last `minutes` minutes (the current one included)."""
    return (now // 60 - (minutes - 1)) * 60


def per_minute(rows: list[tuple[float, str, int]], start: float, minutes: int) -> list[MinuteCount]:
    """One `MinuteCount` per minute from `start`, zeros included, from (minute start,
    status, jobs) rows."""
    completed: dict[float, int] = {}
    failed: dict[float, int] = {}
    for minute, status, count in rows:
        if status == JobStatus.COMPLETED.value:
            completed[minute] = completed.get(minute, 0) + count
        elif status == JobStatus.FAILED.value:
            failed[minute] = failed.get(minute, 0) + count
    out = []
    for index in range(minutes):
        minute = start + 60 * index
        out.append(MinuteCount(minute, completed.get(minute, 0), failed.get(minute, 0)))
    return out
