"""What open dashboards cost the queue: the drain rate with ten consoles polling, against
the drain alone, in the same session (issue 14: at most 5% slower).

    python -m benchmarks.console_polling [--jobs 60000] [--runs 5] [--pollers 10]

Each run stores `--jobs` no-op jobs into a fresh SQLite file, starts `workstream serve` on
it (the default settings: worker processes, the console on, no token), and measures the
drain rate from the first job run to the last (the records of `benchmarks.record`, so
that start-up is not counted). In the "polling" runs, `--pollers` clients each fetch the
overview fragment (`GET /ui/fragments/overview`, what an open console tab polls) every
3 s from the server's start until the drain ends, staggered over the first 3 s, as that
many open browser tabs would. Runs alternate between the two variants, so that noise on a
shared machine hits both alike; the medians are compared. The server's CPU time (with its
worker processes) per 1,000 jobs is reported beside the rate: on a machine other work
shares, it moves less than the wall-clock rate.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import record
from benchmarks.common import NotRun, cpu_seconds, percentile
from benchmarks.workloads import _wait_records
from benchmarks.wsrun import Server, count_status, preload

POLL_INTERVAL = 3.0
FRAGMENT = "/ui/fragments/overview"


class Poller(threading.Thread):
    """One open console tab: GET the overview fragment every POLL_INTERVAL seconds."""

    def __init__(self, port: int, offset: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.offset = offset
        self.stop_event = stop
        self.latencies: list[float] = []
        self.errors = 0

    def run(self) -> None:
        if self.stop_event.wait(self.offset):
            return
        while not self.stop_event.is_set():
            began = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", FRAGMENT, headers={"Host": "127.0.0.1", "HX-Request": "true"})
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    self.latencies.append(time.perf_counter() - began)
                else:
                    self.errors += 1
            except OSError:
                self.errors += 1  # the port is not open yet, at the very start
            self.stop_event.wait(max(0.0, POLL_INTERVAL - (time.perf_counter() - began)))


def server_cpu(pid: int) -> float:
    """CPU seconds the server and its worker processes have used so far."""
    return sum(cpu_seconds(pid).values())


def one_run(
    folder: Path, jobs: int, pollers: int, timeout: float
) -> tuple[float, float, list[float]]:
    """(drain rate in jobs/s, server CPU seconds per 1,000 jobs, poll latencies)."""
    records = folder / "records"
    records.mkdir(parents=True)
    preload(folder / "workstream.db", jobs)
    server = Server(folder, records)
    stop = threading.Event()
    server.start()
    threads = [
        Poller(server.port, POLL_INTERVAL * i / max(pollers, 1), stop) for i in range(pollers)
    ]
    for thread in threads:
        thread.start()
    try:
        _wait_records(records, jobs, [server.proc], timeout, server.log)
        cpu = server_cpu(server.pid)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        code = server.stop()
    rows = record.read(records)
    completed = count_status(server.db, "completed")
    if len(rows) != jobs or completed != jobs:
        raise NotRun(f"count mismatch: {len(rows)} run, {completed} completed of {jobs}")
    if code != 0:
        raise NotRun(f"workstream serve exited with {code}")
    first = min(row[1] for row in rows)
    last = max(row[2] for row in rows)
    latencies = [latency for thread in threads for latency in thread.latencies]
    return jobs / (last - first), cpu / jobs * 1000, latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console_polling")
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pollers", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    rates: dict[str, list[float]] = {"alone": [], "polling": []}
    cpus: dict[str, list[float]] = {"alone": [], "polling": []}
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ws-console-bench-") as scratch:
        for run in range(1, args.runs + 1):
            for variant, pollers in (("alone", 0), ("polling", args.pollers)):
                folder = Path(scratch) / f"{variant}-{run}"
                rate, cpu, polled = one_run(folder, args.jobs, pollers, args.timeout)
                rates[variant].append(rate)
                cpus[variant].append(cpu)
                latencies.extend(polled)
                extra = f", {len(polled)} polls" if pollers else ""
                print(
                    f"run {run} {variant:8}: {rate:,.0f} jobs/s, server CPU {cpu * 1000:,.0f} ms "
                    f"per 1,000 jobs{extra}",
                    flush=True,
                )
    alone = statistics.median(rates["alone"])
    polling = statistics.median(rates["polling"])
    cost = (alone - polling) / alone * 100
    print(f"drain alone (median of {args.runs}): {alone:,.0f} jobs/s")
    print(f"drain with {args.pollers} consoles polling every {POLL_INTERVAL:.0f} s: "
          f"{polling:,.0f} jobs/s")  # fmt: skip
    print(f"cost: {cost:+.1f}% (target <= 5%): {'met' if cost <= 5 else 'NOT met'}")
    cpu_alone = statistics.median(cpus["alone"])
    cpu_polling = statistics.median(cpus["polling"])
    print(
        f"server CPU per 1,000 jobs (median): alone {cpu_alone * 1000:,.0f} ms, polling "
        f"{cpu_polling * 1000:,.0f} ms ({(cpu_polling - cpu_alone) / cpu_alone * 100:+.1f}%); "
        "CPU time is less disturbed than the rate by other load on a shared machine"
    )
    if latencies:
        print(
            f"overview fragment during the drain: {len(latencies)} polls, "
            f"p50 {percentile(latencies, 50) * 1000:.0f} ms, "
            f"p95 {percentile(latencies, 95) * 1000:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
