"""The shapes of `POST /jobs` and `POST /jobs/batch` bodies, on top of `parse_job_spec`.

`parse_job_spec` checks one job's fields; this module checks what wraps them, so that a
batch is refused as a whole before anything reaches the service (all or nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from workstream.errors import InvalidRequest
from workstream.jobs.spec import JobSpec, parse_job_spec

MAX_BATCH_SIZE = 1000
BATCH_FIELDS = frozenset({"jobs"})
# The earliest time a job's times can be written in RFC 3339 (year 1): `0001-01-01T00:00Z`
# parses, but with a positive offset (`+05:00`) it lies in year 0, and the job, once
# stored, could not be rendered.
EARLIEST_RUN_AT = datetime(1, 1, 1, tzinfo=UTC).timestamp()


def _parse_job(body: Any, now: float, index: int | None = None) -> JobSpec:
    spec = parse_job_spec(body, now=now, index=index)
    if spec.run_at is not None and spec.run_at < EARLIEST_RUN_AT:
        where = "" if index is None else f"jobs[{index}]: "
        raise InvalidRequest(f"{where}'run_at' must be 0001-01-01T00:00:00Z or later")
    return spec


def parse_single(body: Any, *, now: float) -> JobSpec:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object describing one job")
    return _parse_job(body, now)


def parse_batch(
    body: Any, *, now: float, check: Callable[[JobSpec, int], None] | None = None
) -> list[JobSpec]:
    """`{"jobs": [job, ...]}` with 1..MAX_BATCH_SIZE jobs. Each job is parsed, then given to
    `check` (the service's type and payload checks), in order: the error names the first
    bad job, whatever is wrong with it."""
    if not isinstance(body, dict):
        raise InvalidRequest('the request body must be a JSON object: {"jobs": [...]}')
    unknown = sorted(set(body) - BATCH_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r} (a batch has only 'jobs')")
    items = body.get("jobs")
    if not isinstance(items, list):
        raise InvalidRequest("'jobs' is required and must be an array of jobs")
    if not 1 <= len(items) <= MAX_BATCH_SIZE:
        raise InvalidRequest(f"'jobs' must hold 1 to {MAX_BATCH_SIZE} jobs, not {len(items)}")
    specs = []
    for index, item in enumerate(items):
        spec = _parse_job(item, now, index)
        if check is not None:
            check(spec, index)
        specs.append(spec)
    return specs
