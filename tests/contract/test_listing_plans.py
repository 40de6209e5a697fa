"""Every job filter and every console summary is index-backed, on both SQL stores: the
planners' own word for it (SQLite's EXPLAIN QUERY PLAN; PostgreSQL's EXPLAIN with
sequential scans priced out, since on a near-empty table a scan is rightly cheapest).
The timings with 1,000,000 jobs are in benchmarks/finding.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.pg import ScratchDatabase
from tests.support import make_job
from workstream.jobs.attempts import error_class_of
from workstream.jobs.listing import JobFilter
from workstream.jobs.model import JobStatus
from workstream.store.postgres import PostgresStore
from workstream.store.postgres.queries import SQL as PG_SQL
from workstream.store.schema import load_migrations, split_sql
from workstream.store.sqlite import SqliteStore
from workstream.store.sqlite import store as sqlite_store
from workstream.store.sqlite.queries import SQL as SQLITE_SQL

FAILED = JobStatus.FAILED

# filter -> the index that must serve it (SQLite; the listing order index where none is
# named). `ordered`: the index also gives the order (no sort step).
CASES = {
    "none": (JobFilter(), "jobs_by_created", True),
    "oldest": (JobFilter(order="oldest"), "jobs_by_created", True),
    "cursor": (JobFilter(after=(1.0, 5)), "jobs_by_created", True),
    "status": (JobFilter(status=FAILED), "jobs_by_status_created", True),
    "type": (JobFilter(job_type="resize"), "jobs_by_type_created", True),
    "time range": (JobFilter(created_after=1.0, created_before=2.0), "jobs_by_created", True),
    "status and time": (
        JobFilter(status=FAILED, created_after=1.0),
        "jobs_by_status_created",
        True,
    ),
    "id prefix": (JobFilter(id_prefix="ab12"), "sqlite_autoindex_jobs_1", False),
    "idempotency key": (JobFilter(idempotency_key="k"), "sqlite_autoindex_jobs_2", False),
    "error": (JobFilter(error="disk full"), "jobs_errors", False),
}


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "plans.db")
    store.open()
    yield store
    store.close()


def sqlite_plan(store: SqliteStore, sql: str, params: tuple) -> list[str]:
    conn = store._reader()
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.mark.parametrize("case", CASES)
def test_sqlite_serves_each_filter_from_an_index(sqlite, case):
    query, index, ordered = CASES[case]
    plan = sqlite_plan(sqlite, *sqlite.listing_statement(query))

    assert any(index in step for step in plan), plan
    assert not any(step.startswith("SCAN jobs") and "INDEX" not in step for step in plan), plan
    if ordered:
        assert not any("TEMP B-TREE" in step for step in plan), plan


def test_sqlite_walks_the_listing_order_when_an_index_would_find_too_many(sqlite, monkeypatch):
    monkeypatch.setattr(sqlite_store, "FEW", -1)  # every count is "many"
    for query in (JobFilter(id_prefix="a"), JobFilter(error="boom")):
        plan = sqlite_plan(sqlite, *sqlite.listing_statement(query))
        assert plan == ["SCAN jobs USING INDEX jobs_by_created"], plan


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("failure_groups", (50,), "SCAN jobs USING COVERING INDEX jobs_failed_for_good"),
        ("throughput", (1.0,), "SEARCH jobs USING COVERING INDEX jobs_by_finished"),
        ("error_hits", ('"boom"', 10), "SCAN jobs_errors VIRTUAL TABLE"),
        ("id_prefix_hits", ("ab", "ac", 10), "SEARCH jobs USING COVERING INDEX"),
    ],
)
def test_sqlite_console_summaries_read_their_index(sqlite, name, params, expected):
    plan = sqlite_plan(sqlite, SQLITE_SQL[name], params)
    assert any(step.startswith(expected) for step in plan), plan
    assert not any(step.startswith("SCAN jobs") and "INDEX" not in step for step in plan), plan


@pytest.fixture
def postgres(pg_database: ScratchDatabase) -> Iterator[tuple[PostgresStore, psycopg.Connection]]:
    store = PostgresStore(pg_database.url)
    store.open()
    with psycopg.connect(pg_database.url, autocommit=True) as conn:
        # Price out what a near-empty table makes cheapest (a scan): what is left shows
        # whether an index can serve the query.
        conn.execute("SET enable_seqscan = off")
        yield store, conn
    store.close()


def pg_plan(conn: psycopg.Connection, sql: str, params: tuple) -> str:
    return "\n".join(row[0] for row in conn.execute("EXPLAIN " + sql, params))


PG_INDEX = {
    "id prefix": "jobs_id_prefix",
    "idempotency key": "jobs_idempotency_key",
    "error": "jobs_last_error_trgm",
}


@pytest.mark.parametrize("case", CASES)
def test_postgres_serves_each_filter_from_an_index(postgres, case):
    store, conn = postgres
    query, index, ordered = CASES[case]
    if ordered:  # and a bitmap of the few rows there are: can the index give the order?
        conn.execute("SET enable_bitmapscan = off")
    plan = pg_plan(conn, *store.listing_statement(query))

    assert PG_INDEX.get(case, index) in plan, plan
    assert "Seq Scan" not in plan, plan
    if ordered:
        # The candidates (CTE page) come in order from the index: no sort before the
        # window; the final sort orders the page's few kept rows.
        candidates = plan.split("CTE page")[1].split("CTE kept")[0]
        assert "Sort" not in candidates, plan


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("failure_groups", (50,), "Index Only Scan using jobs_failed_for_good"),
        ("throughput", (1.0,), "Index Only Scan using jobs_by_finished"),
    ],
)
def test_postgres_console_summaries_read_their_index(postgres, name, params, expected):
    _, conn = postgres
    plan = pg_plan(conn, PG_SQL[name], params)
    assert expected in plan and "Seq Scan" not in plan, plan


ERRORS = {
    "RuntimeError: boom": "RuntimeError",
    "requests.exceptions.HTTPError: 502": "requests.exceptions.HTTPError",
    "worker process died (killed by signal 9)": None,
    "the handler's result cannot be stored: bad": None,
    "attempt 1 was interrupted: the server stopped while it ran": None,
    "_Private: x": "_Private",
    "9Lives: x": None,
    "KeyboardInterrupt": "KeyboardInterrupt",  # a class alone: an exception without text
    "Not a class": None,
}


def backfill(dialect: str) -> str:
    """The statement of migration 0004 that sets error_class on jobs failed before it."""
    (sql,) = [text for _, name, text in load_migrations(dialect) if name.startswith("0004")]
    return next(part for part in split_sql(sql) if part.startswith("UPDATE jobs"))


def failed_jobs(store) -> list[tuple[str, str]]:
    jobs = []
    with store.transaction() as tx:
        for n, error in enumerate(ERRORS):
            job = make_job(f"j{n}", status=FAILED, last_error=error, attempts=1, run_at=None)
            tx.insert(job)
            jobs.append((job.id, error))
    return jobs


def test_sqlite_migration_reads_the_class_of_earlier_failures(sqlite):
    made = failed_jobs(sqlite)
    sqlite._writer.execute(backfill("sqlite"))

    for job_id, error in made:
        assert sqlite.get(job_id).error_class == ERRORS[error], error
        assert error_class_of(error) == ERRORS[error]  # as the server reads new ones


def test_postgres_migration_reads_the_class_of_earlier_failures(postgres, pg_database):
    store, conn = postgres
    made = failed_jobs(store)
    conn.execute(backfill("postgres"))

    for job_id, error in made:
        assert store.get(job_id).error_class == ERRORS[error], error
