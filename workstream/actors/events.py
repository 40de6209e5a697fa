"""Job events and the bus that carries them to listeners.

The Registry publishes what it committed; Workers publish when a handler starts. Listeners
(metrics, logs, the Dispatcher's wake-up, an audit trail, ...) subscribe here, so adding one
never touches the publishers. A listener is any callable taking a list of events; an actor
subscribes with `subscribe_actor`, which turns each published batch into one `tell`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

log = logging.getLogger(__name__)

JOB_CREATED = "job_created"
JOB_STARTED = "job_started"
JOB_COMPLETED = "job_completed"
JOB_FAILED = "job_failed"  # an attempt failed; `final` says whether the job failed for good
JOB_RETRIED = "job_retried"  # failed -> pending again: by the sweeper (backoff) or manually
JOB_RECOVERED = "job_recovered"  # an interrupted attempt was found (restart, expired lease)
JOB_RELEASED = "job_released"  # graceful shutdown gave a running job back, attempt uncounted
JOB_CANCELLED = "job_cancelled"
JOB_FENCED = "job_fenced"  # a late completion or failure was refused (lease lost)
JOB_REJECTED = "job_rejected"  # a submission refused because the queue was full

# Events after which jobs may be ready to claim.
MAKES_WORK = frozenset({JOB_CREATED, JOB_RETRIED, JOB_RECOVERED, JOB_RELEASED})


@dataclass(frozen=True, slots=True)
class JobEvent:
    kind: str
    job_id: str
    type: str
    attempt: int
    at: float
    worker: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    final: bool = False
    run_at: float | None = None
    queue_wait: float | None = None
    reason: str | None = None
    count: int = 1

    def fields(self) -> dict[str, Any]:
        """The non-empty fields, for structured logs."""
        out: dict[str, Any] = {"event": self.kind, "job_id": self.job_id, "type": self.type}
        if self.attempt:
            out["attempt"] = self.attempt
        for name in ("worker", "duration_ms", "error", "reason"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.kind == JOB_FAILED:
            out["final"] = self.final
        return out


@dataclass(frozen=True, slots=True)
class JobEvents:
    """The message an actor listener receives: one published batch."""

    events: Sequence[JobEvent]


Listener = Callable[[Sequence[JobEvent]], None]


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[tuple[Listener, frozenset[str] | None], ...] = ()

    def subscribe(
        self, listener: Listener, kinds: Collection[str] | None = None, *, first: bool = False
    ) -> None:
        """Call `listener(events)` with every published batch (only `kinds`, if given);
        before the listeners subscribed so far if `first`."""
        entry = (listener, None if kinds is None else frozenset(kinds))
        with self._lock:
            if first:
                self._listeners = (entry, *self._listeners)
            else:
                self._listeners = (*self._listeners, entry)

    def subscribe_actor(
        self, ref: pykka.ActorRef[Any], kinds: Collection[str] | None = None, *, first: bool = False
    ) -> None:
        def deliver(events: Sequence[JobEvent]) -> None:
            ref.tell(JobEvents(events))

        self.subscribe(deliver, kinds, first=first)

    def unsubscribe_all(self) -> None:
        with self._lock:
            self._listeners = ()

    def publish(self, events: Sequence[JobEvent]) -> None:
        if not events:
            return
        for listener, kinds in self._listeners:
            chosen = events if kinds is None else [e for e in events if e.kind in kinds]
            if not chosen:
                continue
            try:
                listener(chosen)
            except pykka.ActorDeadError:
                pass  # an actor listener stopped (shutdown); nothing to deliver to
            except Exception:
                log.exception("event listener failed", extra={"event": "listener_error"})
