"""One group commit on the writer connection. The write transaction (`BEGIN IMMEDIATE`)
holds the whole database, so there is nothing to lock row by row and nothing to skip."""

from __future__ import annotations

import sqlite3
from typing import Any

from workstream.errors import Conflict
from workstream.jobs.attempts import Attempt
from workstream.jobs.model import Job
from workstream.store.base import chunked
from workstream.store.sqlite.codec import attempt_params, insert_params, row_to_job, update_params
from workstream.store.sqlite.queries import SQL

_MAX_PARAMS = 500  # ids per statement, well under SQLite's limit on parameters


class SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

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

    def add_attempt(self, attempt: Attempt) -> None:
        self._conn.execute(SQL["insert_attempt"], attempt_params(attempt))

    def delete_attempts(self, job_ids: list[str]) -> int:
        deleted = 0
        for chunk in chunked(job_ids, _MAX_PARAMS):
            sql = SQL["delete_attempts"].format(marks=",".join("?" * len(chunk)))
            deleted += self._conn.execute(sql, chunk).rowcount
        return deleted
