"""What a supervisor decides about its child without being an actor: when to start a
replacement, and the figures it shows (metrics, /health).

A child that lived a while is replaced at once. One that dies soon after it started (a
handler module that crashes the interpreter, a box out of memory) is replaced later and
later — 0.5 s, 1 s, 2 s, ... up to 30 s — and three such deaths in a row are a crash loop,
shown in the log, the metrics and /health until a child lives long enough again.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Causes a child ends for, as the restart counter labels them.
CRASHED, TIMED_OUT, RECYCLED, FAILED_TO_START = (
    "crashed",
    "timed_out",
    "recycled",
    "failed_to_start",
)
CAUSES = (CRASHED, TIMED_OUT, RECYCLED, FAILED_TO_START)


class RestartPolicy:
    QUICK = 5.0  # a child that dies within this many seconds of its start "died at once"
    BASE = 0.5
    CAP = 30.0
    LOOP_AFTER = 3  # quick deaths in a row that make a crash loop

    def __init__(self) -> None:
        self.quick_deaths = 0
        self._started_at: float | None = None

    def started(self, now: float) -> None:
        self._started_at = now

    def ended(self, now: float, *, planned: bool) -> float:
        """A child ended: seconds to wait before its replacement starts. A planned end
        (recycling, a timeout that we enforced) is replaced at once."""
        lived = None if self._started_at is None else now - self._started_at
        if planned or (lived is not None and lived >= self.QUICK):
            self.quick_deaths = 0
            return 0.0
        self.quick_deaths += 1
        return min(self.CAP, self.BASE * 2 ** (self.quick_deaths - 1))

    def settled(self) -> None:
        """The child has lived `QUICK` seconds: whatever died before it, the loop is over."""
        self.quick_deaths = 0

    @property
    def crash_loop(self) -> bool:
        return self.quick_deaths >= self.LOOP_AFTER


@dataclass
class ChildStats:
    """One supervisor's figures. Written by its actor's thread only; read by scrapes and
    /health from other threads (a torn read costs one stale figure, no more)."""

    name: str
    slots: int
    pid: int | None = None
    busy: int = 0
    jobs_run: int = 0
    rss: int | None = None
    crash_loop: bool = False
    restarts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_restart(self, cause: str) -> None:
        with self._lock:
            self.restarts[cause] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            restarts = {cause: self.restarts.get(cause, 0) for cause in CAUSES}
        return {
            "name": self.name,
            "pid": self.pid,
            "slots": self.slots,
            "busy": self.busy,
            "jobs_run": self.jobs_run,
            "rss_bytes": self.rss,
            "crash_loop": self.crash_loop,
            "restarts": restarts,
        }
