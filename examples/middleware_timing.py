"""Worked example: worker middleware added by an extension, handler time per job type.

    EXTENSIONS=examples.middleware_timing workstream serve

`HandlerTiming` runs around every handler call (`workstream.Middleware`): it adds each
call's time to its job type's totals and logs a `slow_handler` warning when a call takes
`slow` or longer (the `[middleware_timing]` table or MIDDLEWARE_TIMING_SLOW, default 1s).
`GET /ext/middleware_timing` answers the totals as JSON. No actor: middleware runs on the
Workers' threads, so its state is behind a lock. See docs/architecture.md, "Extending WorkStream".
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import falcon
import pykka

from workstream import Call, ExtensionContext, Middleware, Setting
from workstream.converters import duration

SETTINGS = (Setting("slow", 1.0, duration, "a call this long or longer is logged"),)


def setup(context: ExtensionContext) -> list[pykka.ActorRef[Any]]:
    slow = context.settings(*SETTINGS)["slow"]
    timing = HandlerTiming(slow=slow, log=context.log)
    context.add_middleware(timing)
    context.add_route("/", TimingResource(timing))
    return []  # no actors to stop


class HandlerTiming(Middleware):
    def __init__(self, *, slow: float, log: logging.Logger) -> None:
        self.slow = slow
        self._log = log
        self._lock = threading.Lock()
        self._totals: dict[str, dict[str, float]] = {}

    def after(self, call: Call) -> None:
        # The server's own timing runs innermost, so `call.duration` is the handler's time.
        job_type = call.job.type
        with self._lock:
            totals = self._totals.setdefault(
                job_type, {"calls": 0, "failed": 0, "seconds": 0.0, "max_seconds": 0.0}
            )
            totals["calls"] += 1
            totals["failed"] += 0 if call.ok else 1
            totals["seconds"] += call.duration
            totals["max_seconds"] = max(totals["max_seconds"], call.duration)
        if call.duration >= self.slow:
            self._log.warning(
                "%s took %.3fs",
                job_type,
                call.duration,
                extra={
                    "event": "slow_handler",
                    "job_id": call.job.id,
                    "type": job_type,
                    "duration_ms": round(call.duration * 1000, 3),
                },
            )

    def totals(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {job_type: dict(values) for job_type, values in sorted(self._totals.items())}


class TimingResource:
    """GET /ext/middleware_timing: {type: {calls, failed, seconds, max_seconds}}."""

    def __init__(self, timing: HandlerTiming) -> None:
        self._timing = timing

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._timing.totals()
