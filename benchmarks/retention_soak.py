"""Retention soak, on a real `workstream serve` over SQLite. Two phases:

- `soak`: RETAIN_COMPLETED=1m, fed N jobs as fast as it takes them; the database file's
  size is sampled every 5 s, and a probe submits one job every 100 ms (POST /jobs latency)
  before and while retention deletes, in batches of 500.
- `backlog`: N jobs that completed 2 minutes ago are stored in the file before the server
  starts; the server deletes them all while the probe measures POST /jobs: the write pause
  a large deletion causes, with nothing else running.

    .venv/bin/python -m benchmarks.retention_soak --jobs 200000 --out /tmp/soak.json

Not part of the default test run (it takes minutes). Prints the file sizes over time, the
probe's latency percentiles, and the server's own `jobs_deleted` figures (the longest
batch round trip, and the longest time a batch's deletion held the writer).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import percentile
from benchmarks.wsrun import Server
from workstream.store.sqlite import COLUMNS, SqliteStore

BATCH = 100  # jobs per POST /jobs/batch
SAMPLE_EVERY = 5.0


def db_bytes(db: Path) -> tuple[int, int]:
    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    return size(db), size(Path(str(db) + "-wal"))


def preload_finished(path: Path, count: int, ended: float) -> None:
    """Store `count` jobs that completed at `ended`, as the server would have left them."""
    store = SqliteStore(path)
    store.open()  # creates and migrates the schema (incremental auto-vacuum)
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    sql = f"INSERT INTO jobs ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    conn.execute("BEGIN IMMEDIATE")
    for start in range(0, count, 50_000):
        rows = [
            (str(uuid.uuid4()), "echo", f'{{"n": {n}}}', "completed", 1, 0, 3, None, "null",
             ended - 1, ended, ended - 0.5, ended, None, None, None, None, None)
            for n in range(start, min(count, start + 50_000))
        ]  # fmt: skip
        conn.executemany(sql, rows)
    conn.execute("COMMIT")
    conn.close()


def backlog(jobs: int, folder: Path) -> dict[str, Any]:
    """Delete `jobs` finished jobs while a probe submits: the pause a big deletion causes."""
    db = folder / "workstream.db"
    preload_finished(db, jobs, time.time() - 120)
    before = db_bytes(db)[0]
    server = Server(
        folder,
        record_dir=None,  # type: ignore[arg-type]
        RETAIN_COMPLETED="1m",
        SWEEPER_INTERVAL="1s",
        WORKER_PROCESSES="0",
        LOG_LEVEL="info",
    )
    server.start()
    server.wait_ready()
    began = time.time()
    probes: list[float] = []
    sizes: list[tuple[float, float]] = []
    deadline = began + 600

    def left() -> int:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return int(
                conn.execute("SELECT count(*) FROM jobs WHERE status = 'completed'").fetchone()[0]
            )
        finally:
            conn.close()

    next_sample = began
    while time.time() < deadline:
        started = time.perf_counter()
        server.request("POST", "/jobs", {"type": "echo", "payload": {}})
        probes.append(time.perf_counter() - started)
        if time.time() >= next_sample:
            sizes.append((round(time.time() - began, 1), round(db_bytes(db)[0] / 2**20, 2)))
            next_sample += 2.0
            if left() <= len(probes):  # only the probe's own jobs are left
                break
        time.sleep(0.02)
    took = time.time() - began
    server.stop()
    deleted = deleted_lines(server)
    return {
        "jobs": jobs,
        "db_mb_before": round(before / 2**20, 2),
        "db_mb_after": round(db_bytes(db)[0] / 2**20, 2),
        "sizes": sizes,
        "seconds": round(took, 1),
        "probe": summary(probes),
        "deleted": sum(int(d.get("count", 0)) for d in deleted),
        "longest_batch_ms": max((float(d.get("longest_batch_ms", 0)) for d in deleted), default=0),
        "longest_delete_ms": max(
            (float(d.get("longest_delete_ms", 0)) for d in deleted), default=0
        ),
    }


def deleted_lines(server: Server) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in server.log.read_text(errors="replace").splitlines()
        if '"jobs_deleted"' in line
    ]


def run(jobs: int, retain: str, settle: float, folder: Path) -> dict[str, Any]:
    server = Server(
        folder,
        record_dir=None,  # type: ignore[arg-type]
        RETAIN_COMPLETED=retain,
        RETAIN_FAILED=retain,
        SWEEPER_INTERVAL="1s",
        JOB_QUEUE_CAPACITY="20000",
        WORKER_PROCESSES="0",
        WORKER_COUNT="8",
        LOG_LEVEL="info",
    )
    server.start()
    server.wait_ready()
    began = time.time()
    stop = threading.Event()
    submitted = [0]
    refused = [0]
    probes: list[tuple[float, float, int]] = []  # (at, seconds, status)
    samples: list[dict[str, Any]] = []

    def feed() -> None:
        body = {"jobs": [{"type": "echo", "payload": {"n": n}} for n in range(BATCH)]}
        while submitted[0] < jobs and not stop.is_set():
            status, _ = server.request("POST", "/jobs/batch", body)
            if status == 201:
                submitted[0] += BATCH
            else:
                refused[0] += 1
                time.sleep(0.05)

    def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            status, _ = server.request("POST", "/jobs", {"type": "echo", "payload": {}})
            probes.append((time.time() - began, time.perf_counter() - started, status))
            time.sleep(0.1)

    def sample() -> None:
        while not stop.is_set():
            main, wal = db_bytes(server.db)
            status, raw = stats_of(server)
            stats: dict[str, Any] = {}
            if status == 200:
                try:
                    stats = json.loads(raw)
                except ValueError:
                    stats = {}
            samples.append(
                {
                    "t": round(time.time() - began, 1),
                    "db_mb": round(main / 2**20, 2),
                    "wal_mb": round(wal / 2**20, 2),
                    "submitted": submitted[0],
                    "completed": stats.get("jobs_completed"),
                }
            )
            stop.wait(SAMPLE_EVERY)

    threads = [threading.Thread(target=f, daemon=True) for f in (feed, probe, sample)]
    for thread in threads:
        thread.start()
    threads[0].join()
    fed_at = time.time() - began
    stop.wait(settle)  # retention catches up with the last jobs
    stop.set()
    for thread in threads[1:]:
        thread.join(30)
    server.stop()
    deleted = deleted_lines(server)
    cutoff = float(retain_seconds(retain))
    before = [s for at, s, _ in probes if at <= cutoff]
    during = [s for at, s, _ in probes if deleted and at > cutoff]
    return {
        "jobs": submitted[0],
        "fed_in_seconds": round(fed_at, 1),
        "refused_batches": refused[0],
        "samples": samples,
        "probe": summary([s for _, s, _ in probes]),
        "probe_before_deleting": summary(before),
        "probe_while_deleting": summary(during),
        "probe_statuses": sorted({status for _, _, status in probes}),
        "deletion_runs": len(deleted),
        "deleted": sum(int(d.get("count", 0)) for d in deleted),
        "longest_batch_ms": max((float(d.get("longest_batch_ms", 0)) for d in deleted), default=0),
        "longest_delete_ms": max(
            (float(d.get("longest_delete_ms", 0)) for d in deleted), default=0
        ),
    }


def stats_of(server: Server) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Accept": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def retain_seconds(retain: str) -> float:
    from workstream.converters import retention

    return retention(retain)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--retain", default="1m")
    parser.add_argument("--settle", type=float, default=90.0, help="seconds after feeding")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--phase", choices=["soak", "backlog", "both"], default="both")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.phase in ("backlog", "both"):
        with tempfile.TemporaryDirectory(prefix="ws_backlog_") as folder:
            results["backlog"] = backlog(args.jobs, Path(folder))
        print(json.dumps(results["backlog"], indent=2))
    if args.phase == "backlog":
        if args.out is not None:
            args.out.write_text(json.dumps(results, indent=2))
        return
    with tempfile.TemporaryDirectory(prefix="ws_soak_") as folder:
        result = run(args.jobs, args.retain, args.settle, Path(folder))
    results["soak"] = result
    print(f"{'t (s)':>7} {'db MB':>7} {'wal MB':>7} {'submitted':>10} {'completed':>10}")
    for s in result["samples"]:
        print(
            f"{s['t']:>7} {s['db_mb']:>7} {s['wal_mb']:>7} {s['submitted']:>10} "
            f"{s['completed'] if s['completed'] is not None else '-':>10}"
        )
    shown = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(shown, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
