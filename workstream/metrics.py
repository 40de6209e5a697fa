"""Prometheus metrics, on the app's own CollectorRegistry (never the global one).

Counters and histograms follow job events (a listener on the EventBus) and count since the
process started. Gauges read the store (and the Dispatcher for busy workers) at scrape
time, so they are true after a restart and across nodes sharing a database. Every sample
carries a `node` label (this process's node id): several nodes on one PostgreSQL database
each export their own figures, and a sum over `node` gives the cluster's.
prometheus-client is imported only here.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from workstream.jobs.events import (
    JOB_COMPLETED,
    JOB_CREATED,
    JOB_FAILED,
    JOB_FENCED,
    JOB_RECOVERED,
    JOB_REJECTED,
    JOB_RETRIED,
    JOB_STARTED,
    JobEvent,
)
from workstream.jobs.model import JobStatus

# Job durations span milliseconds (no-op handlers) to hours (batch work).
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    1800,
)


class GaugeSource(Protocol):
    def count_jobs(self) -> Any: ...  # store.base.Counts

    def dispatcher_status(self) -> Any: ...  # DispatcherStatus | None

    def worker_processes(self) -> list[dict[str, Any]]: ...  # one snapshot per child


class _PoolGauges(Collector):
    """The worker processes, one sample per child (`worker` label), read at scrape time
    from the figures their supervisors keep."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        children = self._metrics.worker_processes()
        label = ["worker"]
        busy = GaugeMetricFamily(
            "workstream_worker_process_busy_slots", "Slots running a job.", labels=label
        )
        slots = GaugeMetricFamily(
            "workstream_worker_process_slots", "Handler threads of the child.", labels=label
        )
        rss = GaugeMetricFamily(
            "workstream_worker_process_rss_bytes",
            "Resident memory the child reported.",
            labels=label,
        )
        loop = GaugeMetricFamily(
            "workstream_worker_process_crash_loop", "1 while children die at start.", labels=label
        )
        jobs = CounterMetricFamily(
            "workstream_worker_process_jobs", "Attempts the children finished.", labels=label
        )
        restarts = CounterMetricFamily(
            "workstream_worker_process_restarts",
            "Children replaced, by cause (crashed, timed_out, recycled, failed_to_start).",
            labels=["worker", "cause"],
        )
        for child in children:
            name = [child["name"]]
            busy.add_metric(name, child["busy"])
            slots.add_metric(name, child["slots"])
            rss.add_metric(name, child["rss_bytes"] or 0)
            loop.add_metric(name, 1 if child["crash_loop"] else 0)
            jobs.add_metric(name, child["jobs_run"])
            for cause, count in child["restarts"].items():
                restarts.add_metric([child["name"], cause], count)
        yield from (busy, slots, rss, loop, jobs, restarts)


class _StoreGauges(Collector):
    """Reads the store once per scrape for every gauge."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        gauges = self._metrics.gauges()
        queue = GaugeMetricFamily(
            "workstream_queue_size", "Jobs pending and due: what JOB_QUEUE_CAPACITY counts."
        )
        queue.add_metric([], gauges["queue_size"])
        yield queue
        progress = GaugeMetricFamily("workstream_jobs_in_progress", "Jobs in state processing.")
        progress.add_metric([], gauges["jobs_in_progress"])
        yield progress
        busy = GaugeMetricFamily("workstream_busy_workers", "Workers running a handler now.")
        busy.add_metric([], gauges["busy_workers"])
        yield busy
        workers = GaugeMetricFamily("workstream_workers", "Worker actors in this process.")
        workers.add_metric([], gauges["workers"])
        yield workers
        by_status = GaugeMetricFamily(
            "workstream_jobs", "Stored jobs by status.", labels=["status"]
        )
        for status in JobStatus:
            by_status.add_metric([status.value], gauges["by_status"].get(status.value, 0))
        yield by_status


class _TypeGauges(Collector):
    """Each registered job type: paused or not, and its limits (the stored control rows
    and the handlers' registrations, read at scrape time)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        types = self._metrics.type_gauges()
        paused = GaugeMetricFamily(
            "workstream_type_paused",
            "1 while a job type is paused (on every node).",
            labels=["type"],
        )
        limit = GaugeMetricFamily(
            "workstream_type_max_concurrency",
            "Most jobs of a type running at once on all nodes (per key with a concurrency key); "
            "only limited types.",
            labels=["type"],
        )
        rate = GaugeMetricFamily(
            "workstream_type_rate_limit_per_second",
            "Most starts of a type per second on all nodes; only rate-limited types.",
            labels=["type"],
        )
        for item in types:
            paused.add_metric([item["name"]], 1 if item["paused"] else 0)
            if item["max_concurrency"] is not None:
                limit.add_metric([item["name"]], item["max_concurrency"])
            if item["rate_per_second"] is not None:
                rate.add_metric([item["name"]], item["rate_per_second"])
        yield from (paused, limit, rate)


class _NodeLabelled:
    """The registry's metrics with `node="<id>"` added to every sample, so that no metric
    definition or call site needs to repeat it."""

    def __init__(self, registry: CollectorRegistry, node: str) -> None:
        self._registry = registry
        self._node = node

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            metric.samples = [
                sample._replace(labels={"node": self._node, **sample.labels})
                for sample in metric.samples
            ]
            yield metric


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, *, node: str = "") -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.node = node
        self._source: GaugeSource | None = None
        self._lock = threading.Lock()
        self._totals: Tally[str] = Tally()
        r = self.registry
        self.created = Counter(
            "workstream_jobs_created", "Jobs accepted and stored.", ["type"], registry=r
        )
        self.completed = Counter(
            "workstream_jobs_completed", "Jobs whose handler succeeded.", ["type"], registry=r
        )
        self.failed = Counter(
            "workstream_jobs_failed",
            "Jobs that failed for good (no runs left).",
            ["type"],
            registry=r,
        )
        self.attempts_failed = Counter(
            "workstream_job_attempts_failed",
            "Attempts that failed (raised, timed out).",
            ["type"],
            registry=r,
        )
        self.retried = Counter(
            "workstream_jobs_retried",
            "Re-queues after a failure, automatic or manual.",
            ["type"],
            registry=r,
        )
        self.recovered = Counter(
            "workstream_jobs_recovered",
            "Interrupted attempts found (restart, lost lease).",
            ["type"],
            registry=r,
        )
        self.rejected = Counter(
            "workstream_jobs_rejected",
            "Jobs refused because the queue was full (429).",
            ["type"],
            registry=r,
        )
        self.fenced = Counter(
            "workstream_late_outcomes_refused",
            "Completions or failures refused because the attempt no longer held the job.",
            registry=r,
        )
        self.auth_failures = Counter(
            "workstream_auth_failures",
            "Requests refused for a missing or wrong API token (401).",
            registry=r,
        )
        self.queue_wait = Histogram(
            "workstream_job_queue_wait_seconds",
            "From due to started.",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.run_time = Histogram(
            "workstream_job_run_seconds",
            "Handler run time of one attempt.",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        r.register(_StoreGauges(self))
        r.register(_PoolGauges(self))
        r.register(_TypeGauges(self))

    def bind(self, source: GaugeSource) -> None:
        """Where the gauges read from (the engine: its store and its Dispatcher)."""
        self._source = source

    def on_events(self, events: Sequence[JobEvent]) -> None:
        totals: Tally[str] = Tally()
        for event in events:
            kind, job_type = event.kind, event.type
            if kind == JOB_CREATED:
                self.created.labels(job_type).inc()
                totals["total_jobs_created"] += 1
            elif kind == JOB_STARTED:
                if event.queue_wait is not None:
                    self.queue_wait.labels(job_type).observe(event.queue_wait)
            elif kind == JOB_COMPLETED:
                self.completed.labels(job_type).inc()
                totals["jobs_completed"] += 1
                self._observe_run(event)
            elif kind == JOB_FAILED:
                if event.duration_ms is not None:
                    self.attempts_failed.labels(job_type).inc()
                    totals["job_attempts_failed"] += 1
                    self._observe_run(event)
                if event.final:
                    self.failed.labels(job_type).inc()
                    totals["jobs_failed"] += 1
            elif kind == JOB_RETRIED:
                self.retried.labels(job_type).inc()
                totals["jobs_retried"] += 1
            elif kind == JOB_RECOVERED:
                self.recovered.labels(job_type).inc()
                totals["jobs_recovered"] += 1
            elif kind == JOB_REJECTED:
                self.rejected.labels(job_type).inc(event.count)
                totals["jobs_rejected"] += event.count
            elif kind == JOB_FENCED:
                self.fenced.inc()
                totals["late_outcomes_refused"] += 1
        with self._lock:
            self._totals.update(totals)

    def _observe_run(self, event: JobEvent) -> None:
        if event.duration_ms is not None:
            self.run_time.labels(event.type).observe(event.duration_ms / 1000)

    def gauges(self, counts: bool = True) -> dict[str, Any]:
        """The live figures. Without `counts`, no job is counted (the status counts scan
        the whole table: about 170 ms at 1,000,000 jobs on PostgreSQL)."""
        out: dict[str, Any] = {
            "queue_size": 0,
            "jobs_in_progress": 0,
            "busy_workers": 0,
            "workers": 0,
            "by_status": {},
        }
        if self._source is None:
            return out
        if counts:
            stored = self._source.count_jobs()
            out["queue_size"] = stored.ready
            out["jobs_in_progress"] = stored.of(JobStatus.PROCESSING)
            out["by_status"] = dict(stored.by_status)
        status = self._source.dispatcher_status()
        if status is not None:
            out["busy_workers"] = status.busy
            out["workers"] = status.workers
        return out

    def worker_processes(self) -> list[dict[str, Any]]:
        """The children's figures (empty in thread mode)."""
        reader = getattr(self._source, "worker_processes", None)
        return list(reader()) if reader is not None else []

    def type_gauges(self) -> list[dict[str, Any]]:
        """Each job type's paused state and limits (empty without a source)."""
        reader = getattr(self._source, "type_gauges", None)
        return list(reader()) if reader is not None else []

    def snapshot(self, counts: bool = True) -> dict[str, Any]:
        """The JSON form of /metrics (SPEC section 4). Without `counts`, the job counts
        (`jobs_in_progress`, `queue_size`, `jobs_by_status`) are left out."""
        with self._lock:
            totals = dict(self._totals)
        gauges = self.gauges(counts)
        out = {
            "node": self.node,
            "total_jobs_created": totals.get("total_jobs_created", 0),
            "jobs_completed": totals.get("jobs_completed", 0),
            "jobs_failed": totals.get("jobs_failed", 0),
            "jobs_retried": totals.get("jobs_retried", 0),
            "jobs_recovered": totals.get("jobs_recovered", 0),
            "jobs_rejected": totals.get("jobs_rejected", 0),
            "job_attempts_failed": totals.get("job_attempts_failed", 0),
            "late_outcomes_refused": totals.get("late_outcomes_refused", 0),
            "jobs_in_progress": gauges["jobs_in_progress"],
            "queue_size": gauges["queue_size"],
            "busy_workers": gauges["busy_workers"],
            "workers": gauges["workers"],
            "jobs_by_status": gauges["by_status"],
            "worker_processes": self.worker_processes(),
            "types": {
                item["name"]: {
                    key: item[key]
                    for key in ("paused", "max_concurrency", "concurrency_key", "rate_limit")
                }
                for item in self.type_gauges()
            },
        }
        if not counts:
            for key in ("jobs_in_progress", "queue_size", "jobs_by_status"):
                out.pop(key)
        return out

    def exposition(self) -> tuple[str, bytes]:
        return CONTENT_TYPE_LATEST, generate_latest(_NodeLabelled(self.registry, self.node))
