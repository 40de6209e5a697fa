"""An in-memory `JobService` for HTTP tests.

It keeps jobs in a dict and follows the protocol's contract closely enough that the HTTP
layer can be tested without actors or a store: known job types (422 for others), a
capacity (429), idempotency keys (200 on repeat, 409 on another body), pagination by
position. Flags switch on the failures the HTTP layer must map: `draining`
(ShuttingDown), `stuck` (ServiceBusy), `storage_down` (StorageUnavailable), and `crash`
(any exception, raised as is, to test the 500 path).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from workstream.errors import (
    IdempotencyKeyReused,
    InvalidPayload,
    NotFound,
    QueueFull,
    ServiceBusy,
    ShuttingDown,
    StorageUnavailable,
    UnknownJobType,
)
from workstream.jobs import states
from workstream.jobs.attempts import Attempt
from workstream.jobs.listing import FailureGroup, JobFilter, JobPage, MinuteCount, Position
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.service import Health, Submission
from workstream.jobs.spec import JobSpec
from workstream.jobs.types import PRIORITY_DEFAULT, TypeState

T0 = 1_800_000_000.0
DEFAULT_MAX_RETRIES = 3
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class FakeService:
    def __init__(
        self,
        *,
        known_types: tuple[str, ...] = ("echo", "sleep", "strict"),
        capacity: int | None = None,
    ) -> None:
        self.known_types = known_types
        self.capacity = capacity
        self.retry_after = 7
        self.now = T0
        self.draining = False
        self.stuck = False
        self.storage_down = False
        self.crash: BaseException | None = None
        self.health_details: dict[str, Any] = {"workers": 2}
        self.submitted: list[dict[str, Any]] = []
        self.checked: list[tuple[JobSpec, int | None]] = []
        self.list_calls: list[dict[str, Any]] = []
        self.queries: list[JobFilter] = []
        self.attempt_records: dict[str, list[Attempt]] = {}
        self.groups: list[FailureGroup] = []
        self.minutes: list[MinuteCount] = []
        self._jobs: dict[str, Job] = {}
        self._order: list[str] = []
        self._keys: dict[str, tuple[str | None, str]] = {}
        self.paused: set[str] = set()
        self._lock = threading.Lock()

    # -- test helpers -------------------------------------------------------------------

    def add_job(self, *, status: JobStatus = JobStatus.PENDING, **changes: Any) -> Job:
        """Store a job directly, in any state, without going through `submit`."""
        job = Job(
            id=str(uuid.uuid4()),
            type="echo",
            payload={},
            status=status,
            max_retries=DEFAULT_MAX_RETRIES,
            created_at=self.now,
            updated_at=self.now,
            run_at=None if status in (JobStatus.COMPLETED, JobStatus.CANCELLED) else self.now,
        ).replace(**changes)
        with self._lock:
            self._jobs[job.id] = job
            self._order.append(job.id)
        return job

    def job(self, job_id: str) -> Job:
        return self._jobs[job_id]

    @property
    def job_count(self) -> int:
        return len(self._jobs)

    # -- JobService ---------------------------------------------------------------------

    def _check_available(self) -> None:
        if self.crash is not None:
            raise self.crash
        if self.stuck:
            raise ServiceBusy("the server did not answer in time; the outcome is unknown")
        if self.storage_down:
            raise StorageUnavailable("storage is unavailable; nothing was changed")

    def submit(
        self,
        specs: list[JobSpec],
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        batch: bool = False,
        checked: bool = False,
    ) -> Submission:
        self._check_available()
        if self.draining:
            raise ShuttingDown("the server is shutting down")
        with self._lock:
            self.submitted.append(
                {"specs": specs, "idempotency_key": idempotency_key, "request_hash": request_hash}
            )
            if idempotency_key is not None and idempotency_key in self._keys:
                stored_hash, job_id = self._keys[idempotency_key]
                if stored_hash != request_hash:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used with a different request"
                    )
                return Submission(jobs=[self._jobs[job_id]], created=False)
            self._check_types(specs, batch)
            ready = sum(1 for job in self._jobs.values() if job.status is JobStatus.PENDING)
            if self.capacity is not None and ready + len(specs) > self.capacity:
                raise QueueFull("the queue is full; try again later", self.retry_after)
            jobs = [self._create(spec) for spec in specs]
            if idempotency_key is not None:
                self._keys[idempotency_key] = (request_hash, jobs[0].id)
            return Submission(jobs=jobs, created=True)

    def check_job(self, spec: JobSpec, index: int | None = None) -> None:
        self.checked.append((spec, index))
        self._check_types([spec], index is not None, first=index or 0)

    def _check_types(self, specs: list[JobSpec], batch: bool, first: int = 0) -> None:
        for index, spec in enumerate(specs, start=first):
            where = f"jobs[{index}]: " if batch else ""
            if spec.type not in self.known_types:
                raise UnknownJobType(
                    f"{where}no handler for job type {spec.type!r} "
                    f"(known types: {', '.join(self.known_types)})"
                )
            if spec.type == "strict" and not isinstance(spec.payload, dict):
                raise InvalidPayload(f"{where}the payload of a 'strict' job must be an object")

    def _create(self, spec: JobSpec) -> Job:
        job = Job(
            id=str(uuid.uuid4()),
            type=spec.type,
            payload=spec.payload,
            status=JobStatus.PENDING,
            max_retries=DEFAULT_MAX_RETRIES if spec.max_retries is None else spec.max_retries,
            created_at=self.now,
            updated_at=self.now,
            run_at=self.now if spec.run_at is None else spec.run_at,
            priority=PRIORITY_DEFAULT if spec.priority is None else spec.priority,
        )
        self._jobs[job.id] = job
        self._order.append(job.id)
        return job

    def get(self, job_id: str) -> Job:
        self._check_available()
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    def list(self, query: JobFilter) -> JobPage:
        self._check_available()
        self.list_calls.append(
            {
                "status": query.status,
                "job_type": query.job_type,
                "limit": query.limit,
                "after": query.after,
            }
        )
        self.queries.append(query)
        matches = self._matching(query)
        page = matches[: query.limit]
        next_after = page[-1][0] if len(matches) > query.limit else None
        return JobPage(jobs=[job for _, job in page], next_after=next_after)

    def _matching(self, query: JobFilter) -> list[tuple[Position, Job]]:
        """As the stores: (created_at, submission number) order, filters, position."""
        with self._lock:
            rows = [
                ((self._jobs[job_id].created_at, number), self._jobs[job_id])
                for number, job_id in enumerate(self._order, start=1)
            ]
        rows.sort(key=lambda row: row[0], reverse=query.newest_first)
        after = query.after
        return [
            (position, job)
            for position, job in rows
            if (after is None or (position < after if query.newest_first else position > after))
            and query.matches(job)
        ]

    def attempts(self, job_id: str) -> list[Attempt]:
        self.get(job_id)
        return list(self.attempt_records.get(job_id, []))

    def count(self, query: JobFilter, cap: int) -> int:
        self._check_available()
        return min(cap, len(self._matching(query)))

    def failure_groups(self, limit: int = 50) -> list[FailureGroup]:
        return self.groups[:limit]

    def throughput(self, minutes: int = 60) -> list[MinuteCount]:
        return self.minutes[-minutes:]

    def _change(self, job_id: str, change: Any) -> Job:
        job = self.get(job_id)
        with self._lock:
            changed = change(job, now=self.now)
            self._jobs[job_id] = changed
        return changed

    def cancel(self, job_id: str) -> Job:
        return self._change(job_id, states.cancel)

    def retry(self, job_id: str) -> Job:
        return self._change(job_id, states.retry)

    def health(self) -> Health:
        if self.crash is not None:
            raise self.crash
        if self.draining:
            return Health(ok=False, status="shutting_down", details=dict(self.health_details))
        if self.storage_down:
            return Health(ok=False, status="unavailable", details={"storage": "unreachable"})
        return Health(ok=True, status="ok", details=dict(self.health_details))

    def job_types(self) -> list[str]:
        return sorted(self.known_types)

    def _type_state(self, name: str) -> TypeState:
        counts: dict[str, int] = {}
        for job in self._jobs.values():
            if job.type == name:
                counts[job.status.value] = counts.get(job.status.value, 0) + 1
        limited = name == "sleep"  # one limited type, to render limits
        return TypeState(
            name=name,
            paused=name in self.paused,
            max_concurrency=2 if limited else None,
            concurrency_key="tenant" if limited else None,
            rate_limit="10/s" if limited else None,
            running=counts.get("processing", 0),
            counts=counts,
        )

    def types(self, count_cap: int | None = None) -> list[TypeState]:
        self._check_available()
        return [self._type_state(name) for name in sorted(self.known_types)]

    def _set_paused(self, name: str, paused: bool) -> TypeState:
        self._check_available()
        if name not in self.known_types:
            raise NotFound(f"no job type {name!r} (see GET /types)")
        (self.paused.add if paused else self.paused.discard)(name)
        return self._type_state(name)

    def pause_type(self, name: str) -> TypeState:
        return self._set_paused(name, True)

    def resume_type(self, name: str) -> TypeState:
        return self._set_paused(name, False)

    def stats(self, counts: bool = True) -> dict[str, Any]:
        self._check_available()
        by_status = {status: 0 for status in JobStatus}
        for job in self._jobs.values():
            by_status[job.status] += 1
        return {
            "total_jobs_created": len(self._jobs),
            "jobs_completed": by_status[JobStatus.COMPLETED],
            "jobs_failed": by_status[JobStatus.FAILED],
            "jobs_retried": 0,
            "jobs_in_progress": by_status[JobStatus.PROCESSING],
            "queue_size": by_status[JobStatus.PENDING],
        }

    def metrics_text(self) -> tuple[str, bytes]:
        self._check_available()
        text = (
            "# HELP workstream_jobs_created_total Jobs created.\n"
            "# TYPE workstream_jobs_created_total counter\n"
            f"workstream_jobs_created_total {len(self._jobs)}.0\n"
        )
        return METRICS_CONTENT_TYPE, text.encode("utf-8")
