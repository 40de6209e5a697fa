"""A Worker runs one handler call at a time and reports the outcome as data.

Nothing a handler does may stop the actor: every exception, `SystemExit` and
`KeyboardInterrupt` included, becomes a failed attempt (pykka stops *every* actor when a
BaseException escapes a message).

A handler with a `timeout` runs on a thread of its own. When the timeout passes, the
attempt fails as timed out and this Worker takes the next job. Python cannot stop a
thread, so the abandoned call may go on: the outcome says so (`abandoned`), the Registry
keeps the job from being retried while it runs, and when the call finally returns the
Worker tells the Registry (`AttemptEnded`), after which the job's retry may proceed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from workstream.actors.dispatcher_messages import WorkerIdle
from workstream.actors.events import EventBus
from workstream.actors.job_start import started_event
from workstream.actors.registry_messages import AttemptEnded, Finish, Outcome
from workstream.actors.worker_messages import Run
from workstream.handlers import Handler, HandlerTable
from workstream.handlers.invoke import (
    Timing,
    call_error,
    call_error_class,
    call_handler,
    call_traceback,
    describe_exception,
    invoke,
)
from workstream.handlers.middleware import Call, Middleware, MiddlewareChain
from workstream.jobs.attempts import TIMED_OUT
from workstream.jobs.model import Job, JobContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _LateEnd:
    """From an abandoned attempt's thread, through this Worker's inbox to the Registry, so
    that it arrives after the attempt's Finish."""

    job_id: str
    attempt: int


class _Attempt:
    """One handler call on its own thread, for handlers with a timeout."""

    def __init__(
        self, handler: Handler, payload: Any, context: JobContext, on_late_end: Callable[[], None]
    ) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        self._on_late_end = on_late_end
        self._thread = threading.Thread(
            target=self._run,
            args=(handler, payload, context),
            name=f"handler-{context.type}-{context.id[:8]}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        """True if the call ended in time; False if it is now abandoned."""
        if self._done.wait(timeout):
            return True
        with self._lock:
            if self._done.is_set():
                return True  # it ended just now: use its outcome
            self._abandoned = True
            return False

    def _run(self, handler: Handler, payload: Any, context: JobContext) -> None:
        try:
            self.result = handler.fn(payload, context)
        except BaseException as exc:
            self.error = exc
        finally:
            with self._lock:
                self._done.set()
                abandoned = self._abandoned
            if abandoned:
                self._on_late_end()


class PublishStart(Middleware):
    """Built in, first: tells the event bus a job started (its log line, the metrics, the
    Retry-After estimate all follow `job_started`)."""

    def __init__(self, events: EventBus, clock: Callable[[], float]) -> None:
        self._events = events
        self._clock = clock

    def before(self, call: Call) -> None:
        self._events.publish([started_event(call.job, call.worker, self._clock())])


class Worker(pykka.ThreadingActor):
    # A handler that never returns must not keep the process alive after shutdown.
    use_daemon_thread = True

    def __init__(
        self,
        *,
        name: str,
        owner: str,
        handlers: HandlerTable,
        registry: pykka.ActorRef[Any],
        dispatcher: pykka.ActorRef[Any],
        events: EventBus,
        middleware: MiddlewareChain | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.name = name
        self._owner = owner
        self._handlers = handlers
        self._registry = registry
        self._dispatcher = dispatcher
        self._middleware = middleware or MiddlewareChain()
        self._builtin = (PublishStart(events, clock),)
        self._timing = Timing(monotonic)

    def on_start(self) -> None:
        self._dispatcher.tell(WorkerIdle(self.actor_ref))

    def on_receive(self, message: Any) -> Any:
        handler = self._HANDLERS.get(type(message))
        if handler is None:
            log.warning("worker ignored unknown message %r", type(message).__name__)
            return None
        return handler(self, message)

    def _run(self, message: Run) -> None:
        job = message.job
        try:
            outcome = self.run(job)
        except Exception as exc:  # a bug here must not lose the job or the worker
            log.exception("worker failed around a handler", extra={"event": "worker_error"})
            error = f"internal error: {describe_exception(exc)}"
            outcome = Outcome(job.id, job.attempts, self._owner, self.name, 0.0, error=error)
        self._registry.tell(Finish(outcome))
        self._dispatcher.tell(WorkerIdle(self.actor_ref))

    def _late_end(self, message: _LateEnd) -> None:
        log.info(
            "an abandoned handler call ended",
            extra={
                "event": "abandoned_attempt_ended",
                "job_id": message.job_id,
                "attempt": message.attempt,
                "worker": self.name,
            },
        )
        self._registry.tell(AttemptEnded(message.job_id, message.attempt))

    def run(self, job: Job) -> Outcome:
        """Run one attempt of `job`, inside the middleware, and describe how it went."""
        call = Call(job, self.name)
        invoke(self._middleware, self._builtin, self._timing, call, self._call)
        error = call_error(call)
        return Outcome(
            job_id=job.id,
            attempt=job.attempts,
            owner=self._owner,
            worker=self.name,
            duration=call.duration,
            result=None if error is not None else call.result,
            error=error,
            abandoned=call.timed_out,
            ending=TIMED_OUT if call.timed_out else None,
            error_class=call_error_class(call) if error is not None else None,
            traceback=None if error is None or call.timed_out else call_traceback(call),
        )

    def _call(self, call: Call) -> None:
        """Run the handler; its result or its exception lands in `call`. A handler with a
        timeout runs on a thread of its own, abandoned when the timeout passes."""
        job = call.job
        handler = self._handlers.get(job.type)
        if handler is None or handler.timeout is None:
            call_handler(self._handlers, job, call)
            return
        attempt = _Attempt(handler, job.payload, JobContext.of(job), self._late_end_notice(job))
        attempt.start()
        if attempt.wait(handler.timeout):
            call.result, call.error = attempt.result, attempt.error
            return
        log.warning(
            "handler timed out; its call is abandoned and may still be running",
            extra={
                "event": "handler_timeout",
                "job_id": job.id,
                "type": job.type,
                "attempt": job.attempts,
                "worker": self.name,
            },
        )
        call.timed_out = True
        limit = f"{handler.timeout:g}s"
        call.error = TimeoutError(f"the handler ran longer than its timeout of {limit}")

    def _late_end_notice(self, job: Job) -> Callable[[], None]:
        ref, message = self.actor_ref, _LateEnd(job.id, job.attempts)

        def notify() -> None:
            # Shutting down (the actor is gone): the process ends, and the thread with it.
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)

        return notify

    _HANDLERS: dict[type, Callable[..., Any]] = {Run: _run, _LateEnd: _late_end}
