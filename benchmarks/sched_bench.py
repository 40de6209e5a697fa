"""The `sched` workload: what scheduling costs a drain (issue 13).

The same drain as the `drain` workload (no-op jobs stored before the server starts, the
clock from the start to the last run), twice per run, interleaved: plain `bench_noop` jobs
at the default priority, and `bench_sched` jobs with priorities spread over 0..9, a type
with `max_concurrency=1000` and `rate_limit="100000/s"`: limits that never bind, so that
the difference is the machinery (the type's row, the running count, the rate window, the
per-priority order). A third drain has the limits without priorities, to tell the two
costs apart (with priorities spread 0..9 over a preloaded table, each claim's rows are
every tenth row: more pages written per commit). Target: within 10%.
"""

from __future__ import annotations

import statistics

from benchmarks.common import NotRun, Result
from benchmarks.workloads import Session, drain_workstream

PLAIN = "WorkStream (SQLite), no scheduling"
LIMITS = "WorkStream (SQLite), concurrency and rate limits"
SCHED = "WorkStream (SQLite), priorities + concurrency and rate limits"


def _drain(session: Session, count: int, job_type: str, spread: bool) -> float:
    priority = (lambda index: index % 10) if spread else (lambda index: 5)
    return drain_workstream(session, count, job_type, priority)


def run_sched(session: Session) -> None:
    count = session.plan.drain_jobs
    systems = {
        PLAIN: lambda: _drain(session, count, "bench_noop", spread=False),
        LIMITS: lambda: _drain(session, count, "bench_sched", spread=False),
        SCHED: lambda: _drain(session, count, "bench_sched", spread=True),
    }
    results = {
        name: session.add(Result("sched", name, f"{count:,} no-op jobs", "jobs/s"))
        for name in systems
    }
    for run in range(1, session.plan.runs + 1):
        for name, fn in systems.items():  # interleaved: noise hits both alike
            try:
                rate = fn()
            except NotRun as exc:
                results[name].not_run = f"failed: {exc}"
                continue
            results[name].values.append(rate)
            session.log(f"sched run {run} {name}: {rate:,.0f} jobs/s")
    plain = results[PLAIN]
    for name in (LIMITS, SCHED):
        other = results[name]
        if plain.values and other.values:
            ratio = statistics.median(other.values) / statistics.median(plain.values)
            other.note = (
                f"{ratio:.1%} of the drain without scheduling in the same run (target >= 90%)"
            )
            session.log(f"sched: {name}: {other.note}")
