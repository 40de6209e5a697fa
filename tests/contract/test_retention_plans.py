"""The retention delete and the scheduled-jobs count are index-backed on both SQL stores
(migration 0003's jobs_finished; 0001's status/run_at indexes), and a SQLite database
gives freed pages back to the file system (incremental auto-vacuum)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from tests.pg import ScratchDatabase
from workstream.jobs.model import Job, JobStatus
from workstream.store.postgres import PostgresStore
from workstream.store.postgres.queries import SQL as PG_SQL
from workstream.store.sqlite import SqliteStore
from workstream.store.sqlite.queries import SQL as SQLITE_SQL

PARAMS = {"delete_finished": ("completed", 1.0, 10), "count_scheduled": (1.0, 10)}
INDEX = {"delete_finished": "jobs_finished", "count_scheduled": "jobs_by_status_run_at"}
# On an empty table the planner may take either pending-jobs index for the count (0002's
# jobs_pending_by_type_age, ordered by run_at within the pending rows, also serves it).
PG_INDEX = {
    "delete_finished": ("jobs_finished",),
    "count_scheduled": ("jobs_ready", "jobs_pending_by_type_age"),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_sqlite_plans_use_the_indexes(tmp_path: Path, name: str) -> None:
    store = SqliteStore(tmp_path / "plans.db")
    store.open()
    try:
        assert store._writer is not None
        plan = " | ".join(
            row[-1]
            for row in store._writer.execute("EXPLAIN QUERY PLAN " + SQLITE_SQL[name], PARAMS[name])
        )
    finally:
        store.close()
    assert f"COVERING INDEX {INDEX[name]}" in plan, plan
    assert "SCAN jobs" not in plan, plan


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_postgres_plans_can_use_the_indexes(pg_database: ScratchDatabase, name: str) -> None:
    migrated = PostgresStore(pg_database.url)
    migrated.open()  # the fixture's database may be new
    migrated.close()
    with psycopg.connect(pg_database.url) as conn:
        conn.execute("SET enable_seqscan = off")  # an empty table: ask whether it *can*
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + PG_SQL[name], PARAMS[name]))
        conn.rollback()
    assert any(index in plan for index in PG_INDEX[name]), plan
    assert "Seq Scan" not in plan, plan


def test_sqlite_gives_deleted_jobs_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "vacuum.db"
    store = SqliteStore(path)
    store.open()
    try:
        with store.transaction() as tx:
            for n in range(3000):
                tx.insert(
                    Job(
                        id=f"job-{n}",
                        type="echo",
                        payload={"text": "x" * 300},
                        status=JobStatus.COMPLETED,
                        max_retries=0,
                        created_at=1.0,
                        updated_at=2.0,
                        finished_at=2.0,
                        run_at=None,
                    )
                )
        assert store._writer is not None
        full = store._writer.execute("PRAGMA page_count").fetchone()[0]
        while True:
            with store.transaction() as tx:
                if not tx.delete_finished(completed_before=10.0, failed_before=None, limit=500):
                    break
        pages = store._writer.execute("PRAGMA page_count").fetchone()[0]
        free = store._writer.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        store.close()
    assert free == 0
    assert pages < full / 5, (full, pages)


def test_an_existing_database_is_converted_to_incremental_auto_vacuum_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE unrelated (x)")  # made before: auto_vacuum NONE
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    store.open()
    try:
        assert store._writer is not None
        assert store._writer.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    finally:
        store.close()
