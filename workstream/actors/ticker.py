"""The one thread that keeps time.

Actors never sleep: the ticker calls short functions (always a `tell`) at given moments:
periodic ticks (the Sweeper every SWEEPER_INTERVAL, lease renewal every LEASE_DURATION/3)
and one-shot alarms (the Dispatcher's wake-up for the next delayed job; a process Worker's
handler deadlines, kill grace and restart backoff).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

import pykka

log = logging.getLogger(__name__)


class Ticker:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, float | None, Callable[[], None]]] = []
        self._order = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="Ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Started and still running (a dead ticker means no sweeps, renewals, alarms)."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def every(self, interval: float, fn: Callable[[], None]) -> None:
        """Call `fn` every `interval` seconds, the first time one interval from now."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._push(self._monotonic() + interval, interval, fn)

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Call `fn` once at wall-clock time `when` (Unix seconds), or at once if past."""
        self._push(self._monotonic() + max(0.0, when - self._clock()), None, fn)

    def after(self, seconds: float, fn: Callable[[], None]) -> None:
        """Call `fn` once `seconds` from now (monotonic: a deadline, not a wall-clock time)."""
        self._push(self._monotonic() + max(0.0, seconds), None, fn)

    def _push(self, due: float, interval: float | None, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), interval, fn))
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap and self._heap[0][0] <= self._monotonic():
                        break
                    wait = self._heap[0][0] - self._monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                due, _, interval, fn = heapq.heappop(self._heap)
                if interval is not None:
                    # Next tick from now, not from `due`: a stalled process does not catch
                    # up with a burst of ticks.
                    nxt = max(due + interval, self._monotonic())
                    heapq.heappush(self._heap, (nxt, next(self._order), interval, fn))
            try:
                fn()
            except pykka.ActorDeadError:
                pass  # shutting down: the actor it ticks has stopped
            except Exception:
                log.warning(
                    "ticker callback failed", exc_info=True, extra={"event": "ticker_error"}
                )
