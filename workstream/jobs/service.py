"""The job service: what the HTTP layer (and every extension) asks of WorkStream.

A port in the domain, so that callers need neither actors nor stores. The real
implementation is `workstream.actors.gateway.Gateway`; HTTP tests pass a fake. Every
method either returns or raises a `workstream.errors.WorkStreamError`; none blocks without
a bound (a stuck engine raises `ServiceBusy`, which is a 503).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any, Protocol

from workstream.jobs.attempts import Attempt
from workstream.jobs.listing import FailureGroup, JobFilter, JobPage, MinuteCount
from workstream.jobs.model import Job
from workstream.jobs.schedules import FiredSlot, ScheduleSlot
from workstream.jobs.spec import JobSpec
from workstream.jobs.types import TypeState


@dataclass(frozen=True)
class Submission:
    jobs: list[Job]
    created: bool  # False: an Idempotency-Key repeat; `jobs` holds the job first stored


@dataclass(frozen=True)
class Health:
    ok: bool
    status: str  # "ok", "shutting_down", "unavailable"
    details: dict[str, Any] = field(default_factory=dict)


class JobService(Protocol):
    def submit(
        self,
        specs: list[JobSpec],
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        batch: bool = False,
        checked: bool = False,
        slot: ScheduleSlot | None = None,
    ) -> Submission:
        """Store the jobs, all or none. Raises UnknownJobType (422), InvalidPayload (400),
        QueueFull (429), IdempotencyKeyReused (409), ShuttingDown / StorageUnavailable /
        ServiceBusy (503). With `batch`, errors about one job name its index: `jobs[3]: ...`.
        `checked` says the caller already passed every spec through `check_job`. With
        `slot` (the scheduler), the slot is recorded with the job in one transaction, and
        a slot any node already fired stores nothing (`created` False)."""

    def check_job(self, spec: JobSpec, index: int | None = None) -> None:
        """Refuse a job that could never run (UnknownJobType 422, InvalidPayload 400,
        InvalidRequest 400), before anything is stored."""

    def get(self, job_id: str) -> Job:
        """Raises NotFound."""

    def fired_slots(self) -> builtins.list[FiredSlot]:  # `list` is a method here
        """Every schedule's latest fired slot, by any node."""

    def list(self, query: JobFilter) -> JobPage: ...

    def attempts(self, job_id: str) -> builtins.list[Attempt]:
        """The job's attempts, oldest first. Raises NotFound."""

    def count(self, query: JobFilter, cap: int) -> int:
        """How many jobs `query`'s filters match (its position and limit are ignored),
        counting no further than `cap`."""

    def failure_groups(self, limit: int = 50) -> builtins.list[FailureGroup]:
        """Jobs failed for good, grouped by (type, error class), largest groups first."""

    def throughput(self, minutes: int = 60) -> builtins.list[MinuteCount]:
        """Jobs completed and failed for good per minute over the last `minutes` minutes,
        oldest minute first, one entry per minute (zeros included)."""

    def cancel(self, job_id: str) -> Job:
        """Raises NotFound, IllegalTransition (409)."""

    def retry(self, job_id: str) -> Job:
        """Raises NotFound, IllegalTransition (409)."""

    def health(self) -> Health: ...

    def job_types(self) -> builtins.list[str]:  # `list` is a method here
        """The job types with a registered handler, sorted; fixed once the server has
        started (the API description lists them)."""

    def stats(self, counts: bool = True) -> dict[str, Any]:
        """The JSON form of /metrics: at least total_jobs_created, jobs_completed,
        jobs_failed, jobs_retried, jobs_in_progress, queue_size. Without `counts`, the
        job counts (jobs_in_progress, queue_size, jobs_by_status: a scan) are left out."""

    def metrics_text(self) -> tuple[str, bytes]:
        """(content type, body) of the Prometheus text exposition."""

    def types(self, count_cap: int | None = None) -> builtins.list[TypeState]:
        """Every job type with a registered handler, sorted by name: paused or not, its
        limits, its running jobs and its jobs by status (docs/scheduling.md). Without
        `count_cap`, every status is counted exactly (a scan of the jobs); with it, only
        pending, processing and failed, each stopping at `count_cap` (index-backed)."""

    def pause_type(self, name: str) -> TypeState:
        """Stop starting jobs of `name` on every node (stored; submissions are still
        accepted). Running jobs finish. Raises NotFound (404) for a type without handler."""

    def resume_type(self, name: str) -> TypeState:
        """Start jobs of `name` again. Raises NotFound (404) for a type without handler."""
