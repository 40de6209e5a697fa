"""examples/middleware_timing.py: the middleware alone, called as a Worker calls it."""

from __future__ import annotations

import logging
import threading

import pytest

from examples.middleware_timing import HandlerTiming
from tests.support import make_job
from workstream import Call


def finished(job_type: str, seconds: float, error: BaseException | None = None) -> Call:
    call = Call(make_job(job_type=job_type), "worker-1", error=error)
    call.duration = seconds  # what the server's own timing sets before `after` runs
    return call


def test_it_adds_up_calls_per_type() -> None:
    timing = HandlerTiming(slow=10.0, log=logging.getLogger("test"))
    for call in (
        finished("echo", 0.25),
        finished("echo", 0.5, error=ValueError("x")),
        finished("sleep", 2.0),
    ):
        timing.before(call)
        timing.after(call)
    assert timing.totals() == {
        "echo": {"calls": 2, "failed": 1, "seconds": 0.75, "max_seconds": 0.5},
        "sleep": {"calls": 1, "failed": 0, "seconds": 2.0, "max_seconds": 2.0},
    }


def test_a_slow_call_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    timing = HandlerTiming(slow=1.0, log=logging.getLogger("workstream.ext.middleware_timing"))
    caplog.set_level(logging.WARNING, logger="workstream.ext.middleware_timing")
    timing.after(finished("echo", 0.999))
    timing.after(finished("report", 1.0))
    [record] = caplog.records
    assert record.event == "slow_handler"  # type: ignore[attr-defined]
    assert (record.type, record.duration_ms) == ("report", 1000.0)  # type: ignore[attr-defined]


def test_calls_from_many_worker_threads_are_all_counted() -> None:
    timing = HandlerTiming(slow=10.0, log=logging.getLogger("test"))

    def work() -> None:
        for _ in range(500):
            timing.after(finished("echo", 0.001))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert timing.totals()["echo"]["calls"] == 4000
