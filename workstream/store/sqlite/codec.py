"""Jobs to rows and back. SQLite text takes valid Unicode only; payload and result are JSON
text."""

from __future__ import annotations

import json
from typing import Any

from workstream.jobs.attempts import Attempt
from workstream.jobs.model import Job, JobStatus
from workstream.units import valid_text

_STATUS = {status.value: status for status in JobStatus}


def dumps(value: Any) -> str:
    # ASCII escapes keep any Python string exactly, lone surrogates included, and are
    # the C encoder's fast path.
    return json.dumps(value, separators=(",", ":"))


def text(value: str | None) -> str | None:
    """Text columns take valid Unicode only."""
    return None if value is None else valid_text(value)


def row_to_job(row: tuple[Any, ...]) -> Job:
    """A row of the `columns` fragment (queries.sql), in its order."""
    return Job(
        id=row[0],
        type=row[1],
        payload=json.loads(row[2]),
        status=_STATUS[row[3]],
        attempts=row[4],
        retry_base=row[5],
        max_retries=row[6],
        last_error=row[7],
        result=None if row[8] is None else json.loads(row[8]),
        created_at=row[9],
        updated_at=row[10],
        started_at=row[11],
        finished_at=row[12],
        run_at=row[13],
        owner=row[14],
        lease_expires_at=row[15],
        idempotency_key=row[16],
        request_hash=row[17],
        error_class=row[18],
    )


def insert_params(job: Job) -> tuple[Any, ...]:
    """The parameters of `insert`: every column, in the `columns` order."""
    return (
        job.id,
        job.type,
        dumps(job.payload),
        job.status.value,
        job.attempts,
        job.retry_base,
        job.max_retries,
        text(job.last_error),
        None if job.result is None else dumps(job.result),
        job.created_at,
        job.updated_at,
        job.started_at,
        job.finished_at,
        job.run_at,
        job.owner,
        job.lease_expires_at,
        job.idempotency_key,
        job.request_hash,
        job.error_class,
    )


def update_params(job: Job, expected: Job) -> tuple[Any, ...]:
    """The parameters of `update`: the job's new state, its id and the fence."""
    return (
        job.status.value,
        job.attempts,
        job.retry_base,
        text(job.last_error),
        None if job.result is None else dumps(job.result),
        job.updated_at,
        job.started_at,
        job.finished_at,
        job.run_at,
        job.owner,
        job.lease_expires_at,
        job.error_class,
        job.id,
        expected.status.value,
        expected.attempts,
        expected.owner,
    )


def attempt_params(attempt: Attempt) -> tuple[Any, ...]:
    """The parameters of `insert_attempt`, in the `attempt_columns` order."""
    return (
        attempt.job_id,
        attempt.number,
        attempt.outcome,
        attempt.finished_at,
        attempt.started_at,
        attempt.node,
        attempt.worker,
        attempt.pid,
        text(attempt.error),
        attempt.error_class,
        text(attempt.traceback),
        attempt.duration,
    )


def row_to_attempt(row: tuple[Any, ...]) -> Attempt:
    return Attempt(*row)
