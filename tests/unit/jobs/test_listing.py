"""The domain of finding jobs: the filter's own definition of a match (what every store
implements in its query language) and the per-minute throughput series."""

from __future__ import annotations

from tests.support import make_job
from workstream.jobs.listing import JobFilter, MinuteCount, minute_window, per_minute
from workstream.jobs.model import JobStatus

T = 1_800_000_000.0  # a multiple of 60


def test_every_filter_narrows_and_they_combine():
    job = make_job(
        "abcd-1",
        status=JobStatus.FAILED,
        job_type="resize",
        created_at=T,
        idempotency_key="k1",
        last_error="RuntimeError: Disk FULL",
    )
    assert JobFilter().matches(job)
    assert JobFilter(status=JobStatus.FAILED, job_type="resize", error="disk full").matches(job)
    assert JobFilter(created_after=T, created_before=T + 1, id_prefix="abc").matches(job)
    assert JobFilter(idempotency_key="k1").matches(job)
    assert not JobFilter(status=JobStatus.PENDING).matches(job)
    assert not JobFilter(created_before=T).matches(job)  # exclusive
    assert not JobFilter(created_after=T + 0.001).matches(job)
    assert not JobFilter(id_prefix="abce").matches(job)
    assert not JobFilter(error="disk empty").matches(job)
    assert not JobFilter(error="disk").matches(job.replace(last_error=None))
    assert not JobFilter(idempotency_key="k").matches(job)


def test_newest_first_is_the_default_order():
    assert JobFilter().newest_first and not JobFilter(order="oldest").newest_first


def test_the_window_of_the_last_minutes_includes_the_current_one():
    assert minute_window(T + 59.9, 1) == T
    assert minute_window(T + 30, 60) == T - 59 * 60


def test_per_minute_fills_every_minute_and_adds_up_statuses():
    rows = [(T, "completed", 3), (T, "failed", 1), (T + 120, "completed", 2), (T, "completed", 1)]

    series = per_minute(rows, T, 4)

    assert series == [
        MinuteCount(T, 4, 1),
        MinuteCount(T + 60, 0, 0),
        MinuteCount(T + 120, 2, 0),
        MinuteCount(T + 180, 0, 0),
    ]
