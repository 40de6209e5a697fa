"""The store contract suite: every test that takes `store` runs once per store.

To add a store, add its name to STORE_KINDS and a branch to `new_store`; the tests
themselves stay as they are. PostgreSQL runs against the machine's server (tests/pg.py):
one database for the whole session, emptied before each test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import ScratchDatabase, scratch_database
from workstream.jobs.model import Job, JobStatus
from workstream.store.base import Store
from workstream.store.memory import MemoryStore
from workstream.store.postgres import PostgresStore
from workstream.store.sqlite import SqliteStore

STORE_KINDS = ("memory", "sqlite", "postgres")

NOW = 1_700_000_000.0
OWNER = "node-a"
LEASE = 30.0


def new_store(kind: str, tmp_path: Path, pg: ScratchDatabase | None = None) -> Store:
    """A fresh, empty, not yet opened store of `kind` (PostgreSQL: on the database `pg`,
    which the caller empties)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SqliteStore(tmp_path / "contract.db", busy_timeout=2.0)
    if kind == "postgres":
        assert pg is not None, "a PostgreSQL store needs the session's database"
        return PostgresStore(pg.url, statement_timeout=5.0, lock_timeout=2.0)
    raise AssertionError(f"no fixture branch for store kind {kind!r}")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[ScratchDatabase]:
    """One PostgreSQL database for the whole test session, dropped at its end."""
    with scratch_database("ws_contract") as db:
        yield db


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    pg = request.getfixturevalue("pg_database") if store_kind == "postgres" else None
    opened = new_store(store_kind, tmp_path, pg)
    opened.open()  # migrates a fresh database
    if pg is not None:
        pg.reset()
    try:
        yield opened
    finally:
        opened.close()


class Jobs:
    """Builds consistent jobs in any status and stores them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._numbers = itertools.count(1)

    def new(self, status: JobStatus = JobStatus.PENDING, **changes: Any) -> Job:
        number = next(self._numbers)
        job = Job(
            id=f"00000000-0000-4000-8000-{number:012d}",
            type="echo",
            payload={"n": number},
            status=status,
            max_retries=3,
            created_at=NOW - 1000 + number,
            updated_at=NOW - 1000 + number,
            run_at=NOW - 100,
        )
        shape: dict[str, Any] = {
            JobStatus.PENDING: {},
            JobStatus.PROCESSING: {
                "attempts": 1,
                "owner": OWNER,
                "lease_expires_at": NOW + LEASE,
                "started_at": NOW - 10,
            },
            JobStatus.COMPLETED: {
                "attempts": 1,
                "run_at": None,
                "result": {"ok": number},
                "started_at": NOW - 20,
                "finished_at": NOW - 10,
            },
            JobStatus.FAILED: {"attempts": 1, "last_error": "boom", "run_at": NOW - 1},
            JobStatus.CANCELLED: {"run_at": None, "finished_at": NOW - 10},
        }[status]
        return job.replace(**shape).replace(**changes)

    def add(self, status: JobStatus = JobStatus.PENDING, **changes: Any) -> Job:
        """A new job, inserted in a transaction of its own."""
        job = self.new(status, **changes)
        self.insert(job)
        return job

    def insert(self, *jobs: Job) -> None:
        with self.store.transaction() as tx:
            for job in jobs:
                tx.insert(job)


@pytest.fixture
def jobs(store: Store) -> Jobs:
    return Jobs(store)
