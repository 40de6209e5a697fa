"""Worked example: an extension actor with state and a timer, a failure-rate watchdog.

    EXTENSIONS=examples.failure_watchdog workstream serve

It counts failed attempts (`job_failed` events) per job type over a sliding `window`, and
every `check_every` compares each count with `threshold`. When a type reaches it, the
watchdog logs a `failure_alert` warning and sets `workstream_failure_alert{type=...}` to 1;
when the count falls back below, it logs `failure_alert_cleared` and sets the gauge to 0.
`GET /ext/failure_watchdog/alerts` answers the current counts and alerts as JSON.

Settings: the `[failure_watchdog]` table of the config file or FAILURE_WATCHDOG_WINDOW,
FAILURE_WATCHDOG_THRESHOLD and FAILURE_WATCHDOG_CHECK_EVERY.

The logic is `FailureWindow`, a plain class that takes times as arguments (unit tests move
time by hand); `FailureWatchdog` is the thin actor around it: events and ticks in, log
lines and the gauge out. See docs/architecture.md, "Extending WorkStream".
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import Any

import falcon
import pykka
from prometheus_client import Gauge

from workstream import ExtensionContext, JobEvents, Setting, events
from workstream.converters import duration, interval, positive_int

SETTINGS = (
    Setting("window", 300.0, duration, "failures older than this are forgotten"),
    Setting("threshold", 5, positive_int, "failures in the window that raise an alert"),
    Setting("check_every", 10.0, interval, "how often the counts are compared"),
)
ASK_TIMEOUT = 2.0  # an HTTP request never waits longer for the actor


def setup(context: ExtensionContext) -> list[pykka.ActorRef[Any]]:
    settings = context.settings(*SETTINGS)  # before anything starts: a bad value is exit 2
    gauge = Gauge(
        "workstream_failure_alert",
        "1 while a job type's failed attempts in the watchdog's window reach its threshold.",
        ["type"],
        registry=context.metrics,
    )
    watchdog = FailureWatchdog.start(
        window=FailureWindow(window=settings["window"], threshold=settings["threshold"]),
        clock=context.clock,
        log=context.log,
        gauge=gauge,
    )
    context.subscribe(watchdog, kinds=(events.JOB_FAILED,))
    context.every(settings["check_every"], watchdog, Check())
    context.add_route("/alerts", AlertsResource(watchdog))
    return [watchdog]


# -- the logic: no threads, no clock of its own -----------------------------------------------


@dataclass(frozen=True)
class Change:
    """An alert raised (`alerting`) or cleared for one job type."""

    type: str
    alerting: bool
    count: int


class FailureWindow:
    """Failure times per job type within the last `window` seconds, and which types alert.

    A type alerts from the check at which its count reaches `threshold` to the check at
    which it is below again: each crossing is reported once, by `check`."""

    def __init__(self, *, window: float, threshold: int) -> None:
        self.window = window
        self.threshold = threshold
        self._failures: dict[str, list[float]] = {}  # sorted times, per type
        self._alerting: set[str] = set()

    def record(self, job_type: str, at: float) -> None:
        bisect.insort(self._failures.setdefault(job_type, []), at)

    def check(self, now: float) -> list[Change]:
        """Forget what left the window; return the alerts raised and cleared since the
        last check."""
        changes: list[Change] = []
        for job_type in sorted({*self._failures, *self._alerting}):
            count = self._prune(job_type, now)
            alerting = count >= self.threshold
            if alerting != (job_type in self._alerting):
                changes.append(Change(job_type, alerting, count))
                if alerting:
                    self._alerting.add(job_type)
                else:
                    self._alerting.discard(job_type)
        return changes

    def snapshot(self, now: float) -> dict[str, Any]:
        """The counts in the window as of `now` and the types alerting as of the last check."""
        counts = {t: self._count(t, now) for t in sorted(self._failures)}
        return {
            "window_seconds": self.window,
            "threshold": self.threshold,
            "failures": {t: n for t, n in counts.items() if n},
            "alerts": sorted(self._alerting),
        }

    def _count(self, job_type: str, now: float) -> int:
        times = self._failures.get(job_type, [])
        return len(times) - bisect.bisect_right(times, now - self.window)

    def _prune(self, job_type: str, now: float) -> int:
        times = self._failures.get(job_type, [])
        del times[: bisect.bisect_right(times, now - self.window)]
        if not times:
            self._failures.pop(job_type, None)
        return len(times)


# -- the actor: a thin shell ------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """The tick: compare the counts with the threshold now."""


@dataclass(frozen=True)
class Snapshot:
    """Ask for `FailureWindow.snapshot` (the actor's state is read only on its thread)."""


class FailureWatchdog(pykka.ThreadingActor):
    def __init__(
        self, *, window: FailureWindow, clock: Any, log: logging.Logger, gauge: Any
    ) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._log = log
        self._gauge = gauge  # prometheus Gauge with a `type` label

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, JobEvents):
            for event in message.events:
                if event.kind == events.JOB_FAILED:
                    self._window.record(event.type, event.at)
        elif isinstance(message, Check):
            for change in self._window.check(self._clock()):
                self._report(change)
        elif isinstance(message, Snapshot):
            return self._window.snapshot(self._clock())
        return None

    def _report(self, change: Change) -> None:
        self._gauge.labels(change.type).set(1 if change.alerting else 0)
        fields = {
            "type": change.type,
            "failures": change.count,
            "threshold": self._window.threshold,
            "window_seconds": self._window.window,
        }
        if change.alerting:
            self._log.warning(
                "%d failed attempts of %s in %gs",
                change.count,
                change.type,
                self._window.window,
                extra={"event": "failure_alert", **fields},
            )
        else:
            self._log.info(
                "failures of %s back below the threshold",
                change.type,
                extra={"event": "failure_alert_cleared", **fields},
            )


class AlertsResource:
    """GET /ext/failure_watchdog/alerts: {"failures": {type: n}, "alerts": [type], ...}."""

    def __init__(self, watchdog: pykka.ActorRef[Any]) -> None:
        self._watchdog = watchdog

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            resp.media = self._watchdog.ask(Snapshot(), timeout=ASK_TIMEOUT)
        except (pykka.ActorDeadError, pykka.Timeout):
            raise falcon.HTTPServiceUnavailable(
                description="the failure watchdog is not answering"
            ) from None
