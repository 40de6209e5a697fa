"""Worker middleware: ordered hooks around every handler call.

Like Dramatiq's `before_process_message` / `after_process_message`: a middleware sees the
job before its handler runs and the result or the exception after, without wrapping each
handler by hand. Hooks run on the thread that runs the Worker, in order before the call
and in reverse order after it (the first middleware wraps all the others). A hook that
raises is logged (`middleware_error`) and skipped: it never stops the Worker, never turns
a success into a failure, and never loses the job. The server's own timing and start
events use this mechanism too (`workstream.actors.worker`).

Middleware comes from two places, in this order: the `WORKER_MIDDLEWARE` setting (each
entry `module:attribute`, an instance or a class called without arguments) and extensions
(`ExtensionContext.add_middleware`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from workstream.errors import ConfigError
from workstream.handlers import import_module_for
from workstream.jobs.model import Job

log = logging.getLogger(__name__)


@dataclass
class Call:
    """One handler call as middleware sees it. `result` and `error` are set before the
    `after` hooks run: exactly one is meaningful (`error` is None on success). `state` is
    for middleware to carry values from `before` to `after` (key it by your own name)."""

    job: Job  # the claimed job: id, type, payload, attempts, ...
    worker: str
    result: Any = None
    error: BaseException | None = None
    duration: float = 0.0  # seconds the handler ran (set by the built-in timing)
    timed_out: bool = False
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class Middleware:
    """Subclass and override either hook; both default to doing nothing."""

    def before(self, call: Call) -> None:
        """Before the handler runs."""

    def after(self, call: Call) -> None:
        """After the handler returned, raised or timed out."""


class MiddlewareChain:
    """The ordered middleware of this process, shared by every Worker. Adding is rare (at
    start-up) and calls are frequent, so the list is an immutable tuple swapped under a
    lock and read without one."""

    def __init__(self, middleware: Iterable[Middleware] = ()) -> None:
        self._lock = threading.Lock()
        self._items: tuple[Middleware, ...] = tuple(middleware)

    def add(self, middleware: Middleware) -> None:
        if not callable(getattr(middleware, "before", None)) or not callable(
            getattr(middleware, "after", None)
        ):
            raise TypeError(f"{middleware!r} has no before(call) and after(call) methods")
        with self._lock:
            self._items = (*self._items, middleware)

    @property
    def items(self) -> tuple[Middleware, ...]:
        return self._items

    def before(self, call: Call, items: tuple[Middleware, ...]) -> None:
        for middleware in items:
            _guarded(middleware, "before", call)

    def after(self, call: Call, items: tuple[Middleware, ...]) -> None:
        for middleware in reversed(items):
            _guarded(middleware, "after", call)


def _guarded(middleware: Middleware, hook: str, call: Call) -> None:
    try:
        getattr(middleware, hook)(call)
    except BaseException:  # SystemExit too: nothing a hook does may stop the Worker
        log.exception(
            "worker middleware %s.%s failed; ignored",
            type(middleware).__name__,
            hook,
            extra={
                "event": "middleware_error",
                "middleware": type(middleware).__name__,
                "hook": hook,
                "job_id": call.job.id,
                "type": call.job.type,
                "attempt": call.job.attempts,
            },
        )


def load_middleware(names: Iterable[str]) -> list[Middleware]:
    """`module:attribute` entries of WORKER_MIDDLEWARE, each an instance or a class taking
    no arguments. Raises ConfigError naming the entry that cannot be used."""
    loaded: list[Middleware] = []
    for name in names:
        module_name, _, attribute = name.partition(":")
        if not module_name or not attribute:
            raise ConfigError(
                f"invalid WORKER_MIDDLEWARE entry {name!r}: expected module:attribute"
            )
        module = import_module_for("WORKER_MIDDLEWARE", module_name)
        target = getattr(module, attribute, None)
        if target is None:
            raise ConfigError(
                f"WORKER_MIDDLEWARE: module {module_name!r} has no attribute {attribute!r}"
            )
        try:
            middleware = target() if isinstance(target, type) else target
        except Exception as exc:
            raise ConfigError(f"WORKER_MIDDLEWARE: {name} could not be created: {exc}") from None
        if not (hasattr(middleware, "before") and hasattr(middleware, "after")):
            raise ConfigError(f"WORKER_MIDDLEWARE: {name} has no before(call) and after(call)")
        loaded.append(middleware)
    return loaded
