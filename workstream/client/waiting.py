"""`Client.wait`: poll one job until it is finished, backing off, riding out restarts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workstream.client.errors import ApiError, ServerUnreachable, WaitTimeout
from workstream.errors import WorkStreamError

_MAX_POLL_INTERVAL = 1.0  # wait() backs off to this: snappy for short jobs, gentle on long ones
_POLL_BACKOFF = 1.5
_MIN_POLL_TIMEOUT = 0.1  # lets the last poll before a wait deadline still get an answer
_TRANSIENT_STATUSES = frozenset({502, 503, 504})  # draining, restarting, or a proxy in between


def poll_timeout(request_timeout: float, left: float | None) -> float:
    """The timeout of one poll: the client's, cut to the `left` seconds before the wait's
    deadline (None: no deadline), but never below a short minimum."""
    if left is None:
        return request_timeout
    return min(request_timeout, max(left, _MIN_POLL_TIMEOUT))


def wait_for(
    job_id: str,
    fetch: Callable[[float | None], dict[str, Any]],
    timeout: float | None,
    poll_interval: float,
    on_progress: Callable[[dict[str, Any], float], object] | None,
) -> dict[str, Any]:
    """Call `fetch(seconds left before the deadline, or None)` for the job until it is
    finished, and return it; the rules are `Client.wait`'s."""
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    interval = poll_interval
    job: dict[str, Any] | None = None
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        error: WorkStreamError | None = None
        pause = interval
        try:
            job = fetch(left)
        except ServerUnreachable as exc:
            error = exc
        except ApiError as exc:
            if exc.status not in _TRANSIENT_STATUSES:
                raise
            error = exc
            pause = max(pause, exc.retry_after or 0)
        else:
            if on_progress is not None:
                on_progress(job, time.monotonic() - start)
            if _is_finished(job):
                return job
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(job_id, job, timeout or 0.0, _stall_reason(job, error)) from error
            pause = min(pause, left)
        time.sleep(pause)
        interval = min(interval * _POLL_BACKOFF, max(_MAX_POLL_INTERVAL, poll_interval))


def _stall_reason(job: dict[str, Any] | None, error: Exception | None) -> str:
    if error is not None:
        return f"last error: {error}"
    return f"last seen {job.get('status')!r}" if job is not None else "no answer"


def _is_finished(job: dict[str, Any]) -> bool:
    status = job.get("status")
    if status == "failed":
        return job.get("run_at") is None  # with a run_at, the next attempt is scheduled
    return status in ("completed", "cancelled")
