"""Finding jobs with 1,000,000 stored: `GET /jobs` with each filter, and the console's
overview data, on SQLite and PostgreSQL (issue 14; target: each answer within 100 ms).

    python -m benchmarks.finding [--store sqlite|postgres|both] [--jobs 1000000] [--runs 7]

Seeds the jobs straight into a fresh store (SQLite: executemany in large transactions;
PostgreSQL: COPY), with the migrations' indexes in place, then times each request through
the real Falcon application (`falcon.testing`, no sockets) over a service that reads the
store as the server's gateway does. Reports the median and the slowest of the runs, after
one warm-up run. PostgreSQL gets VACUUM ANALYZE after seeding (autovacuum does it on a
server that has run a while: planner statistics, and the visibility map index-only scans
need); SQLite gets nothing the server does not do itself.

The seeded queue: jobs created over the last 30 days in submission order, the newest
20,000 within the last hour; 20 job types; 60% completed, 25% failed for good, 10%
pending, 5% cancelled; each failed job's error is one of 40 messages with a number in it
(RuntimeError, TimeoutError, ...), and a few (`RARE_ERROR`) carry an unusual text; one
job in ten has an Idempotency-Key.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import falcon.testing

from workstream.http.app import create_app
from workstream.http.console.data import TYPE_COUNT_CAP
from workstream.jobs.limits import PAGE_BYTES
from workstream.jobs.listing import (
    FailureGroup,
    JobFilter,
    JobPage,
    MinuteCount,
    minute_window,
    per_minute,
)
from workstream.jobs.model import Job, JobStatus
from workstream.units import format_time

TARGET_MS = 100.0
DAY = 86_400.0
TYPES = [f"type_{n:02d}" for n in range(20)]
CLASSES = ["RuntimeError", "TimeoutError", "ValueError", "KeyError", "ConnectionError"]
MESSAGES = [
    "disk full on /var/data",
    "upstream answered 502 Bad Gateway",
    "connection reset by peer",
    "the handler ran longer than its timeout of 30s",
    "invalid image header",
    "no such customer",
    "rate limited by provider",
    "certificate verify failed",
]
RARE_ERROR = "quarantined mailbox zebra"  # in 50 jobs' errors
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


class StoreReads:
    """The read side of the JobService, as `actors.gateway.Gateway` implements it, over a
    store: enough for `create_app` and the console's data."""

    def __init__(self, store: Any, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def list(self, query: JobFilter) -> JobPage:
        return self.store.list(replace(query, max_bytes=PAGE_BYTES))

    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def attempts(self, job_id: str) -> list[Any]:
        return self.store.attempts(job_id)

    def count(self, query: JobFilter, cap: int) -> int:
        return self.store.count(query, cap)

    def failure_groups(self, limit: int = 50) -> list[FailureGroup]:
        return self.store.failure_groups(limit)

    def throughput(self, minutes: int = 60) -> list[MinuteCount]:
        start = minute_window(self.clock(), minutes)
        return per_minute(self.store.finished_per_minute(start), start, minutes)

    def job_types(self) -> list[str]:
        return list(TYPES)

    def types(self, count_cap: int | None = None) -> Any:
        """What `Gateway.types` reads: every type's counts by status (a scan), or with
        `count_cap` the capped, index-backed counts the console asks for."""
        if count_cap is None:
            return self.store.counts_by_type()
        return {
            name: {
                status.value: self.store.count(JobFilter(status=status, job_type=name), count_cap)
                for status in (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.FAILED)
            }
            for name in TYPES
        }

    def cancel(self, job_id: str) -> Job:
        raise NotImplementedError("reads only")

    retry = pause_type = resume_type = cancel


def generate(count: int, now: float, seed: int = 14) -> Iterator[Job]:
    rng = random.Random(seed)
    recent = min(20_000, count // 2)
    old = count - recent
    for n in range(count):
        if n < old:
            created = now - 30 * DAY + (30 * DAY - 3600) * n / max(1, old)
        else:
            created = now - 3600 + 3590 * (n - old) / max(1, recent)
        roll = rng.random()
        job_type = TYPES[rng.randrange(len(TYPES))]
        key = f"order-{n}" if n % 10 == 0 else None
        base = Job(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            type=job_type,
            payload={"n": n, "path": f"/images/{n}.png"},
            status=JobStatus.PENDING,
            max_retries=3,
            created_at=created,
            updated_at=created,
            run_at=created,
            idempotency_key=key,
        )
        if roll < 0.60:
            yield base.replace(
                status=JobStatus.COMPLETED,
                attempts=1,
                result={"ok": n},
                started_at=created + 0.5,
                finished_at=created + 1.0,
                updated_at=created + 1.0,
                run_at=None,
            )
        elif roll < 0.85:
            error_class = CLASSES[n % len(CLASSES)]
            text = RARE_ERROR if n % (count // 50 or 1) == 7 else MESSAGES[n % len(MESSAGES)]
            yield base.replace(
                status=JobStatus.FAILED,
                attempts=4,
                last_error=f"{error_class}: {text} (job {n})",
                error_class=error_class,
                started_at=created + 5,
                finished_at=created + 6,
                updated_at=created + 6,
                run_at=None,
            )
        elif roll < 0.95:
            yield base
        else:
            yield base.replace(status=JobStatus.CANCELLED, run_at=None, finished_at=created + 2)


def chunks(items: Iterator[Job], size: int) -> Iterator[list[Job]]:
    chunk: list[Job] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def seed_sqlite(store: Any, jobs: Iterator[Job]) -> None:
    from workstream.store.sqlite.codec import insert_params
    from workstream.store.sqlite.queries import SQL

    conn = store._writer
    for chunk in chunks(jobs, 50_000):
        conn.execute("BEGIN")
        conn.executemany(SQL["insert"], [insert_params(job) for job in chunk])
        conn.execute("COMMIT")


def seed_postgres(store: Any, url: str, jobs: Iterator[Job]) -> None:
    import psycopg

    from workstream.store.postgres.codec import insert_params
    from workstream.store.postgres.queries import SQL

    columns = SQL["columns"].replace("\n", " ")
    with psycopg.connect(url, autocommit=True) as conn:
        for chunk in chunks(jobs, 50_000):
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f"COPY jobs ({columns}) FROM STDIN") as copy,
            ):
                for job in chunk:
                    copy.write_row(insert_params(job))
        # What autovacuum does on a server that has run a while: statistics for the
        # planner, and the visibility map that lets index-only scans skip the table.
        conn.execute("VACUUM ANALYZE jobs")


def requests(now: float, sample: Job, cursor: str, count: int) -> list[tuple[str, dict[str, str]]]:
    hour_ago = format_time(now - 3600) or ""
    two_weeks = format_time(now - 14 * DAY) or ""
    two_weeks_plus = format_time(now - 14 * DAY + 3600) or ""
    return [
        ("newest first (no filter)", {}),
        ("oldest first", {"order": "oldest"}),
        ("next page (cursor)", {"cursor": cursor}),
        ("status=failed", {"status": "failed"}),
        ("status=pending", {"status": "pending"}),
        ("type", {"type": "type_07"}),
        ("status + type", {"status": "failed", "type": "type_03"}),
        ("created in the last hour", {"created_after": hour_ago}),
        ("an hour two weeks ago", {"created_after": two_weeks, "created_before": two_weeks_plus}),
        ("failed, created in the last hour", {"status": "failed", "created_after": hour_ago}),
        ("id_prefix (8 characters)", {"id_prefix": sample.id[:8]}),
        ("id_prefix (1 character)", {"id_prefix": sample.id[:1]}),
        ("idempotency_key", {"idempotency_key": f"order-{count // 20 * 10}"}),  # the middle one
        ("error, common text", {"error": "disk full"}),
        ("error, rare text", {"error": RARE_ERROR}),
        ("error, no match", {"error": "nothing matches this"}),
        ("error + status=failed", {"error": "502 bad gateway", "status": "failed"}),
    ]


def timed(call: Callable[[], Any], runs: int) -> tuple[float, float]:
    call()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def measure(store: Any, runs: int, now: float, count: int) -> list[tuple[str, float, float, str]]:
    service = StoreReads(store, clock=lambda: now)
    app = create_app(service, api_token="bench")  # type: ignore[arg-type]
    client = falcon.testing.TestClient(app, headers={"Authorization": "Bearer bench"})
    first = client.simulate_get("/jobs", query_string="limit=100")
    assert first.status_code == 200, first.text
    link = first.headers["link"]
    cursor = link.split("cursor=")[1].split(">")[0]
    sample = store.list(JobFilter(limit=1, order="oldest", after=(now - 20 * DAY, 0))).jobs[0]
    out = []
    for name, params in requests(now, sample, cursor, count):
        query = urlencode({**params, "limit": "100"})

        def get(query: str = query) -> None:
            result = client.simulate_get("/jobs", query_string=query)
            assert result.status_code == 200, result.text

        shown = len(client.simulate_get("/jobs", query_string=query).json)
        median, worst = timed(get, runs)
        out.append((f"GET /jobs {name}", median, worst, f"{shown} jobs"))
    cap = 10_000
    overview: list[tuple[str, Callable[[], Any]]] = [
        ("counts by status (store.counts, uncapped)", lambda: store.counts(now)),
        (
            f"counts by status, capped at {cap:,}",
            lambda: [store.count(JobFilter(status=s), cap) for s in JobStatus],
        ),
        (
            f"counts by type, capped at {cap:,}",
            lambda: [store.count(JobFilter(job_type=t), cap) for t in TYPES],
        ),
        ("counts by type and status (GET /types: a scan)", lambda: store.counts_by_type()),
        (
            "console overview's data (capped counts, types, throughput, oldest due)",
            lambda: (
                [store.count(JobFilter(status=s), cap) for s in JobStatus],
                service.types(TYPE_COUNT_CAP),
                service.throughput(60),
                store.list(JobFilter(status=JobStatus.PENDING, order="oldest", limit=50)),
            ),
        ),
        ("failure groups", lambda: service.failure_groups(50)),
        ("throughput, 60 minutes", lambda: service.throughput(60)),
        (
            "count of a filter (error text), capped",
            lambda: store.count(JobFilter(error="disk full"), cap),
        ),
        ("a job's attempts", lambda: service.attempts(sample.id)),
    ]
    for name, call in overview:
        median, worst = timed(call, runs)
        out.append((name, median, worst, ""))
    return out


def run(kind: str, count: int, runs: int) -> list[tuple[str, float, float, str]]:
    now = time.time()
    jobs = generate(count, now)
    if kind == "sqlite":
        from workstream.store.sqlite import SqliteStore

        folder = tempfile.mkdtemp(prefix="ws-finding-")
        store = SqliteStore(Path(folder) / "bench.db")
        store.open()
        started = time.perf_counter()
        seed_sqlite(store, jobs)
        print(f"sqlite: seeded {count:,} jobs in {time.perf_counter() - started:.0f}s", flush=True)
        try:
            return measure(store, runs, now, count)
        finally:
            store.close()
            shutil.rmtree(folder, ignore_errors=True)
    import psycopg

    from workstream.store.postgres import PostgresStore

    name = f"ws_finding_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    store = PostgresStore(url, statement_timeout=30.0)
    try:
        store.open()
        started = time.perf_counter()
        seed_postgres(store, url, jobs)
        print(
            f"postgres: seeded {count:,} jobs in {time.perf_counter() - started:.0f}s", flush=True
        )
        return measure(store, runs, now, count)
    finally:
        store.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def report(kind: str, count: int, rows: list[tuple[str, float, float, str]]) -> str:
    lines = [
        f"\n{kind}, {count:,} jobs: median and slowest of the runs (target {TARGET_MS:g} ms)",
        "",
        f"| {'request':<58} | median ms | slowest ms | answer |",
        f"|{'-' * 60}|-----------|------------|--------|",
    ]
    for name, median, worst, note in rows:
        flag = "" if median <= TARGET_MS else "  OVER"
        lines.append(f"| {name:<58} | {median:9.1f} | {worst:10.1f} | {note}{flag} |")
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], count: int, path: Path, command: str) -> None:
    """The figures as docs/finding-jobs-benchmark.md has them."""
    import platform

    lines = [
        "# Finding jobs with 1,000,000 stored",
        "",
        "Generated by `benchmarks/finding.py` (see its docstring for the seeded queue and the",
        "method); rerun the command below rather than editing the figures.",
        "",
        f"- **Command**: `{command}`",
        f"- **Date**: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- **Machine**: {platform.machine()}, {os.cpu_count()} cores (shared with other work)",
        f"- **Target**: each answer within {TARGET_MS:g} ms",
        "",
        '"counts by status (store.counts, uncapped)" is the query behind the gauges of',
        "/metrics (one GROUP BY over every job), shown for comparison: the console's overview",
        "counts with a cap (`JobService.count(filter, cap)`, the rows below it), which reads",
        "no more than `cap` index entries per count.",
    ]
    for kind, rows in results.items():
        lines.append(report(kind, count, [tuple(row) for row in rows]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finding")
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--markdown", type=Path, default=None, help="and as a Markdown report")
    args = parser.parse_args(argv)
    kinds = ("sqlite", "postgres") if args.store == "both" else (args.store,)
    results = {}
    for kind in kinds:
        rows = run(kind, args.jobs, args.runs)
        results[kind] = rows
        print(report(kind, args.jobs, rows), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    if args.markdown is not None:
        command = "python -m benchmarks.finding " + " ".join(argv or sys.argv[1:])
        write_markdown(results, args.jobs, args.markdown, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
