"""A Worker in isolation: recording stand-ins for the Registry and the Dispatcher.

Whatever a handler does, the Worker reports an Outcome and goes idle again, and no actor
stops (pykka would stop every actor if a BaseException escaped a message).
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from tests.support import Recorder, make_job, messages
from workstream.actors.dispatcher_messages import WorkerIdle
from workstream.actors.events import EventBus
from workstream.actors.registry_messages import AttemptEnded, Finish, Outcome
from workstream.actors.worker import Worker
from workstream.actors.worker_messages import Run
from workstream.handlers import Handler, HandlerTable
from workstream.handlers.middleware import Call, Middleware, MiddlewareChain
from workstream.jobs.events import JOB_STARTED, JobEvent
from workstream.jobs.model import JobStatus

release_hung = threading.Event()


def _raise(exc: BaseException) -> Any:
    def fn(payload: Any, job: Any) -> Any:
        raise exc

    return fn


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot describe myself")


def _hang(payload: Any, job: Any) -> Any:
    release_hung.wait(10)
    return "woke"


HANDLERS = HandlerTable(
    [
        Handler("ok", lambda payload, job: {"echo": payload, "attempt": job.attempt}),
        Handler("value_error", _raise(ValueError("bad input"))),
        Handler("system_exit", _raise(SystemExit(3))),
        Handler("keyboard", _raise(KeyboardInterrupt())),
        Handler("not_json", lambda payload, job: {"when": object()}),
        Handler("nan", lambda payload, job: float("nan")),
        Handler("hangs", _hang, timeout=0.05),
        Handler("quick_with_timeout", lambda payload, job: "fast", timeout=5),
        Handler("huge", lambda payload, job: "x" * 1_048_588),
        Handler("surrogate", lambda payload, job: "caf\udce9"),
        Handler("broken_str", _raise(Unprintable())),
        Handler("broken_str_timed", _raise(Unprintable()), timeout=5),
    ]
)


class Harness:
    def __init__(self, actors: list[Any], middleware: MiddlewareChain | None = None) -> None:
        self.idle: queue.Queue[WorkerIdle] = queue.Queue()
        self.ended: queue.Queue[AttemptEnded] = queue.Queue()
        self.registry = Recorder.start(respond=self._on_registry_message)
        self.dispatcher = Recorder.start(respond=self._on_dispatcher_message)
        self.bus = EventBus()
        self.events: list[JobEvent] = []
        self.bus.subscribe(self.events.extend)
        self.ref = Worker.start(
            name="worker-1",
            owner="node-a",
            handlers=HANDLERS,
            registry=self.registry,
            dispatcher=self.dispatcher,
            events=self.bus,
            middleware=middleware,
        )
        actors.extend([self.registry, self.dispatcher, self.ref])
        self.idle.get(timeout=5)  # the WorkerIdle it sends when it starts

    def _on_registry_message(self, message: Any) -> None:
        if isinstance(message, AttemptEnded):
            self.ended.put(message)

    def _on_dispatcher_message(self, message: Any) -> None:
        if isinstance(message, WorkerIdle):
            self.idle.put(message)

    def run(self, job_type: str, payload: Any = None) -> Outcome:
        job = make_job(
            f"{job_type}-job",
            job_type=job_type,
            payload=payload,
            status=JobStatus.PROCESSING,
            attempts=2,
            owner="node-a",
        )
        self.ref.tell(Run(job))
        # The Worker tells the Registry first, then the Dispatcher: once the Dispatcher has
        # the WorkerIdle, the Finish is already in the Registry's inbox.
        self.idle.get(timeout=5)
        finishes = [m for m in messages(self.registry) if isinstance(m, Finish)]
        return finishes[-1].outcome


@pytest.fixture
def worker(actors: list[Any]) -> Harness:
    return Harness(actors)


def test_it_reports_idle_when_it_starts(worker: Harness) -> None:
    assert [type(m) for m in messages(worker.dispatcher)] == [WorkerIdle]
    assert messages(worker.dispatcher)[0].worker == worker.ref


def test_a_successful_handler_reports_its_result(worker: Harness) -> None:
    outcome = worker.run("ok", {"x": 1})
    assert outcome.error is None
    assert outcome.result == {"echo": {"x": 1}, "attempt": 2}
    assert (outcome.job_id, outcome.attempt, outcome.owner, outcome.worker) == (
        "ok-job",
        2,
        "node-a",
        "worker-1",
    )
    assert outcome.duration >= 0
    assert [e.kind for e in worker.events] == [JOB_STARTED]
    assert worker.events[0].worker == "worker-1"
    assert len([m for m in messages(worker.dispatcher) if isinstance(m, WorkerIdle)]) == 2


@pytest.mark.parametrize(
    ("job_type", "expected"),
    [
        ("value_error", "ValueError: bad input"),
        ("system_exit", "SystemExit: 3"),
        ("keyboard", "KeyboardInterrupt"),
        ("not_json", "the handler's result cannot be stored: Object of type object"),
        ("nan", "the handler's result cannot be stored: Out of range float"),
        ("huge", "the handler's result cannot be stored: it is 1048590 bytes of JSON"),
        ("surrogate", "the handler's result cannot be stored: it has text that is not valid"),
        ("broken_str", "Unprintable: <the exception's message could not be read>"),
        ("broken_str_timed", "Unprintable: <the exception's message could not be read>"),
        ("missing", "no handler is registered for type 'missing'"),
    ],
)
def test_every_failure_is_data_and_every_actor_stays_alive(
    worker: Harness, job_type: str, expected: str
) -> None:
    outcome = worker.run(job_type)
    assert outcome.error is not None and outcome.error.startswith(expected)
    assert outcome.result is None
    for ref in (worker.ref, worker.registry, worker.dispatcher):
        assert ref.is_alive()
    assert worker.run("ok").error is None  # and it takes the next job


def test_a_handler_past_its_timeout_fails_and_frees_the_worker(worker: Harness) -> None:
    release_hung.clear()
    try:
        outcome = worker.run("hangs")
        assert outcome.error is not None
        assert outcome.error.startswith("TimeoutError: the handler ran longer than its timeout")
        assert outcome.abandoned  # its call may still be running
        assert worker.run("quick_with_timeout").result == "fast"
    finally:
        release_hung.set()


def test_an_abandoned_call_tells_the_registry_when_it_finally_ends(worker: Harness) -> None:
    release_hung.clear()
    try:
        outcome = worker.run("hangs")
    finally:
        release_hung.set()
    ended = worker.ended.get(timeout=5)
    assert ended == AttemptEnded(outcome.job_id, outcome.attempt)
    # The notice went through the Worker's inbox, so the Registry got it after the Finish.
    seen = messages(worker.registry)
    finish = next(i for i, m in enumerate(seen) if isinstance(m, Finish))
    assert seen.index(ended) > finish


def test_the_worker_runs_on_a_daemon_thread() -> None:
    # A handler that never returns must not keep the process from exiting at shutdown.
    assert Worker.use_daemon_thread is True


class Seeing(Middleware):
    """Records what each hook saw; `fail` makes both hooks raise after recording."""

    def __init__(self, seen: list[tuple[str, Any]], fail: bool = False) -> None:
        self.seen = seen
        self.fail = fail

    def before(self, call: Call) -> None:
        self.seen.append(("before", call.job.id))
        if self.fail:
            raise RuntimeError("middleware bug")

    def after(self, call: Call) -> None:
        error = None if call.error is None else type(call.error).__name__
        self.seen.append(("after", (call.result, error, call.timed_out)))
        if self.fail:
            raise RuntimeError("middleware bug")


def test_middleware_sees_the_job_and_its_result_or_its_exception(actors: list[Any]) -> None:
    seen: list[tuple[str, Any]] = []
    release_hung.clear()
    worker = Harness(actors, MiddlewareChain([Seeing(seen)]))
    assert worker.run("ok", 1).result == {"echo": 1, "attempt": 2}
    assert worker.run("value_error").error == "ValueError: bad input"
    assert worker.run("hangs").error is not None
    release_hung.set()
    assert seen == [
        ("before", "ok-job"),
        ("after", ({"echo": 1, "attempt": 2}, None, False)),
        ("before", "value_error-job"),
        ("after", (None, "ValueError", False)),
        ("before", "hangs-job"),
        ("after", (None, "TimeoutError", True)),
    ]


def test_a_middleware_that_raises_loses_neither_the_job_nor_the_worker(
    actors: list[Any],
) -> None:
    seen: list[tuple[str, Any]] = []
    inner: list[tuple[str, Any]] = []
    worker = Harness(actors, MiddlewareChain([Seeing(seen, fail=True), Seeing(inner)]))
    outcome = worker.run("ok", 7)
    assert outcome.error is None and outcome.result == {"echo": 7, "attempt": 2}
    assert [step for step, _ in inner] == ["before", "after"]  # the others still ran
    assert worker.run("ok", 8).result == {"echo": 8, "attempt": 2}  # the Worker goes on
    assert [e.kind for e in worker.events] == [JOB_STARTED, JOB_STARTED]


def test_a_failure_carries_its_class_and_traceback_for_the_history(worker: Harness) -> None:
    failed = worker.run("value_error")
    assert failed.error_class == "ValueError" and failed.ending is None
    assert failed.traceback is not None
    assert failed.traceback.startswith("Traceback (most recent call last):")
    assert failed.traceback.rstrip().endswith("ValueError: bad input")
    unprintable = worker.run("broken_str")  # its __str__ raises: still a traceback
    assert unprintable.error_class == "Unprintable" and unprintable.traceback is not None
    ok = worker.run("ok")
    assert (ok.error_class, ok.traceback, ok.ending) == (None, None, None)


def test_a_timed_out_attempt_says_so_for_the_history(worker: Harness) -> None:
    release_hung.clear()
    try:
        outcome = worker.run("hangs")
        assert outcome.ending == "timed_out" and outcome.error_class == "TimeoutError"
        assert outcome.traceback is None  # it raised nothing: it was left running
    finally:
        release_hung.set()
