"""One handler call, as data: shared by the in-process Worker and a worker process.

`invoke` runs the handler inside the middleware chain (built-in timing innermost) and
leaves the result or the exception in the `Call`; `call_error` turns that into the text
stored as the attempt's error, or None when the attempt succeeded. Nothing a handler does
escapes: every exception, `SystemExit` and `KeyboardInterrupt` included, becomes data.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from workstream.handlers import HandlerTable
from workstream.handlers.middleware import Call, Middleware, MiddlewareChain
from workstream.jobs.attempts import UNSTORABLE_RESULT, clip_traceback
from workstream.jobs.limits import MAX_DOCUMENT_BYTES
from workstream.jobs.model import Job, JobContext
from workstream.units import json_problem


class NoHandler(LookupError):
    """The error of an attempt whose type has no handler in this process."""


def describe_exception(exc: BaseException) -> str:
    """`Type: message`, and never an exception of its own (a broken `__str__`)."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        text = "<the exception's message could not be read>"
    return f"{name}: {text}" if text else name


class Timing(Middleware):
    """Built in, innermost: how long the handler ran, for the outcome (and so for the
    duration metrics and the `job_completed` / `job_failed` log lines)."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic

    def before(self, call: Call) -> None:
        call.state["workstream.started"] = self._monotonic()

    def after(self, call: Call) -> None:
        call.duration = self._monotonic() - call.state["workstream.started"]


def call_handler(handlers: HandlerTable, job: Job, call: Call) -> None:
    """Run `job`'s handler on this thread; its result or its exception lands in `call`."""
    handler = handlers.get(job.type)
    if handler is None:
        call.error = NoHandler(f"no handler is registered for type {job.type!r}")
        return
    try:
        call.result = handler.fn(job.payload, JobContext.of(job))
    except BaseException as exc:
        call.error = exc


def invoke(
    chain: MiddlewareChain,
    outer: tuple[Middleware, ...],
    timing: Timing,
    call: Call,
    run: Callable[[Call], Any],
) -> None:
    """`run(call)` inside the middleware: `outer` (built-ins that wrap everything), then
    the chain's middleware, then `timing` innermost, so that a middleware's own time is
    not the handler's."""
    items = (*outer, *chain.items, timing)
    chain.before(call, items)
    run(call)
    chain.after(call, items)


def call_error(call: Call) -> str | None:
    """The attempt's error text, or None if it succeeded with a storable result."""
    if call.error is not None:
        if isinstance(call.error, NoHandler):
            return str(call.error)
        return describe_exception(call.error)
    problem = json_problem(call.result, max_bytes=MAX_DOCUMENT_BYTES)
    if problem is not None:
        return f"the handler's result cannot be stored: {problem}"
    return None


def call_traceback(call: Call) -> str | None:
    """The formatted traceback of a failed call (bounded: `attempts.clip_traceback`), or None
    when it succeeded or failed without an exception of the handler's."""
    error = call.error
    if error is None or isinstance(error, NoHandler) or error.__traceback__ is None:
        return None
    try:
        text = "".join(traceback.format_exception(error))
    except Exception:  # a broken __str__ or __repr__ somewhere in the chain
        text = f"{describe_exception(error)}\n(the traceback could not be formatted)"
    return clip_traceback(text)


def call_error_class(call: Call) -> str | None:
    """The class of a failed call's error (`RuntimeError`), or None if it succeeded."""
    if call.error is not None:
        return type(call.error).__name__
    if call_error(call) is not None:
        return UNSTORABLE_RESULT
    return None
