"""Drain rate of the engine alone: N no-op jobs stored first, then the engine started.

    python -m benchmarks.engine_drain [--jobs 20000] [--runs 3] [--workers 10] [--logs]

Durable settings (SQLite WAL, synchronous=FULL), default WORKER_COUNT. The clock runs from
`System.start()` (actors starting) to the last completion event; the count is verified in
the database. Prints each run and the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from workstream.config import Settings
from workstream.handlers import HandlerTable
from workstream.handlers.builtin import HANDLERS
from workstream.jobs.events import JOB_COMPLETED
from workstream.jobs.model import Job, JobStatus
from workstream.logs import configure_logging
from workstream.store.sqlite import SqliteStore
from workstream.system import System


def preload(path: Path, count: int) -> None:
    store = SqliteStore(path)
    store.open()
    now = time.time()
    for start in range(0, count, 1000):
        with store.transaction() as tx:
            for _ in range(start, min(count, start + 1000)):
                tx.insert(
                    Job(
                        id=str(uuid.uuid4()),
                        type="echo",
                        payload={},
                        status=JobStatus.PENDING,
                        max_retries=3,
                        created_at=now,
                        updated_at=now,
                        run_at=now,
                    )
                )
    store.close()


def one_run(count: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        preload(path, count)
        engine = System(
            Settings(worker_count=workers, job_queue_capacity=count),
            store=SqliteStore(path),
            handlers=HandlerTable(HANDLERS),
            serve_http=False,
        )
        done = threading.Event()
        seen = [0]

        def on_completed(events: object) -> None:
            seen[0] += len(events)  # type: ignore[arg-type]
            if seen[0] >= count:
                done.set()

        engine.events.subscribe(on_completed, kinds=[JOB_COMPLETED])
        started = time.perf_counter()
        engine.start()
        if not done.wait(600):
            raise SystemExit(f"only {seen[0]} of {count} jobs completed")
        elapsed = time.perf_counter() - started
        completed = engine.jobs.count_jobs().of(JobStatus.COMPLETED)
        engine.stop()
        if completed != count:
            raise SystemExit(f"database says {completed} completed, expected {count}")
        return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument(
        "--logs", action="store_true", help="with JSON logs at info level (written to memory)"
    )
    args = parser.parse_args()
    if args.logs:
        configure_logging("info", "json", stream=open(os.devnull, "w"))  # noqa: SIM115
    rates = []
    for run in range(1, args.runs + 1):
        rate = one_run(args.jobs, args.workers)
        rates.append(rate)
        print(f"run {run}: {args.jobs} jobs, {rate:,.0f} jobs/s", flush=True)
    print(
        f"median {statistics.median(rates):,.0f} jobs/s "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}; workers={args.workers}, "
        f"logs={'json/info' if args.logs else 'off'})"
    )


if __name__ == "__main__":
    main()
