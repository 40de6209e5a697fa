"""What a submission asks for, and the checks that turn untrusted JSON into it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from workstream.errors import InvalidRequest
from workstream.jobs.limits import (
    MAX_DELAY_SECONDS,
    MAX_RETRIES_LIMIT,
    MAX_TYPE_LENGTH,
    is_job_type,
)
from workstream.jobs.types import PRIORITY_HIGHEST, PRIORITY_LOWEST
from workstream.units import parse_duration, parse_time

JOB_FIELDS = frozenset({"type", "payload", "max_retries", "delay", "run_at", "priority"})


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated request for one job. `max_retries=None` takes the server's default;
    `run_at=None` means now."""

    type: str
    payload: Any = None
    max_retries: int | None = None
    run_at: float | None = None
    priority: int | None = None  # None: the default (jobs.types.PRIORITY_DEFAULT)


def _where(index: int | None) -> str:
    return "" if index is None else f"jobs[{index}]: "


def parse_job_spec(body: Any, *, now: float, index: int | None = None) -> JobSpec:
    """Check one job object from a request. Raises InvalidRequest naming the field (and the
    index within a batch)."""
    where = _where(index)
    if not isinstance(body, dict):
        raise InvalidRequest(f"{where}a job must be a JSON object")
    unknown = sorted(set(body) - JOB_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"{where}unknown field {unknown[0]!r} (allowed: {', '.join(sorted(JOB_FIELDS))})"
        )
    job_type = body.get("type")
    if not isinstance(job_type, str) or not job_type.strip():
        raise InvalidRequest(f"{where}'type' is required and must be a non-empty string")
    if not is_job_type(job_type):
        raise InvalidRequest(
            f"{where}'type' must be at most {MAX_TYPE_LENGTH} letters, digits or _.:-"
        )
    max_retries = body.get("max_retries")
    if max_retries is not None and (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, int)
        or not 0 <= max_retries <= MAX_RETRIES_LIMIT
    ):
        raise InvalidRequest(
            f"{where}'max_retries' must be a whole number from 0 to {MAX_RETRIES_LIMIT}"
        )
    if "delay" in body and "run_at" in body:
        raise InvalidRequest(f"{where}give 'delay' or 'run_at', not both")
    run_at = None
    if body.get("delay") is not None:
        run_at = now + _parse_delay(body["delay"], where)
    elif body.get("run_at") is not None:
        run_at = _parse_run_at(body["run_at"], where, now)
    priority = body.get("priority")
    if priority is not None and (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not PRIORITY_HIGHEST <= priority <= PRIORITY_LOWEST
    ):
        raise InvalidRequest(
            f"{where}'priority' must be a whole number from {PRIORITY_HIGHEST} (starts first) "
            f"to {PRIORITY_LOWEST} (starts last)"
        )
    payload = body.get("payload", {})
    return JobSpec(
        type=job_type, payload=payload, max_retries=max_retries, run_at=run_at, priority=priority
    )


def _parse_delay(delay: Any, where: str) -> float:
    if isinstance(delay, bool):
        raise InvalidRequest(f"{where}'delay' must be seconds (a number) or a duration like '2s'")
    if isinstance(delay, int | float):
        try:
            seconds = float(delay)
        except OverflowError:
            raise InvalidRequest(f"{where}'delay' may be at most 366 days") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidRequest(f"{where}'delay' must be zero or more seconds")
    elif isinstance(delay, str) and len(delay) <= 64:
        try:
            seconds = parse_duration(delay)
        except ValueError as exc:
            raise InvalidRequest(f"{where}'delay': {exc}") from None
    else:
        raise InvalidRequest(f"{where}'delay' must be seconds (a number) or a duration like '2s'")
    if seconds > MAX_DELAY_SECONDS:
        raise InvalidRequest(f"{where}'delay' may be at most 366 days")
    return seconds


def _parse_run_at(value: Any, where: str, now: float) -> float:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}'run_at' must be an RFC 3339 timestamp string")
    try:
        run_at = parse_time(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(f"{where}'run_at': {exc}") from None
    if run_at - now > MAX_DELAY_SECONDS:
        raise InvalidRequest(f"{where}'run_at' may be at most 366 days ahead")
    return run_at
