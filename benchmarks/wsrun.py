"""WorkStream as its users run it: a real `workstream serve` process on a SQLite file.

Jobs for the drain and backlog workloads are stored into the file before the server starts,
with WorkStream's own schema (the store migrates the file) and one multi-row transaction:
the rows are exactly what `POST /jobs` stores (status pending, due now, attempts 0). Logs
are JSON at info level (the defaults), written to a file as a collector would take them.
"""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

from benchmarks.common import PYTHON, child_env, free_port, spawn, stop, wait_until
from benchmarks.peers import SESSION
from workstream.jobs.model import Job, JobStatus
from workstream.store.sqlite import SqliteStore
from workstream.store.sqlite.codec import insert_params
from workstream.store.sqlite.queries import SQL

JOB_TYPE = "bench_noop"


def preload(path: Path, count: int, job_type: str = JOB_TYPE) -> float:
    """Store `count` pending, due jobs; returns seconds taken."""
    started = time.perf_counter()
    store = SqliteStore(path)
    store.open()  # creates and migrates the schema
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    now = time.time()
    payload: dict[str, object] = {}
    # The store's own statement and row codec: every column, whatever columns there are.
    sql = SQL["insert"]
    conn.execute("BEGIN IMMEDIATE")
    for start in range(0, count, 50_000):
        rows = [
            insert_params(
                Job(
                    id=str(uuid.uuid4()),
                    type=job_type,
                    payload=payload,
                    status=JobStatus.PENDING,
                    max_retries=3,
                    created_at=now,
                    updated_at=now,
                    run_at=now,
                )
            )
            for _ in range(start, min(count, start + 50_000))
        ]
        conn.executemany(sql, rows)
    conn.execute("COMMIT")
    conn.close()  # the last connection checkpoints the WAL into the file
    return time.perf_counter() - started


def count_status(path: Path, status: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0]
    finally:
        conn.close()


class Server:
    """One `workstream serve` process."""

    def __init__(
        self, folder: Path, record_dir: Path, name: str = "workstream", **settings: str
    ) -> None:
        self.folder = folder
        self.db = folder / "workstream.db"
        self.log = folder / f"{name}.log"
        self.port = free_port()
        env = {
            "DATABASE_URL": f"sqlite:///{self.db}",
            "PORT": str(self.port),
            "JOB_HANDLERS": "benchmarks.ws_handlers",
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "json",
            "OUTBOX_DIR": str(folder / "outbox"),
        }
        env.update(settings)
        self.env = child_env(record_dir, **env)
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Spawn the server; returns the wall-clock time just before the spawn."""
        started = time.time()
        self.proc = spawn([PYTHON, "-m", "workstream", "serve"], self.env, self.log)
        return started

    def wait_ready(self, timeout: float = 60) -> None:
        if not wait_until(self._healthy, timeout, 0.05):
            raise RuntimeError(f"workstream serve did not become healthy; see {self.log}")

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"workstream serve exited with {self.proc.returncode}")
        try:
            status, _ = self.request("GET", "/health")
            return status == 200
        except OSError:
            return False

    def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop(self.proc, grace=40)
        return self.proc.returncode


PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = f"bench_workstream_{SESSION}"


def pg_url() -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{PG_DB}"


def pg_create() -> None:
    """A fresh database for WorkStream's PostgreSQL store (NotRun if unreachable)."""
    from benchmarks.common import NotRun

    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DB}")
    except Exception as exc:
        raise NotRun(f"PostgreSQL unreachable or refused ({type(exc).__name__})") from None


def pg_drop() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def pg_preload(count: int, job_type: str = JOB_TYPE) -> None:
    """Empty the jobs table (migrating it first) and store `count` pending, due jobs."""
    import psycopg

    from workstream.store import store_from_url

    store = store_from_url(pg_url())
    store.open()  # migrates
    store.close()
    now = time.time()
    with psycopg.connect(pg_url()) as conn:
        conn.execute("TRUNCATE jobs")
        with conn.cursor().copy(
            "COPY jobs (id, type, payload, status, attempts, retry_base, max_retries, "
            "created_at, updated_at, run_at) FROM STDIN"
        ) as copy:
            for _ in range(count):
                copy.write_row((str(uuid.uuid4()), job_type, "{}", "pending", 0, 0, 3,
                                now, now, now))  # fmt: skip
        conn.commit()
    with psycopg.connect(pg_url(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE jobs")


def pg_count(status: str) -> int:
    import psycopg

    with psycopg.connect(pg_url()) as conn:
        return conn.execute("SELECT count(*) FROM jobs WHERE status = %s", (status,)).fetchone()[0]
