"""CPU per job of a drain, per process: the server and each worker process.

    python -m benchmarks.drain_cpu [--jobs 20000] [--runs 3] [SETTING=VALUE ...]

Stores N no-op jobs (as the drain workload does), starts `workstream serve` with the given
settings (say `WORKER_COUNT=16` or `WORKER_PROCESSES=0`), and times the drain from the
moment `/health` answers (start-up excluded) to the last job's last line. Prints jobs/s and
the CPU seconds each process used meanwhile (psutil), as µs per job. To
compare two commits, run it in a checkout of each, alternating: the machine is noisy.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import record
from benchmarks.common import cpu_seconds
from benchmarks.wsrun import Server, preload


def drain(jobs: int, settings: dict[str, str]) -> tuple[float, float, list[float]]:
    """(jobs/s, server µs/job, [each child's µs/job])."""
    folder = Path(tempfile.mkdtemp(prefix="ws-drain-cpu-"))
    records = folder / "records"
    records.mkdir()
    preload(folder / "workstream.db", jobs)
    server = Server(folder, records, **settings)
    server.start()
    try:
        server.wait_ready()
        before = cpu_seconds(server.pid)  # the server, then its worker processes
        started = time.time()
        while record.count(records) < jobs:
            time.sleep(0.02)
        after = cpu_seconds(server.pid)
    finally:
        server.stop()
    last = max(row[2] for row in record.read(records))
    per_job = {pid: (after[pid] - before[pid]) * 1e6 / jobs for pid in before if pid in after}
    children = [value for pid, value in per_job.items() if pid != server.pid]
    return jobs / (last - started), per_job[server.pid], children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("settings", nargs="*", help="SETTING=VALUE for the server")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.settings)
    rates, server_cpu = [], []
    for run in range(1, args.runs + 1):
        rate, server, kids = drain(args.jobs, settings)
        rates.append(rate)
        server_cpu.append(server)
        each = ", ".join(f"{value:.0f}" for value in kids) or "none"
        print(f"run {run}: {rate:,.0f} jobs/s; CPU per job: server {server:.0f} µs, "
              f"worker processes {each} µs")  # fmt: skip
    print(f"median: {statistics.median(rates):,.0f} jobs/s, "
          f"server {statistics.median(server_cpu):.0f} µs of CPU per job")  # fmt: skip


if __name__ == "__main__":
    main()
