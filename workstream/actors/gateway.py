"""The `JobService` the HTTP layer and extensions talk to: a gateway into the actors.

Writes become messages to the Registry (submit, cancel, retry), each waited on with a
bound (`request_timeout`): a stuck actor costs a 503, never a hung thread. Reads go
straight to the store's reader connections and never queue behind the Registry.

A submission goes to the Registry directly, with the capacity as its limit: the Registry
checks it in the transaction that stores the jobs, and a draining server refuses here,
before anything is sent. It carries a `Ticket`, so that a 503 is sent only for a job that
was not stored (see `workstream.actors.replies.Ticket`).
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import pykka

from workstream.actors.ask import ask
from workstream.actors.dispatcher_messages import DispatcherStatus, Status, Wake
from workstream.actors.registry_messages import Cancel, Create, Created, Retry, SetPaused
from workstream.actors.replies import Ticket
from workstream.actors.system import ActorSystem
from workstream.errors import (
    InvalidRequest,
    NotFound,
    QueueFull,
    ServiceBusy,
    ShuttingDown,
    StorageUnavailable,
)
from workstream.jobs.attempts import Attempt
from workstream.jobs.limits import MAX_DOCUMENT_BYTES, PAGE_BYTES
from workstream.jobs.listing import (
    MAX_FAILURE_GROUPS,
    MAX_THROUGHPUT_MINUTES,
    FailureGroup,
    JobFilter,
    JobPage,
    MinuteCount,
    minute_window,
    per_minute,
)
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.schedules import FiredSlot, ScheduleSlot
from workstream.jobs.service import Health, Submission
from workstream.jobs.spec import JobSpec
from workstream.jobs.types import TypeControl, TypeState
from workstream.store.base import Counts
from workstream.units import json_problem, shorten

# What `types(count_cap=...)` counts per type: what a console shows, never the finished.
CAPPED_TYPE_COUNTS = (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.FAILED)
STATUS_TIMEOUT = 2.0  # a scrape of /metrics waits at most this long for busy workers


class MetricsView(Protocol):
    def snapshot(self, counts: bool = True) -> dict[str, Any]: ...

    def exposition(self) -> tuple[str, bytes]: ...


class RetryEstimate(Protocol):
    def retry_after(self, jobs: int = 1) -> int: ...


class Gateway:
    """Implements `workstream.jobs.service.JobService` over a running `ActorSystem`."""

    def __init__(
        self,
        system: ActorSystem,
        *,
        request_timeout: float,
        metrics: MetricsView,
        retry_estimate: RetryEstimate,
        clock: Callable[[], float],
    ) -> None:
        self._system = system
        self._request_timeout = request_timeout
        self._metrics = metrics
        self._retry_estimate = retry_estimate
        self._clock = clock

    def _request(
        self,
        ref: pykka.ActorRef[Any] | None,
        make: Callable[[Any], Any],
        ticket: Ticket | None = None,
    ) -> Any:
        if self._system.draining.is_set() or ref is None:
            raise ShuttingDown("the server is shutting down")
        return ask(ref, make, self._request_timeout, ticket)

    # -- writes -------------------------------------------------------------------------

    def check_job(self, spec: JobSpec, index: int | None = None) -> None:
        """Refuse, before anything is stored, a job that could never run: a payload that
        is not storable JSON, an unknown type, a payload its handler's validator refuses."""
        where = "" if index is None else f"jobs[{index}]: "
        problem = json_problem(spec.payload, max_bytes=MAX_DOCUMENT_BYTES)
        if problem is not None:
            raise InvalidRequest(f"{where}'payload' cannot be stored: {problem}")
        self._system.handlers.check_submission(spec.type, spec.payload, index)

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
        if not checked:
            for index, spec in enumerate(specs):
                self.check_job(spec, index if batch else None)
        ticket = Ticket()
        try:
            created: Created = self._request(
                self._system.registry,
                lambda reply: Create(
                    specs=specs,
                    reply=reply,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    ticket=ticket,
                    limit=self._system.tuning.job_queue_capacity,
                    slot=slot,
                ),
                ticket,
            )
        except QueueFull as refused:
            now = self._clock()
            due = sum(1 for spec in specs if spec.run_at is None or spec.run_at <= now)
            refused.retry_after = self._retry_estimate.retry_after(due)
            raise
        return Submission(created.jobs, created.created)

    def cancel(self, job_id: str) -> Job:
        return self._request(self._system.registry, lambda reply: Cancel(job_id, reply))

    def retry(self, job_id: str) -> Job:
        return self._request(self._system.registry, lambda reply: Retry(job_id, reply))

    def pause_type(self, name: str) -> TypeState:
        return self._set_paused(name, True)

    def resume_type(self, name: str) -> TypeState:
        state = self._set_paused(name, False)
        dispatcher = self._system.dispatcher
        if dispatcher is not None:
            dispatcher.tell(Wake())  # its jobs may start now (other nodes hear a NOTIFY)
        return state

    def _set_paused(self, name: str, paused: bool) -> TypeState:
        if self._system.handlers.get(name) is None:
            raise NotFound(f"no job type {shorten(name)!r} (see GET /types)")
        control: TypeControl = self._request(
            self._system.registry, lambda reply: SetPaused(name, paused, reply)
        )
        return self._type_state(name, control, self._system.store.counts_by_type())

    # -- reads --------------------------------------------------------------------------

    def types(self, count_cap: int | None = None) -> builtins.list[TypeState]:
        store = self._system.store
        controls = store.type_controls()
        names = self._system.handlers.types()
        if count_cap is None:
            counts = store.counts_by_type()
        else:  # index-backed, each count stopping at the cap
            counts = {
                name: {
                    status.value: store.count(JobFilter(status=status, job_type=name), count_cap)
                    for status in CAPPED_TYPE_COUNTS
                }
                for name in names
            }
        return [
            self._type_state(name, controls.get(name) or TypeControl(name), counts)
            for name in names
        ]

    def _type_state(
        self, name: str, control: TypeControl, counts: dict[str, dict[str, int]]
    ) -> TypeState:
        limits = self._system.throttle.limits(name)
        by_status = counts.get(name, {})
        now = self._clock()
        return TypeState(
            name=name,
            paused=control.paused,
            max_concurrency=limits.max_concurrency,
            concurrency_key=limits.concurrency_key,
            rate_limit=None if limits.rate_limit is None else limits.rate_limit.text,
            running=by_status.get("processing", 0),
            counts=dict(by_status),
            blocked_until=(
                control.blocked_until
                if control.blocked_until is not None and control.blocked_until > now
                else None
            ),
        )

    def type_gauges(self) -> builtins.list[dict[str, Any]]:
        """Per registered type, for /metrics: paused and limits (the small control table
        only; counts by type are a scan, left to GET /types)."""
        controls = self._system.store.type_controls()
        out = []
        for name in self._system.handlers.types():
            limits = self._system.throttle.limits(name)
            control = controls.get(name)
            rate = limits.rate_limit
            out.append(
                {
                    "name": name,
                    "paused": control is not None and control.paused,
                    "max_concurrency": limits.max_concurrency,
                    "concurrency_key": limits.concurrency_key,
                    "rate_limit": None if rate is None else rate.text,
                    "rate_per_second": None if rate is None else rate.count / rate.period,
                }
            )
        return out

    def get(self, job_id: str) -> Job:
        job = self._system.store.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {shorten(job_id)}")
        return job

    def fired_slots(self) -> builtins.list[FiredSlot]:
        return self._system.store.fired_slots()

    def list(self, query: JobFilter) -> JobPage:
        return self._system.store.list(dataclasses.replace(query, max_bytes=PAGE_BYTES))

    def attempts(self, job_id: str) -> builtins.list[Attempt]:
        found = self._system.store.attempts(job_id)
        if not found and self._system.store.get(job_id) is None:
            raise NotFound(f"no job with id {shorten(job_id)}")
        return found

    def count(self, query: JobFilter, cap: int) -> int:
        if cap < 0:
            raise InvalidRequest("'cap' must not be negative")
        return self._system.store.count(query, cap) if cap else 0

    def failure_groups(self, limit: int = 50) -> builtins.list[FailureGroup]:
        if not 1 <= limit <= MAX_FAILURE_GROUPS:
            raise InvalidRequest(f"'limit' must be from 1 to {MAX_FAILURE_GROUPS}")
        return self._system.store.failure_groups(limit)

    def throughput(self, minutes: int = 60) -> builtins.list[MinuteCount]:
        if not 1 <= minutes <= MAX_THROUGHPUT_MINUTES:
            raise InvalidRequest(f"'minutes' must be from 1 to {MAX_THROUGHPUT_MINUTES}")
        start = minute_window(self._clock(), minutes)
        return per_minute(self._system.store.finished_per_minute(start), start, minutes)

    def count_jobs(self) -> Counts:
        return self._system.store.counts(self._clock())

    def dispatcher_status(self) -> DispatcherStatus | None:
        ref = self._system.dispatcher
        if ref is None or self._system.draining.is_set():
            return None
        try:
            return ask(ref, lambda reply: Status(reply), STATUS_TIMEOUT)
        except (ServiceBusy, ShuttingDown):
            return None

    def worker_processes(self) -> builtins.list[dict[str, Any]]:  # `list` is a method here
        return [stats.snapshot() for stats in self._system.child_stats]

    def job_types(self) -> builtins.list[str]:
        return self._system.handlers.types()

    def health(self) -> Health:
        system = self._system
        if system.draining.is_set():
            return Health(False, "shutting_down")
        down = system.down()
        if down:
            return Health(False, "unavailable", {"reason": f"{', '.join(down)} not running"})
        if system.write_health.failing:
            return Health(False, "unavailable", {"reason": "storage is failing writes"})
        try:
            system.store.ping()
        except StorageUnavailable:
            return Health(False, "unavailable", {"reason": "storage unreachable"})
        looping = [stats.name for stats in system.child_stats if stats.crash_loop]
        if looping and len(looping) == len(system.child_stats):
            return Health(
                False, "unavailable", {"reason": "every worker process dies at start (crash loop)"}
            )
        details: dict[str, Any] = {"workers": system.workers_alive()}
        if looping:  # some children keep dying: still serving, but say so
            details["worker_processes_crash_looping"] = looping
        return Health(True, "ok", details)

    def stats(self, counts: bool = True) -> dict[str, Any]:
        return self._metrics.snapshot(counts)

    def metrics_text(self) -> tuple[str, bytes]:
        return self._metrics.exposition()
