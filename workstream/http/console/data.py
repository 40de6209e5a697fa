"""What the console reads and does, through the `JobService` port only.

Schedules come from the scheduler extension, which not every server loads: `ConsoleData`
asks for them by name, and a page says so when there are none instead of failing. Every
method here returns plain values that the templates render.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workstream.errors import IllegalTransition, InvalidRequest, NotFound
from workstream.jobs.listing import (
    MAX_ID_PREFIX,
    MIN_ERROR_TEXT,
    ORDERS,
    JobFilter,
    JobPage,
    Position,
)
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.service import JobService

PAGE_SIZE = 50
BATCH_SIZE = 200  # jobs acted on per request step of a bulk action
COUNT_CAP = 10_000  # counts past this show as "10000+"
TYPE_COUNT_CAP = 100  # per type and status (three statuses x every type): "100+"
SCAN_CAP = 10_000  # jobs read to count a filter the store cannot apply (error class)
NO_CLASS = "-"  # the error_class parameter of failures with no error class


# The console's filter parameters (GET, bookmarkable) and the JobFilter field each maps to.
FILTER_PARAMS = {
    "status": "status",
    "type": "job_type",
    "created_after": "created_after",
    "created_before": "created_before",
    "id_prefix": "id_prefix",
    "idempotency_key": "idempotency_key",
    "error": "error",
    "order": "order",
}


@dataclass(frozen=True)
class Filters:
    """The console's job filters, as given in the query string (text, validated)."""

    values: dict[str, str]
    error_class: str = ""

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Filters:
        values: dict[str, str] = {}
        for name in FILTER_PARAMS:
            raw = params.get(name)
            if isinstance(raw, list):
                raw = raw[0] if raw else None
            if isinstance(raw, str) and raw.strip():
                values[name] = raw.strip()[:200]
        status = values.get("status")
        if status is not None and status not in {s.value for s in JobStatus}:
            raise InvalidRequest(f"status: must be one of {', '.join(s.value for s in JobStatus)}")
        if values.get("order") not in (None, *ORDERS):
            raise InvalidRequest(f"order: must be one of {', '.join(ORDERS)}")
        error = values.get("error")
        if error is not None and len(error) < MIN_ERROR_TEXT:
            raise InvalidRequest(f"error: at least {MIN_ERROR_TEXT} characters")
        if "id_prefix" in values:
            values["id_prefix"] = values["id_prefix"].lower()[:MAX_ID_PREFIX]
        error_class = params.get("error_class")
        if isinstance(error_class, list):
            error_class = error_class[0] if error_class else ""
        return cls(values, (error_class or "").strip()[:200])

    def query_items(self) -> list[tuple[str, str]]:
        items = sorted(self.values.items())
        if self.error_class:
            items.append(("error_class", self.error_class))
        return items

    def job_filter(self, *, limit: int, after: Position | None = None) -> JobFilter:
        kwargs: dict[str, Any] = {"limit": limit, "after": after}
        for name, value in self.values.items():
            field = FILTER_PARAMS[name]
            kwargs[field] = _convert(field, value)
        return JobFilter(**kwargs)

    def matches(self, job: Job) -> bool:
        """The part of the filter that the store could not apply, checked on each job."""
        if self.error_class and (job.error_class or NO_CLASS) != self.error_class:
            return False
        status = self.values.get("status")
        if status is not None and job.status.value != status:
            return False
        job_type = self.values.get("type")
        return job_type is None or job.type == job_type


def _convert(field: str, value: str) -> Any:
    if field == "status":
        return JobStatus(value)
    if field in ("created_after", "created_before"):
        return _parse_time(field, value)
    return value


def _parse_time(field: str, value: str) -> float:
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{field}: not an RFC 3339 time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(frozen=True)
class ActionOutcome:
    done: list[str]
    refused: list[tuple[str, str]]  # (job id, why)


class ConsoleData:
    """`schedules`: the scheduler's view (`schedules()`, `run_schedule(name)`), when the
    server has one; otherwise the job service's own methods of those names, if any."""

    def __init__(
        self,
        service: JobService,
        clock: Callable[[], float] = time.time,
        schedules: Any | None = None,
    ) -> None:
        self.service = service
        self.clock = clock
        self._schedules = schedules

    # -- capabilities -----------------------------------------------------------------------

    def _owner(self, name: str) -> Any:
        if name in ("schedules", "run_schedule") and self._schedules is not None:
            return self._schedules
        return self.service

    def has(self, name: str) -> bool:
        return callable(getattr(self._owner(name), name, None))

    def _call(self, name: str, *args: Any) -> Any:
        return getattr(self._owner(name), name)(*args)

    # -- reading ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The /metrics figures without its job counts (a scan of every job): the console
        counts with caps instead (`count_status`)."""
        return self.service.stats(counts=False)

    def health(self) -> Any:
        return self.service.health()

    def job(self, job_id: str) -> Job:
        return self.service.get(job_id)

    def attempts(self, job_id: str) -> list[Any]:
        return list(self.service.attempts(job_id))

    def page(self, filters: Filters, after: Position | None, limit: int = PAGE_SIZE) -> JobPage:
        page = self.service.list(filters.job_filter(limit=limit, after=after))
        jobs = [job for job in page.jobs if filters.matches(job)]
        return JobPage(jobs=jobs, next_after=page.next_after)

    def count(self, filters: Filters, cap: int = COUNT_CAP) -> tuple[int, bool]:
        """(count, capped): how many jobs the filter matches, at most `cap`. The store
        counts; an error class (which it cannot filter by) is counted by reading the jobs
        of the rest of the filter, at most SCAN_CAP of them."""
        if not filters.error_class:
            found = int(self.service.count(filters.job_filter(limit=1), cap))
            return min(found, cap), found >= cap
        total, seen, after = 0, 0, None
        while seen < SCAN_CAP:
            page = self.service.list(filters.job_filter(limit=1000, after=after))
            seen += len(page.jobs)
            total += sum(1 for job in page.jobs if filters.matches(job))
            if page.next_after is None:
                return min(total, cap), total >= cap
            after = page.next_after
        return min(total, cap), True

    def count_status(self, status: str, job_type: str | None = None) -> tuple[int, bool]:
        values = {"status": status}
        if job_type is not None:
            values["type"] = job_type
        return self.count(Filters(values))

    def failure_groups(self, limit: int = 50) -> list[dict[str, Any]]:
        return [
            {
                "job_type": group.job_type,
                "error_class": group.error_class,
                "class_param": group.error_class or NO_CLASS,
                "count": group.count,
                "latest_at": group.latest_at,
            }
            for group in self.service.failure_groups(limit)
        ]

    def throughput(self, minutes: int = 60) -> list[Any]:
        return list(self.service.throughput(minutes))

    def types(self) -> list[dict[str, Any]]:
        """Each job type's state, its counts capped (`types(count_cap=...)`)."""
        rows = [_as_dict(state) for state in self.service.types(TYPE_COUNT_CAP)]
        for row in rows:  # a count at the cap means "at least": shown as "100+"
            counts = row.get("counts") or {}
            row["counts"] = {k: (v, v >= TYPE_COUNT_CAP) for k, v in counts.items()}
        return rows

    def schedules(self) -> list[dict[str, Any]] | None:
        if not self.has("schedules"):
            return None
        return [_as_dict(state) for state in self._call("schedules")]

    def oldest_due_age(self) -> float | None:
        """Seconds the longest-waiting due pending job has waited (None: none is due)."""
        now = self.clock()
        page = self.service.list(
            Filters({"status": "pending", "order": "oldest"}).job_filter(limit=50)
        )
        due = [job.run_at for job in page.jobs if job.run_at is not None and job.run_at <= now]
        return now - min(due) if due else None

    # -- acting -----------------------------------------------------------------------------

    def act(self, action: str, job_ids: Iterable[str]) -> ActionOutcome:
        method = {"retry": self.service.retry, "cancel": self.service.cancel}[action]
        done: list[str] = []
        refused: list[tuple[str, str]] = []
        for job_id in job_ids:
            try:
                method(job_id)
            except (NotFound, IllegalTransition) as exc:
                refused.append((job_id, str(exc)))
            else:
                done.append(job_id)
        return ActionOutcome(done, refused)

    def act_on_batch(
        self, action: str, filters: Filters, after: Position | None
    ) -> tuple[ActionOutcome, Position | None, int]:
        """One step of a bulk action: the next BATCH_SIZE jobs the filter matches after
        `after`. Returns (outcome, next position or None when done, jobs looked at)."""
        page = self.service.list(filters.job_filter(limit=BATCH_SIZE, after=after))
        eligible = [job.id for job in page.jobs if filters.matches(job) and _eligible(action, job)]
        return self.act(action, eligible), page.next_after, len(page.jobs)

    def pause_type(self, name: str, paused: bool) -> None:
        self._call("pause_type" if paused else "resume_type", name)

    def run_schedule(self, name: str) -> Any:
        return self._call("run_schedule", name)


def _eligible(action: str, job: Job) -> bool:
    if action == "retry":
        return job.failed_for_good
    return job.status in (JobStatus.PENDING, JobStatus.FAILED)


def _as_dict(value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return value
    return dict(vars(value))
