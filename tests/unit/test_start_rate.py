"""StartRate: the Retry-After of a 429, from how fast jobs leave the queue."""

from __future__ import annotations

from tests.support import FakeClock
from workstream.jobs.events import JOB_COMPLETED, JOB_STARTED, JobEvent
from workstream.start_rate import WINDOW, StartRate


def started(clock: FakeClock, count: int = 1) -> list[JobEvent]:
    return [JobEvent(JOB_STARTED, f"job-{i}", "echo", 1, clock()) for i in range(count)]


def test_before_anything_is_known_the_wait_is_the_time_watched() -> None:
    clock = FakeClock()
    rate = StartRate(clock)
    assert rate.retry_after() == 1  # just started: one second
    clock.advance(4.2)
    assert rate.retry_after() == 5  # nothing started in 4.2 s: nothing known sooner
    clock.advance(60)
    assert rate.retry_after() == WINDOW  # never more than the window


def test_fast_starts_give_one_second_and_a_big_batch_waits_longer() -> None:
    clock = FakeClock()
    rate = StartRate(clock)
    for _ in range(WINDOW):
        clock.advance(1)
        rate.on_events(started(clock, 5))  # 5 starts a second
    assert rate.per_second() == 5.0
    assert rate.retry_after(1) == 1
    assert rate.retry_after(20) == 4  # 20 places free in 4 s
    assert rate.retry_after(1000) == WINDOW


def test_slow_jobs_free_a_place_rarely_and_the_wait_says_so() -> None:
    clock = FakeClock()
    rate = StartRate(clock)
    for _ in range(4):
        clock.advance(5)
        rate.on_events(started(clock))  # one job starts every 5 s
    assert rate.retry_after(1) == 5
    assert rate.retry_after(2) == WINDOW


def test_starts_older_than_the_window_are_forgotten() -> None:
    clock = FakeClock()
    rate = StartRate(clock)
    clock.advance(1)
    rate.on_events(started(clock, 100))
    assert rate.retry_after(1) == 1
    clock.advance(WINDOW + 1)
    assert rate.per_second() == 0.0
    assert rate.retry_after(1) == WINDOW


def test_only_starts_count() -> None:
    clock = FakeClock()
    rate = StartRate(clock)
    clock.advance(2)
    rate.on_events([JobEvent(JOB_COMPLETED, "a", "echo", 1, clock())])
    assert rate.per_second() == 0.0
