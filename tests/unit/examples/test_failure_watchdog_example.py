"""examples/failure_watchdog.py: the window logic with times given by hand, and the actor
shell with a fake clock and ticks told by the test (no Ticker, no sleeps)."""

from __future__ import annotations

import logging
from typing import Any

import pykka
import pytest
from prometheus_client import CollectorRegistry, Gauge

from examples.failure_watchdog import (
    Change,
    Check,
    FailureWatchdog,
    FailureWindow,
    Snapshot,
)
from tests.support import T0, FakeClock
from workstream import JobEvent, JobEvents, events


def failed(job_type: str, at: float, final: bool = False) -> JobEvent:
    return JobEvent(events.JOB_FAILED, "job-1", job_type, 1, at, error="boom", final=final)


# -- FailureWindow ------------------------------------------------------------------------------


def test_an_alert_is_raised_when_the_count_in_the_window_reaches_the_threshold() -> None:
    window = FailureWindow(window=60, threshold=3)
    window.record("email", T0)
    window.record("email", T0 + 1)
    assert window.check(T0 + 2) == []
    window.record("email", T0 + 2)
    assert window.check(T0 + 3) == [Change("email", True, 3)]


def test_each_crossing_is_reported_once() -> None:
    window = FailureWindow(window=60, threshold=2)
    for at in (T0, T0 + 1, T0 + 2):
        window.record("email", at)
    assert window.check(T0 + 3) == [Change("email", True, 3)]
    window.record("email", T0 + 4)
    assert window.check(T0 + 5) == []  # still alerting: nothing new to say
    assert window.check(T0 + 6) == []


def test_the_alert_clears_when_failures_leave_the_window() -> None:
    window = FailureWindow(window=10, threshold=2)
    window.record("email", T0)
    window.record("email", T0 + 5)
    assert window.check(T0 + 6) == [Change("email", True, 2)]
    assert window.check(T0 + 9.5) == []
    assert window.check(T0 + 10) == [Change("email", False, 1)]  # T0 is `window` old: out
    assert window.check(T0 + 16) == []  # empty now, and already cleared
    assert window.snapshot(T0 + 16)["failures"] == {}


def test_types_are_counted_apart() -> None:
    window = FailureWindow(window=60, threshold=2)
    window.record("email", T0)
    window.record("webhook", T0)
    window.record("webhook", T0 + 1)
    assert window.check(T0 + 2) == [Change("webhook", True, 2)]
    assert window.snapshot(T0 + 2) == {
        "window_seconds": 60,
        "threshold": 2,
        "failures": {"email": 1, "webhook": 2},
        "alerts": ["webhook"],
    }


def test_late_events_out_of_order_are_counted_by_their_own_time() -> None:
    window = FailureWindow(window=10, threshold=2)
    window.record("email", T0 + 8)
    window.record("email", T0)  # committed later, happened earlier
    assert window.check(T0 + 9) == [Change("email", True, 2)]
    assert window.check(T0 + 12) == [Change("email", False, 1)]


def test_an_alert_can_be_raised_again_after_it_cleared() -> None:
    window = FailureWindow(window=10, threshold=1)
    window.record("email", T0)
    assert window.check(T0) == [Change("email", True, 1)]
    assert window.check(T0 + 11) == [Change("email", False, 0)]
    window.record("email", T0 + 12)
    assert window.check(T0 + 12) == [Change("email", True, 1)]


# -- the actor ----------------------------------------------------------------------------------


@pytest.fixture
def gauge() -> Gauge:
    return Gauge("workstream_failure_alert", "test", ["type"], registry=CollectorRegistry())


def start_watchdog(
    actors: list[pykka.ActorRef[Any]], clock: FakeClock, gauge: Gauge, threshold: int = 2
) -> pykka.ActorRef[Any]:
    ref = FailureWatchdog.start(
        window=FailureWindow(window=30, threshold=threshold),
        clock=clock,
        log=logging.getLogger("workstream.ext.failure_watchdog"),
        gauge=gauge,
    )
    actors.append(ref)
    return ref


def alert_value(gauge: Gauge, job_type: str) -> float:
    return gauge.labels(job_type)._value.get()


def test_the_actor_alerts_on_a_tick_logs_once_and_sets_the_gauge(
    actors: list[pykka.ActorRef[Any]],
    clock: FakeClock,
    gauge: Gauge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watchdog = start_watchdog(actors, clock, gauge)
    caplog.set_level(logging.INFO, logger="workstream.ext.failure_watchdog")
    watchdog.tell(JobEvents([failed("email", T0), failed("email", T0 + 1, final=True)]))
    assert watchdog.ask(Snapshot(), timeout=2)["alerts"] == []  # nothing until a tick
    watchdog.tell(Check())
    watchdog.tell(Check())
    assert watchdog.ask(Snapshot(), timeout=2)["alerts"] == ["email"]  # a barrier too
    assert alert_value(gauge, "email") == 1
    [alert] = [r for r in caplog.records if getattr(r, "event", None) == "failure_alert"]
    assert alert.levelno == logging.WARNING
    assert (alert.type, alert.failures, alert.threshold) == ("email", 2, 2)  # type: ignore[attr-defined]

    clock.advance(60)
    watchdog.tell(Check())
    assert watchdog.ask(Snapshot(), timeout=2) == {
        "window_seconds": 30,
        "threshold": 2,
        "failures": {},
        "alerts": [],
    }
    assert alert_value(gauge, "email") == 0
    cleared = [r for r in caplog.records if getattr(r, "event", None) == "failure_alert_cleared"]
    assert [r.type for r in cleared] == ["email"]  # type: ignore[attr-defined]


def test_the_actor_ignores_other_events_and_messages(
    actors: list[pykka.ActorRef[Any]], clock: FakeClock, gauge: Gauge
) -> None:
    watchdog = start_watchdog(actors, clock, gauge, threshold=1)
    created = JobEvent(events.JOB_CREATED, "job-2", "email", 0, T0)
    watchdog.tell(JobEvents([created]))
    watchdog.tell("something else")
    watchdog.tell(Check())
    assert watchdog.ask(Snapshot(), timeout=2)["failures"] == {}
