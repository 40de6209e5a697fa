"""The `cpu` workload: CPU-bound jobs (pure Python, about 40 ms each) on every core, and
how the API answers meanwhile.

WorkStream runs them twice, with handlers in the server's own interpreter
(`WORKER_PROCESSES=0`) and in worker processes (one per CPU), each with 8 handler slots;
Dramatiq runs them with one process per CPU x 8 threads (and with one process, for
reference). The jobs are stored (or enqueued) before the workers start; the clock runs from
the start to the last completion. While WorkStream runs, a thread asks `GET /health` every
50 ms: its p50 and p99 are the API's latency under a full CPU load.
"""

from __future__ import annotations

import http.client
import os
import statistics
import threading
import time
from pathlib import Path

from benchmarks import record
from benchmarks.common import NotRun, Result, child_env, percentile, spawn, stop, wait_until
from benchmarks.cpu_work import calibrate
from benchmarks.peers.runners import Dramatiq
from benchmarks.wsrun import Server, count_status, preload

CPUS = os.cpu_count() or 1
WS_THREADS = "WorkStream (SQLite, in-process threads)"
WS_PROCS = f"WorkStream (SQLite, {CPUS} worker processes)"
SLOTS = "8"


def _jobs(plan_quick: bool) -> int:
    return 60 if plan_quick else 200


def _wait(records: Path, count: int, proc: object, log: Path, timeout: float = 600) -> None:
    def done() -> bool:
        if proc.poll() is not None:  # type: ignore[attr-defined]
            raise NotRun(f"exited early; see {log}")
        return record.count(records) >= count

    if not wait_until(done, timeout, 0.02):
        raise NotRun(f"only {record.count(records)} of {count} done in {timeout:.0f}s")


class HealthProbe(threading.Thread):
    """GET /health every 50 ms until stopped; keeps each answer's latency."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.failures = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            started = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                conn.getresponse().read()
                conn.close()
            except OSError:
                self.failures += 1
                continue
            self.latencies.append((time.perf_counter() - started) * 1000)

    def stop(self) -> None:
        self._done.set()
        self.join(10)


def cpu_workstream(
    session: object, count: int, processes: str, rounds: int
) -> tuple[float, HealthProbe]:
    folder = session.fresh(f"ws-cpu-p{processes}")  # type: ignore[attr-defined]
    records = folder / "records"
    records.mkdir()
    preload(folder / "workstream.db", count, job_type="bench_cpu")
    server = Server(
        folder,
        records,
        WORKER_PROCESSES=processes,
        WORKER_COUNT=str(int(SLOTS) * max(1, int(processes))),
        BENCH_CPU_ROUNDS=str(rounds),
        JOB_QUEUE_CAPACITY=str(count + 10),
    )
    started = server.start()
    probe = HealthProbe(server.port)
    try:
        server.wait_ready()
        probe.start()
        _wait(records, count, server.proc, server.log)
    finally:
        try:
            probe.stop()
        finally:
            code = server.stop()
    rows = record.read(records)
    completed = count_status(server.db, "completed")
    if len(rows) != count or completed != count or code != 0:
        raise NotRun(f"{len(rows)} run, {completed} completed of {count}; exit {code}")
    return count / (max(row[2] for row in rows) - started), probe


def cpu_dramatiq(session: object, count: int, processes: int, rounds: int) -> float:
    peer = Dramatiq(processes)
    peer.check(session.folder)  # type: ignore[attr-defined]
    folder = session.fresh(f"dramatiq-cpu-p{processes}")  # type: ignore[attr-defined]
    records = folder / "records"
    records.mkdir()
    peer.reset()
    from benchmarks.peers import dramatiq_tasks

    for _ in range(count):
        dramatiq_tasks.cpu.send()
    log = folder / "worker.log"
    env = child_env(records, BENCH_CPU_ROUNDS=str(rounds), **peer.worker_env())
    started = time.time()
    proc = spawn(peer.worker_command(), env, log)
    try:
        _wait(records, count, proc, log)
    finally:
        stop(proc)
    rows = record.read(records)
    if len(rows) < count:
        raise NotRun(f"{len(rows)} runs recorded for {count} jobs")
    return count / (max(row[2] for row in rows) - started)


def run_cpu(session: object) -> None:
    plan = session.plan  # type: ignore[attr-defined]
    count = _jobs(plan.quick)
    rounds = calibrate()
    metric = f"{count} CPU-bound jobs (~40 ms)"
    session.log(f"cpu: {rounds:,} rounds per job (about 40 ms here)")  # type: ignore[attr-defined]
    systems = {
        WS_THREADS: lambda: cpu_workstream(session, count, "0", rounds),
        WS_PROCS: lambda: cpu_workstream(session, count, str(CPUS), rounds),
        f"Dramatiq (Redis, {CPUS} proc x 8 threads)": lambda: cpu_dramatiq(
            session, count, CPUS, rounds
        ),
        "Dramatiq (Redis, 1 proc x 8 threads)": lambda: cpu_dramatiq(session, count, 1, rounds),
    }
    add = session.add  # type: ignore[attr-defined]
    results = {name: add(Result("cpu", name, metric, "jobs/s")) for name in systems}
    health = {
        name: add(Result("cpu", name, "GET /health p99 during the run", "ms"))
        for name in (WS_THREADS, WS_PROCS)
    }
    p50s: dict[str, list[float]] = {WS_THREADS: [], WS_PROCS: []}
    for run in range(1, plan.runs + 1):
        for name, fn in systems.items():
            result = results[name]
            if result.not_run:
                continue
            try:
                outcome = fn()
            except (NotRun, RuntimeError) as exc:
                result.not_run = f"failed: {exc}"
                continue
            if isinstance(outcome, tuple):
                rate, probe = outcome
                if probe.latencies:
                    health[name].values.append(percentile(probe.latencies, 99))
                    p50s[name].append(statistics.median(probe.latencies))
            else:
                rate = outcome
            result.values.append(rate)
            session.log(f"cpu run {run} {name}: {rate:,.1f} jobs/s")  # type: ignore[attr-defined]
    for name, values in p50s.items():
        if values:
            health[name].note = f"p50 {statistics.median(values):.1f} ms"
