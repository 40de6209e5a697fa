"""The console's data through the job service of a running engine (real actors, every
store): a job's attempts, failure groups, throughput per minute, capped counts."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from tests.integration.conftest import EngineFactory
from workstream.errors import InvalidRequest, NotFound
from workstream.handlers import Handler
from workstream.jobs.events import JOB_COMPLETED, JOB_FAILED
from workstream.jobs.listing import JobFilter
from workstream.jobs.model import JobStatus
from workstream.jobs.spec import JobSpec


class Failing:
    """Raises `error` on the first `failures` attempts, then returns."""

    def __init__(self, error: type[Exception], failures: int = 99) -> None:
        self.error = error
        self.failures = failures
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, payload: Any, job: Any) -> Any:
        with self._lock:
            self.calls[job.id] += 1
        if job.attempt <= self.failures:
            raise self.error(f"attempt {job.attempt} of {job.id[:8]}")
        return {"attempt": job.attempt}


def test_the_console_data_of_a_running_engine(start_engine: EngineFactory) -> None:
    engine, watcher = start_engine(
        [
            Handler("flaky", Failing(RuntimeError, failures=1)),
            Handler("broken", Failing(ValueError)),
            Handler("slow_broken", Failing(TimeoutError)),
        ],
        retry_backoff=0.0,
    )
    jobs = engine.jobs
    [flaky] = jobs.submit([JobSpec("flaky", max_retries=1)]).jobs
    broken = jobs.submit([JobSpec("broken", max_retries=0) for _ in range(3)]).jobs
    [slow] = jobs.submit([JobSpec("slow_broken", max_retries=0)]).jobs
    watcher.wait_for(JOB_COMPLETED, count=1)
    watcher.wait_for(JOB_FAILED, count=4, final=True)

    history = jobs.attempts(flaky.id)
    assert [(a.number, a.outcome, a.error_class) for a in history] == [
        (1, "failed", "RuntimeError"),
        (2, "completed", None),
    ]
    assert "RuntimeError: attempt 1" in (history[0].traceback or "")
    assert jobs.attempts(slow.id)[0].error_class == "TimeoutError"
    with pytest.raises(NotFound):
        jobs.attempts("no-such-job")

    groups = [(g.job_type, g.error_class, g.count) for g in jobs.failure_groups()]
    assert groups == [("broken", "ValueError", 3), ("slow_broken", "TimeoutError", 1)]
    latest = jobs.failure_groups(limit=1)[0].latest_at
    assert latest == max(jobs.get(job.id).finished_at for job in broken)

    series = jobs.throughput(minutes=60)
    assert len(series) == 60 and series[0].minute_start < series[-1].minute_start
    assert sum(m.completed for m in series) == 1 and sum(m.failed for m in series) == 4

    assert jobs.count(JobFilter(status=JobStatus.FAILED), cap=100) == 4
    assert jobs.count(JobFilter(status=JobStatus.FAILED), cap=2) == 2
    assert jobs.count(JobFilter(error="attempt 1 of"), cap=100) == 5
    assert jobs.count(JobFilter(), cap=0) == 0
    newest = jobs.list(JobFilter(limit=1)).jobs[0]
    assert newest.id == slow.id  # newest first


@pytest.mark.parametrize(
    "call",
    [
        lambda jobs: jobs.failure_groups(limit=0),
        lambda jobs: jobs.throughput(minutes=0),
        lambda jobs: jobs.throughput(minutes=24 * 60 + 1),
        lambda jobs: jobs.count(JobFilter(), cap=-1),
    ],
)
def test_out_of_range_requests_are_refused(start_engine: EngineFactory, call: Any) -> None:
    engine, _ = start_engine([])
    with pytest.raises(InvalidRequest):
        call(engine.jobs)


def test_type_counts_capped_for_the_console(start_engine: EngineFactory) -> None:
    engine, _ = start_engine([Handler("later", lambda payload, job: None)])
    soon = engine.clock() + 3600  # delayed: they stay pending
    specs = [JobSpec("later", run_at=soon) for _ in range(5)]
    engine.jobs.submit(specs, batch=True)
    [exact] = [t for t in engine.jobs.types() if t.name == "later"]
    [capped] = [t for t in engine.jobs.types(count_cap=3) if t.name == "later"]
    assert exact.counts.get("pending") == 5
    assert capped.counts == {"pending": 3, "processing": 0, "failed": 0}
