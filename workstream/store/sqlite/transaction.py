"""One group commit on the writer connection. The write transaction (`BEGIN IMMEDIATE`)
holds the whole database, so there is nothing to lock row by row and nothing to skip."""

from __future__ import annotations

import sqlite3
from typing import Any

from workstream.errors import Conflict
from workstream.jobs.attempts import Attempt
from workstream.jobs.model import Job
from workstream.jobs.schedules import FiredSlot
from workstream.jobs.types import TypeControl
from workstream.store.base import DeletedJob, chunked, retention_cutoffs
from workstream.store.sqlite.codec import (
    attempt_params,
    control_params,
    insert_params,
    row_to_control,
    row_to_job,
    update_params,
)
from workstream.store.sqlite.queries import SQL

_MAX_PARAMS = 500  # ids per statement, well under SQLite's limit on parameters


class SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # The control rows as this transaction last read them (None: not read, or written
        # since): a claim reads them, then "locks" some, which here is reading them again.
        self._controls: dict[str, TypeControl] | None = None

    def _one(self, sql: str, params: tuple[Any, ...]) -> Job | None:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row_to_job(row)

    def _many(self, sql: str, params: tuple[Any, ...]) -> list[Job]:
        return [row_to_job(row) for row in self._conn.execute(sql, params)]

    def insert(self, job: Job) -> None:
        try:
            self._conn.execute(SQL["insert"], insert_params(job))
        except sqlite3.IntegrityError:
            raise Conflict("a job with this id or idempotency key already exists") from None

    def get(self, job_id: str) -> Job | None:
        return self._one(SQL["get"], (job_id,))

    def update(self, job: Job, expected: Job) -> bool:
        cursor = self._conn.execute(SQL["update"], update_params(job, expected))
        return cursor.rowcount == 1

    def lock(self, job_ids: list[str]) -> None:
        pass  # the write transaction holds the whole database (see base.Transaction.lock)

    def find_by_idempotency_key(self, key: str) -> Job | None:
        return self._one(SQL["find_by_idempotency_key"], (key,))

    def count_ready(self, now: float, limit: int) -> int:
        row = self._conn.execute(SQL["count_ready"], (now, limit)).fetchone()
        return int(row[0])

    def claimable(self, now: float, limit: int) -> list[Job]:
        return self._many(SQL["claimable"], (now, limit))

    def pending_types(self) -> dict[str, TypeControl]:
        rows = self._conn.execute(SQL["pending_types"]).fetchall()
        return {row[0]: row_to_control(row) for row in rows}

    def claimable_by_type(
        self, now: float, quotas: dict[str, int], aged_before: float | None = None
    ) -> dict[str, list[Job]]:
        out: dict[str, list[Job]] = {}
        sql = SQL["claimable_of_type"]
        for job_type, quota in quotas.items():
            if quota <= 0:
                continue
            jobs: list[Job] = []
            seen: set[str] = set()
            for row in self._conn.execute(
                sql, (job_type, aged_before, quota, job_type, now, quota)
            ):
                if row[1] not in seen and len(jobs) < quota:
                    seen.add(row[1])
                    jobs.append(row_to_job(row[1:]))
            if jobs:
                out[job_type] = jobs
        return out

    def running(self, job_type: str) -> list[Job]:
        return self._many(SQL["running_of_type"], (job_type,))

    def count_running(self, job_type: str) -> int:
        return int(self._conn.execute(SQL["count_running_of_type"], (job_type,)).fetchone()[0])

    def type_controls(self) -> dict[str, TypeControl]:
        rows = self._conn.execute(SQL["type_controls"]).fetchall()
        self._controls = {row[0]: row_to_control(row) for row in rows}
        return dict(self._controls)

    def lock_types(self, names: list[str]) -> dict[str, TypeControl]:
        # The write transaction holds the whole database: reading is locking.
        if self._controls is not None:
            known = self._controls
            return {name: known.get(name, TypeControl(name)) for name in names}
        found: dict[str, TypeControl] = {}
        for chunk in chunked(sorted(set(names)), _MAX_PARAMS):
            sql = SQL["type_controls_of"].format(marks=",".join("?" * len(chunk)))
            for row in self._conn.execute(sql, chunk):
                found[row[0]] = row_to_control(row)
        return {name: found.get(name, TypeControl(name)) for name in names}

    def save_type(self, control: TypeControl, *, wake: bool = False) -> None:
        self._conn.execute(SQL["save_type"], control_params(control))
        self._controls = None

    def next_run_at(self, now: float) -> float | None:
        row = self._conn.execute(SQL["next_run_at"], (now, now)).fetchone()
        return row[0]

    def due_retries(self, now: float, limit: int) -> list[Job]:
        return self._many(SQL["due_retries"], (now, limit))

    def expired_leases(self, now: float, limit: int) -> list[Job]:
        return self._many(SQL["expired_leases"], (now, limit))

    def processing(self, owner: str | None = None) -> list[Job]:
        if owner is None:
            return self._many(SQL["processing"], ())
        return self._many(SQL["processing_of_owner"], (owner,))

    def renew_leases(self, owner: str, job_ids: list[str], until: float) -> int:
        renewed = 0
        for chunk in chunked(job_ids, _MAX_PARAMS):
            sql = SQL["renew_leases"].format(marks=",".join("?" * len(chunk)))
            renewed += self._conn.execute(sql, (until, owner, *chunk)).rowcount
        return renewed

    def count_scheduled(self, now: float, limit: int) -> int:
        row = self._conn.execute(SQL["count_scheduled"], (now, limit)).fetchone()
        return int(row[0])

    def last_slot(self, name: str) -> float | None:
        row = self._conn.execute(SQL["last_slot"], (name,)).fetchone()
        return None if row is None else float(row[0])

    def record_slot(self, fired: FiredSlot) -> None:
        self._conn.execute(
            SQL["record_slot"], (fired.name, fired.slot, fired.job_id, fired.fired_at)
        )

    def delete_finished(
        self, *, completed_before: float | None, failed_before: float | None, limit: int
    ) -> list[DeletedJob]:
        deleted: list[DeletedJob] = []
        for status, before in retention_cutoffs(completed_before, failed_before):
            if len(deleted) >= limit:
                break
            rows = self._conn.execute(
                SQL["delete_finished"], (status.value, before, limit - len(deleted))
            ).fetchall()
            deleted += [DeletedJob(job_id, job_type) for job_id, job_type in rows]
        if deleted:
            self.delete_attempts([job.id for job in deleted])  # the history goes with its job
            # The freed pages go back to the file system now (auto_vacuum = INCREMENTAL):
            # the file stops growing once retention keeps up.
            free = self._conn.execute(SQL["freelist_count"]).fetchone()[0]
            for _ in range(free):
                self._conn.execute(SQL["incremental_vacuum"])
        return deleted

    def add_attempt(self, attempt: Attempt) -> None:
        self._conn.execute(SQL["insert_attempt"], attempt_params(attempt))

    def delete_attempts(self, job_ids: list[str]) -> int:
        deleted = 0
        for chunk in chunked(job_ids, _MAX_PARAMS):
            sql = SQL["delete_attempts"].format(marks=",".join("?" * len(chunk)))
            deleted += self._conn.execute(sql, chunk).rowcount
        return deleted
