"""What a handler raises to put its job off without spending an attempt.

    from workstream import RateLimited, Snooze

    @handler("sync")
    def sync(payload, job):
        if not ready():
            raise Snooze(30)              # run again in 30 s; the attempt is not counted
        response = call_api()
        if response.status == 429:
            raise RateLimited(float(response.headers["Retry-After"]))

`Snooze(seconds)` sends the job back to `pending` with `run_at` = now + seconds.
`RateLimited(retry_after)` does the same and also holds back every other job of the type
until then, on every node (the type's stored `blocked_until`).
"""

from __future__ import annotations

import math

from workstream.jobs.limits import MAX_DELAY_SECONDS


class Snooze(Exception):
    """Defer this job by `seconds` (0 to 366 days); its attempt is not counted."""

    holds_type = False

    def __init__(self, seconds: float = 0.0) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"{type(self).__name__} takes seconds (a number)")
        value = float(seconds)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{type(self).__name__}: seconds must be zero or more")
        self.seconds = min(value, float(MAX_DELAY_SECONDS))
        super().__init__(f"deferred for {self.seconds:g}s")


class RateLimited(Snooze):
    """A downstream service said "too many requests": defer this job by `retry_after`
    seconds and hold back the type's other jobs until then."""

    holds_type = True

    def __init__(self, retry_after: float = 1.0) -> None:
        super().__init__(retry_after)
        self.retry_after = self.seconds
