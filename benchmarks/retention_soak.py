"""Retention soak: a real `workstream serve` on SQLite, RETAIN_COMPLETED=1m, fed N jobs as
fast as it takes them; the database file's size is sampled over time, and a probe submits
one job every 100 ms to measure the write pauses (POST /jobs latency) while retention
deletes in batches of 500.

    .venv/bin/python -m benchmarks.retention_soak --jobs 200000 --out /tmp/soak.json

Not part of the default test run (it takes minutes). Prints a table of file sizes over
time and the probe's latency percentiles, overall and while deletions ran, and the
server's own `jobs_deleted` lines (the longest batch round trip).
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import percentile
from benchmarks.wsrun import Server

BATCH = 100  # jobs per POST /jobs/batch
SAMPLE_EVERY = 5.0


def db_bytes(db: Path) -> tuple[int, int]:
    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    return size(db), size(Path(str(db) + "-wal"))


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
    deleted = [
        json.loads(line)
        for line in server.log.read_text(errors="replace").splitlines()
        if '"jobs_deleted"' in line
    ]
    during = [s for at, s, _ in probes if deleted and at > float(retain_seconds(retain))]
    return {
        "jobs": submitted[0],
        "fed_in_seconds": round(fed_at, 1),
        "refused_batches": refused[0],
        "samples": samples,
        "probe": summary([s for _, s, _ in probes]),
        "probe_while_deleting": summary(during),
        "probe_statuses": sorted({status for _, _, status in probes}),
        "deletion_runs": len(deleted),
        "deleted": sum(int(d.get("count", 0)) for d in deleted),
        "longest_batch_ms": max((float(d.get("longest_batch_ms", 0)) for d in deleted), default=0),
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ws_soak_") as folder:
        result = run(args.jobs, args.retain, args.settle, Path(folder))
    print(f"{'t (s)':>7} {'db MB':>7} {'wal MB':>7} {'submitted':>10} {'completed':>10}")
    for s in result["samples"]:
        print(
            f"{s['t']:>7} {s['db_mb']:>7} {s['wal_mb']:>7} {s['submitted']:>10} "
            f"{s['completed'] if s['completed'] is not None else '-':>10}"
        )
    shown = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(shown, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
