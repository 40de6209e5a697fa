"""Jobs to rows and back, as PostgreSQL can store them.

PostgreSQL text cannot hold NUL. Payload and result are JSON (the encoder escapes NUL); the
other text columns escape NUL losslessly with a private-use character (`enc`), and lone
surrogates are replaced (`units.valid_text`) as SQLite does.
"""

from __future__ import annotations

import json
import re
from typing import Any, overload

from workstream.jobs.attempts import Attempt
from workstream.jobs.model import Job, JobStatus
from workstream.units import valid_text

Fence = tuple[str, int, str | None]  # what a fenced update checks: (status, attempts, owner)

_STATUS = {status.value: status for status in JobStatus}
_ESC = "\ue000"  # a private-use character: the escape for NUL in text columns
_UNESCAPE = re.compile("\ue000(.)", re.DOTALL)


@overload
def enc(value: str) -> str: ...
@overload
def enc(value: None) -> None: ...
def enc(value: str | None) -> str | None:
    """Text as PostgreSQL can store it: valid Unicode, NUL escaped (reversibly)."""
    if value is None:
        return None
    value = valid_text(value)
    if "\x00" in value or _ESC in value:
        value = value.replace(_ESC, _ESC + _ESC).replace("\x00", _ESC + "0")
    return value


@overload
def dec(value: str) -> str: ...
@overload
def dec(value: None) -> None: ...
def dec(value: str | None) -> str | None:
    """The text `enc` stored."""
    if value is None or _ESC not in value:
        return value
    return _UNESCAPE.sub(lambda m: "\x00" if m.group(1) == "0" else m.group(1), value)


def dumps(value: Any) -> str:
    # ASCII escapes keep any Python string exactly (NUL and lone surrogates included).
    return json.dumps(value, separators=(",", ":"))


def row_to_job(row: tuple[Any, ...]) -> Job:
    """A row of the `columns` fragment (queries.sql), in its order."""
    return Job(
        id=dec(row[0]),
        type=dec(row[1]),
        payload=json.loads(row[2]),
        status=_STATUS[row[3]],
        attempts=row[4],
        retry_base=row[5],
        max_retries=row[6],
        last_error=dec(row[7]),
        result=None if row[8] is None else json.loads(row[8]),
        created_at=row[9],
        updated_at=row[10],
        started_at=row[11],
        finished_at=row[12],
        run_at=row[13],
        owner=dec(row[14]),
        lease_expires_at=row[15],
        idempotency_key=dec(row[16]),
        request_hash=dec(row[17]),
        error_class=dec(row[18]),
    )


def row_fence(row: tuple[Any, ...]) -> Fence:
    """The fence of a row of the `columns` fragment, as stored."""
    return (row[3], row[4], row[14])


def insert_params(job: Job) -> tuple[Any, ...]:
    """The parameters of `insert`: every column, in the `columns` order."""
    return (
        enc(job.id),
        enc(job.type),
        dumps(job.payload),
        job.status.value,
        job.attempts,
        job.retry_base,
        job.max_retries,
        enc(job.last_error),
        None if job.result is None else dumps(job.result),
        job.created_at,
        job.updated_at,
        job.started_at,
        job.finished_at,
        job.run_at,
        enc(job.owner),
        job.lease_expires_at,
        enc(job.idempotency_key),
        enc(job.request_hash),
        enc(job.error_class),
    )


def fence(job: Job) -> Fence:
    """What every update is fenced on, as stored: (status, attempts, owner)."""
    return (job.status.value, job.attempts, enc(job.owner))


def update_params(job: Job, key: str, expected: Fence) -> tuple[Any, ...]:
    """The parameters of `update`: the job's new state, its id and the fence."""
    return (
        job.status.value,
        job.attempts,
        job.retry_base,
        enc(job.last_error),
        None if job.result is None else dumps(job.result),
        job.updated_at,
        job.started_at,
        job.finished_at,
        job.run_at,
        enc(job.owner),
        job.lease_expires_at,
        enc(job.error_class),
        key,
        *expected,
    )


def attempt_params(attempt: Attempt) -> tuple[Any, ...]:
    """The parameters of `insert_attempt`, in the `attempt_columns` order."""
    return (
        enc(attempt.job_id),
        attempt.number,
        attempt.outcome,
        attempt.finished_at,
        attempt.started_at,
        enc(attempt.node),
        enc(attempt.worker),
        attempt.pid,
        enc(attempt.error),
        enc(attempt.error_class),
        enc(attempt.traceback),
        attempt.duration,
    )


def row_to_attempt(row: tuple[Any, ...]) -> Attempt:
    return Attempt(
        job_id=dec(row[0]),
        number=row[1],
        outcome=row[2],
        finished_at=row[3],
        started_at=row[4],
        node=dec(row[5]),
        worker=dec(row[6]),
        pid=row[7],
        error=dec(row[8]),
        error_class=dec(row[9]),
        traceback=dec(row[10]),
        duration=row[11],
    )
