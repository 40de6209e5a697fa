"""The small built-in handlers: `echo` and `sleep`."""

from __future__ import annotations

import math
import time
from typing import Any

from workstream.handlers import Handler
from workstream.jobs.model import JobContext

MAX_SLEEP_SECONDS = 3600.0


def echo(payload: Any, job: JobContext) -> Any:
    """Return the payload: the job's result is what was sent."""
    return payload


def _sleep_seconds(payload: Any) -> float:
    if not isinstance(payload, dict):
        raise ValueError('expected an object like {"seconds": 1.5}')
    seconds = payload.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("'seconds' must be a number")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"'seconds' must be from 0 to {MAX_SLEEP_SECONDS:g}")
    return float(seconds)


def validate_sleep(payload: Any) -> None:
    _sleep_seconds(payload)


def sleep(payload: Any, job: JobContext) -> dict[str, float]:
    """Sleep for payload["seconds"]; useful to see workers, capacity and shutdown at work."""
    seconds = _sleep_seconds(payload)
    time.sleep(seconds)
    return {"slept": seconds}


HANDLERS = (
    Handler("echo", echo),
    Handler("sleep", sleep, validate=validate_sleep),
)
