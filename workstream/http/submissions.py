"""The shapes of `POST /jobs` and `POST /jobs/batch` bodies, on top of `parse_job_spec`.

`parse_job_spec` checks one job's fields; this module checks what wraps them, so that a
batch is refused as a whole before anything reaches the service (all or nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workstream.errors import InvalidRequest
from workstream.jobs.spec import JobSpec, parse_job_spec

MAX_BATCH_SIZE = 1000
BATCH_FIELDS = frozenset({"jobs"})


def parse_single(body: Any, *, now: float) -> JobSpec:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object describing one job")
    return parse_job_spec(body, now=now)


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
        spec = parse_job_spec(item, now=now, index=index)
        if check is not None:
            check(spec, index)
        specs.append(spec)
    return specs
