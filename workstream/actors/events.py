"""The bus that carries job events (`workstream.jobs.events`) to listeners.

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

from workstream.jobs.events import JobEvent

log = logging.getLogger(__name__)


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
