"""A real worker process over a socket pair: the spec, ready or fatal, jobs in and
outcomes out in batches, EOF. Every wait is on a frame or the exit, with a deadline."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import make_job
from workstream.proc import wire
from workstream.proc.frames import encode_all
from workstream.proc.process import ChildProcess
from workstream.proc.spec import ChildSpec

HANDLERS = ("tests.unit.proc.child_handlers",)
TIMEOUT = 60.0  # a fresh interpreter on a busy two-core box


class Child:
    """A ChildProcess whose frames and exit land in a queue the test reads."""

    def __init__(self, spec: ChildSpec) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.process = ChildProcess(
            spec=spec,
            on_frames=lambda frames: [self.events.put(("frame", f)) for f in frames],
            on_exit=lambda code: self.events.put(("exit", code)),
        )

    def next(self) -> tuple[str, Any]:
        return self.events.get(timeout=TIMEOUT)

    def frame(self, op: str) -> dict[str, Any]:
        """The next frame with `op`, skipping others."""
        while True:
            kind, value = self.next()
            assert kind == "frame", f"the child exited ({value}) before sending {op}"
            if value["op"] == op:
                return value

    def exit_code(self) -> int:
        while True:
            kind, value = self.next()
            if kind == "exit":
                return value


@pytest.fixture
def start_child() -> Iterator[Any]:
    started: list[Child] = []

    def start(**changes: Any) -> Child:
        spec = ChildSpec(name="worker-9", threads=2, job_handlers=HANDLERS).replace(**changes)
        child = Child(spec)
        started.append(child)
        child.process.start()
        return child

    yield start
    for child in started:
        child.process.kill()
        child.process.join(10)


def test_a_child_runs_jobs_as_thread_mode_would_and_reports_in_batches(start_child: Any) -> None:
    child = start_child(worker_middleware=("tests.unit.proc.child_handlers:Tag",))
    ready = child.frame(wire.READY)
    assert ready["threads"] == 2 and ready["pid"] == child.process.pid
    jobs = {
        "a": make_job("a", job_type="pid"),
        "b": make_job("b", job_type="boom"),
        "c": make_job("c", job_type="nope"),
        "d": make_job("d", job_type="odd_result"),
        "e": make_job("e", job_type="echo", payload={"n": 1}),
    }
    assert child.process.send(encode_all(wire.run(0, job) for job in jobs.values()))
    done = {}
    rss_seen = 0
    while len(done) < len(jobs):
        kind, frame = child.next()
        assert kind == "frame", f"the child exited ({frame})"
        if frame["op"] == wire.RSS:
            rss_seen += 1
            assert frame["rss"] > 1_000_000
        elif frame["op"] == wire.DONE:
            done[frame["id"]] = wire.Done.from_wire(frame)
    assert done["a"].result["pid"] == child.process.pid and done["a"].error is None
    assert done["a"].result["tagged"] >= 1  # WORKER_MIDDLEWARE ran in the child
    assert done["b"].error == "RuntimeError: boom"
    assert done["c"].error == "no handler is registered for type 'nope'"
    assert done["d"].error.startswith("the handler's result cannot be stored")
    assert done["e"].result == {"n": 1, "tagged": done["e"].result["tagged"]}
    # The attempt history's data, captured in the child and carried with the outcome.
    assert done["b"].error_class == "RuntimeError"
    assert done["b"].traceback.startswith("Traceback (most recent call last):")
    assert 'child_handlers.py", line' in done["b"].traceback
    assert done["b"].traceback.rstrip().endswith("RuntimeError: boom")
    assert (done["c"].error_class, done["c"].traceback) == ("NoHandler", None)
    assert (done["d"].error_class, done["d"].traceback) == ("UnstorableResult", None)
    assert (done["e"].error_class, done["e"].traceback) == (None, None)
    assert all(item.attempt == jobs[key].attempts for key, item in done.items())
    # Each batch of outcomes ends with the child's memory: the last batch's comes last.
    assert child.frame(wire.RSS)["rss"] > 1_000_000


def test_the_child_exits_at_eof(start_child: Any) -> None:
    child = start_child()
    child.frame(wire.READY)
    child.process.close()
    assert child.exit_code() == 0


def test_a_child_that_cannot_import_its_handlers_says_so_and_exits_2(start_child: Any) -> None:
    child = start_child(job_handlers=("no_such_module_for_workstream",))
    fatal = child.frame(wire.FATAL)
    assert "JOB_HANDLERS: cannot import module 'no_such_module_for_workstream'" in fatal["error"]
    assert child.exit_code() == 2


def test_a_handler_that_exits_ends_the_child_with_its_code(start_child: Any) -> None:
    child = start_child()
    child.frame(wire.READY)
    child.process.send(
        encode_all([wire.run(1, make_job("x", job_type="die", payload={"code": 3}))])
    )
    assert child.exit_code() == 3
