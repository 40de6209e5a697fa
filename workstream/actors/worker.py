"""A Worker runs one handler call at a time and reports the outcome as data.

Nothing a handler does may stop the actor: every exception, `SystemExit` and
`KeyboardInterrupt` included, becomes a failed attempt (pykka stops *every* actor when a
BaseException escapes a message). A handler with a `timeout` runs on a thread of its own;
when the timeout passes, the attempt fails as timed out and this Worker is free for the
next job while the abandoned thread finishes (or not) on its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from workstream.actors.dispatcher import Run, WorkerIdle
from workstream.actors.events import JOB_STARTED, EventBus, JobEvent
from workstream.actors.registry import Finish, Outcome
from workstream.handlers import Handler, HandlerTable
from workstream.jobs.model import Job, JobContext

log = logging.getLogger(__name__)


def describe_exception(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Attempt:
    """One handler call on its own thread, for handlers with a timeout."""

    def __init__(self, handler: Handler, payload: Any, context: JobContext) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: str | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(handler, payload, context),
            name=f"handler-{context.type}-{context.id[:8]}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self, handler: Handler, payload: Any, context: JobContext) -> None:
        try:
            self.result = handler.fn(payload, context)
        except BaseException as exc:
            self.error = describe_exception(exc)
        finally:
            self.done.set()


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
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.name = name
        self._owner = owner
        self._handlers = handlers
        self._registry = registry
        self._dispatcher = dispatcher
        self._events = events
        self._clock = clock
        self._monotonic = monotonic

    def on_start(self) -> None:
        self._dispatcher.tell(WorkerIdle(self.actor_ref))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Run):
            try:
                outcome = self.run(message.job)
            except Exception as exc:  # a bug here must not lose the job or the worker
                log.exception("worker failed around a handler", extra={"event": "worker_error"})
                job = message.job
                outcome = Outcome(
                    job.id,
                    job.attempts,
                    self._owner,
                    self.name,
                    0.0,
                    error=f"internal error: {describe_exception(exc)}",
                )
            self._registry.tell(Finish(outcome))
            self._dispatcher.tell(WorkerIdle(self.actor_ref))
            return None
        log.warning("worker ignored unknown message %r", type(message).__name__)
        return None

    def run(self, job: Job) -> Outcome:
        """Run one attempt of `job` and describe how it went."""
        due = job.run_at if job.run_at is not None else job.created_at
        self._events.publish(
            [
                JobEvent(
                    JOB_STARTED,
                    job.id,
                    job.type,
                    job.attempts,
                    self._clock(),
                    worker=self.name,
                    queue_wait=max(0.0, (job.started_at or self._clock()) - due),
                )
            ]
        )
        started = self._monotonic()
        result, error = self._call(job)
        if error is None:
            error = _check_json(result)
        return Outcome(
            job_id=job.id,
            attempt=job.attempts,
            owner=self._owner,
            worker=self.name,
            duration=self._monotonic() - started,
            result=None if error is not None else result,
            error=error,
        )

    def _call(self, job: Job) -> tuple[Any, str | None]:
        handler = self._handlers.get(job.type)
        if handler is None:
            return None, f"no handler is registered for type {job.type!r}"
        context = JobContext.of(job)
        if handler.timeout is None:
            try:
                return handler.fn(job.payload, context), None
            except BaseException as exc:
                return None, describe_exception(exc)
        attempt = _Attempt(handler, job.payload, context)
        attempt.start()
        if not attempt.done.wait(handler.timeout):
            log.warning(
                "handler timed out; its thread is abandoned",
                extra={
                    "event": "handler_timeout",
                    "job_id": job.id,
                    "type": job.type,
                    "attempt": job.attempts,
                    "worker": self.name,
                },
            )
            return (
                None,
                f"TimeoutError: the handler ran longer than its timeout of {handler.timeout:g}s",
            )
        return attempt.result, attempt.error


def _check_json(result: Any) -> str | None:
    """A result must be storable and servable: JSON without NaN, valid Unicode text."""
    try:
        json.dumps(result, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "the handler's result is not JSON: it has text that is not valid Unicode"
    except (TypeError, ValueError, RecursionError) as exc:
        return f"the handler's result is not JSON: {describe_exception(exc)}"
    return None
