"""How long a client refused with 429 should wait before it submits again.

The queue's capacity counts jobs waiting to start, so a place frees each time a job
starts. `StartRate` counts starts per second over the last `WINDOW` seconds; a refused
request that brings n due jobs is told to come back after n / rate seconds, rounded up,
at least 1 and at most `WINDOW`. Jobs that take a minute each free one place a minute: a
`Retry-After: 1` would bring every refused client back sixty times for nothing.

When no job started during the time watched, nothing is known sooner than that time: the
answer is the time watched (up to `WINDOW`), not 1.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from workstream.jobs.events import JOB_STARTED, JobEvent

WINDOW = 10  # seconds of starts that the estimate looks at; also the longest answer


class StartRate:
    """Counts job starts (a listener on the event bus) and turns them into a wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window: int = WINDOW) -> None:
        self._clock = clock
        self._window = window
        self._lock = threading.Lock()
        self._since = clock()
        self._starts: dict[int, int] = {}  # whole second -> starts in it

    def on_events(self, events: Sequence[JobEvent]) -> None:
        started = sum(event.count for event in events if event.kind == JOB_STARTED)
        if not started:
            return
        second = int(self._clock())
        with self._lock:
            self._starts[second] = self._starts.get(second, 0) + started
            if len(self._starts) > self._window:
                self._forget(second)

    def per_second(self) -> float:
        """Starts per second over the last `window` seconds (0.0 when none)."""
        now = self._clock()
        with self._lock:
            self._forget(int(now))
            started = sum(self._starts.values())
        # At least a second: one start in the first millisecond is not 1,000 a second.
        watched = min(float(self._window), max(1.0, now - self._since))
        return started / watched

    def retry_after(self, jobs: int = 1) -> int:
        """Whole seconds until `jobs` more jobs are likely to fit in the queue."""
        rate = self.per_second()
        if rate > 0:
            wait = math.ceil(max(1, jobs) / rate)
        else:
            wait = math.ceil(self._clock() - self._since)  # nothing started while watched
        return max(1, min(self._window, wait))

    def _forget(self, now_second: int) -> None:
        oldest = now_second - self._window + 1
        for second in [s for s in self._starts if s < oldest]:
            del self._starts[second]
