"""Metrics on a fresh CollectorRegistry: counters follow events, gauges read the source."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from workstream.actors.dispatcher_messages import DispatcherStatus
from workstream.jobs.events import (
    JOB_COMPLETED,
    JOB_CREATED,
    JOB_FAILED,
    JOB_FENCED,
    JOB_REJECTED,
    JOB_RETRIED,
    JOB_STARTED,
    JobEvent,
)
from workstream.metrics import Metrics
from workstream.proc.supervision import CRASHED, ChildStats
from workstream.store.base import Counts


class Source:
    def count_jobs(self) -> Counts:
        return Counts(ready=7, by_status={"pending": 9, "processing": 2, "completed": 40})

    def dispatcher_status(self) -> DispatcherStatus:
        return DispatcherStatus(workers=10, idle=8, busy=2, accepting=True, handing_out=True)


def event(kind: str, job_type: str = "echo", **fields: object) -> JobEvent:
    return JobEvent(kind, "j", job_type, 1, 0.0, **fields)  # type: ignore[arg-type]


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by name and labels, without the `node` label (checked to be there)."""
    _, body = metrics.exposition()
    got = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("node") == metrics.node, sample
            got[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return got


def test_every_sample_is_labelled_with_the_node_id() -> None:
    metrics = Metrics(node="host-a:123:abcd")
    metrics.bind(Source())
    metrics.on_events([event(JOB_CREATED), event(JOB_COMPLETED, duration_ms=2.0)])
    _, body = metrics.exposition()
    families = list(text_string_to_metric_families(body.decode()))
    assert len(families) >= 10
    for family in families:
        for sample in family.samples:
            assert sample.labels["node"] == "host-a:123:abcd", sample
    assert metrics.snapshot()["node"] == "host-a:123:abcd"


def test_counters_and_histograms_follow_the_events() -> None:
    metrics = Metrics()
    metrics.bind(Source())
    metrics.on_events(
        [
            event(JOB_CREATED),
            event(JOB_CREATED, "email_send"),
            event(JOB_STARTED, queue_wait=0.02),
            event(JOB_COMPLETED, duration_ms=3.0),
            event(JOB_FAILED, "email_send", duration_ms=5.0, final=False),
            event(JOB_RETRIED, "email_send"),
            event(JOB_FAILED, "email_send", duration_ms=5.0, final=True),
            event(JOB_REJECTED, count=3),
            event(JOB_FENCED),
        ]
    )
    got = samples(metrics)
    assert got[("workstream_jobs_created_total", (("type", "echo"),))] == 1
    assert got[("workstream_jobs_completed_total", (("type", "echo"),))] == 1
    assert got[("workstream_jobs_failed_total", (("type", "email_send"),))] == 1
    assert got[("workstream_job_attempts_failed_total", (("type", "email_send"),))] == 2
    assert got[("workstream_jobs_retried_total", (("type", "email_send"),))] == 1
    assert got[("workstream_jobs_rejected_total", (("type", "echo"),))] == 3
    assert got[("workstream_late_outcomes_refused_total", ())] == 1
    assert got[("workstream_job_queue_wait_seconds_count", (("type", "echo"),))] == 1
    assert got[("workstream_job_run_seconds_count", (("type", "email_send"),))] == 2
    snapshot = metrics.snapshot()
    assert (
        snapshot["total_jobs_created"],
        snapshot["jobs_completed"],
        snapshot["jobs_failed"],
        snapshot["jobs_retried"],
        snapshot["jobs_rejected"],
    ) == (2, 1, 1, 1, 3)


def test_gauges_read_the_store_and_the_dispatcher_at_scrape_time() -> None:
    metrics = Metrics()
    metrics.bind(Source())
    got = samples(metrics)
    assert got[("workstream_queue_size", ())] == 7
    assert got[("workstream_jobs_in_progress", ())] == 2
    assert got[("workstream_busy_workers", ())] == 2
    assert got[("workstream_jobs", (("status", "completed"),))] == 40
    assert got[("workstream_jobs", (("status", "failed"),))] == 0
    snapshot = metrics.snapshot()
    assert (snapshot["queue_size"], snapshot["jobs_in_progress"], snapshot["workers"]) == (7, 2, 10)


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.on_events([event(JOB_CREATED)])
    assert samples(second).get(("workstream_jobs_created_total", (("type", "echo"),))) is None


class PoolSource(Source):
    def worker_processes(self) -> list[dict[str, object]]:
        stats = ChildStats(name="worker-1", slots=4, pid=42, busy=3, jobs_run=17, rss=5_000_000)
        stats.count_restart(CRASHED)
        stats.count_restart(CRASHED)
        return [stats.snapshot()]


def test_the_worker_processes_show_one_sample_per_child() -> None:
    metrics = Metrics()
    metrics.bind(PoolSource())
    got = samples(metrics)
    child = (("worker", "worker-1"),)
    assert got[("workstream_worker_process_busy_slots", child)] == 3
    assert got[("workstream_worker_process_slots", child)] == 4
    assert got[("workstream_worker_process_rss_bytes", child)] == 5_000_000
    assert got[("workstream_worker_process_jobs_total", child)] == 17
    assert got[("workstream_worker_process_crash_loop", child)] == 0
    crashed = (("cause", "crashed"), ("worker", "worker-1"))
    assert got[("workstream_worker_process_restarts_total", crashed)] == 2
    [snapshot] = metrics.snapshot()["worker_processes"]
    assert snapshot["pid"] == 42 and snapshot["restarts"]["recycled"] == 0


def test_thread_mode_has_no_worker_process_samples() -> None:
    metrics = Metrics()
    metrics.bind(Source())
    assert not any(name.startswith("workstream_worker_process") for name, _ in samples(metrics))
    assert metrics.snapshot()["worker_processes"] == []


class TypeSource(Source):
    def type_gauges(self) -> list[dict[str, object]]:
        return [
            {
                "name": "resize",
                "paused": True,
                "max_concurrency": 5,
                "concurrency_key": "tenant",
                "rate_limit": "10/m",
                "rate_per_second": 10 / 60,
            },
            {
                "name": "echo",
                "paused": False,
                "max_concurrency": None,
                "concurrency_key": None,
                "rate_limit": None,
                "rate_per_second": None,
            },
        ]


def test_each_type_shows_paused_and_its_limits() -> None:
    metrics = Metrics()
    metrics.bind(TypeSource())
    got = samples(metrics)
    assert got[("workstream_type_paused", (("type", "resize"),))] == 1
    assert got[("workstream_type_paused", (("type", "echo"),))] == 0
    assert got[("workstream_type_max_concurrency", (("type", "resize"),))] == 5
    assert ("workstream_type_max_concurrency", (("type", "echo"),)) not in got
    assert abs(got[("workstream_type_rate_limit_per_second", (("type", "resize"),))] - 1 / 6) < 1e-9
    types = metrics.snapshot()["types"]
    assert types["resize"] == {
        "paused": True,
        "max_concurrency": 5,
        "concurrency_key": "tenant",
        "rate_limit": "10/m",
    }
    assert types["echo"]["paused"] is False


def test_a_snapshot_without_counts_reads_no_job_count() -> None:
    class NoCounting(Source):
        def count_jobs(self) -> Any:
            raise AssertionError("a snapshot without counts counted the jobs")

    metrics = Metrics()
    metrics.bind(NoCounting())
    snapshot = metrics.snapshot(counts=False)
    assert not {"queue_size", "jobs_in_progress", "jobs_by_status"} & set(snapshot)
    assert (snapshot["busy_workers"], snapshot["workers"]) == (2, 10)
