"""The checker: joins the load generator's answers, the database and the probe's ledger,
and counts what RELIABILITY.md asks for.

- acked: answered 200/201; shed: 429/503; unanswered: no answer (connection cut).
- lost: an acked job that is not in the database, or (when the scenario expects
  everything to finish) not finished; also a job stored for an unanswered submission that
  never finished.
- duplicated: a job whose handler started more than once for reasons other than its own
  failures (a crash, a SIGKILL, a shutdown that gave it back): allowed, reported.
- stuck: `processing`, or `pending` and due, after quiescence.
- illegal: a refused submission that was stored anyway; two executions of one job at once
  in one process (while its lease held), or ended at overlapping times in two; more
  attempts than 1 + max_retries; a completed probe job with no successful execution of its
  final attempt; a finished job with a `run_at`, a failed one without `last_error`.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.reliability.ledger import FAILED_OUTCOMES, Entry
from tests.reliability.load import Answer

PROBE_TYPES = frozenset({"probe", "probe_timed"})


def finished(job: dict[str, Any]) -> bool:
    """Completed, cancelled, or failed for good (no run_at: no retry to come)."""
    return job["status"] in ("completed", "cancelled") or (
        job["status"] == "failed" and job["run_at"] is None
    )


@dataclass
class Figures:
    scenario: str
    submitted: int = 0
    acked: int = 0
    shed: int = 0
    unanswered: int = 0
    other: int = 0  # any other status (a 5xx among them) -- must be 0 where asserted
    lost: int = 0
    dup: int = 0
    stuck: int = 0
    illegal: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rss_peak_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [
            f"scenario={self.scenario}",
            f"submitted={self.submitted}",
            f"acked={self.acked}",
            f"shed={self.shed}",
            f"unanswered={self.unanswered}",
            f"other={self.other}",
            f"lost={self.lost}",
            f"dup={self.dup}",
            f"stuck={self.stuck}",
            f"illegal={self.illegal}",
            f"p50_ms={self.p50_ms:.1f}",
            f"p99_ms={self.p99_ms:.1f}",
            f"rss_peak_mb={self.rss_peak_mb:.1f}",
        ]
        parts += [f"{key}={value}" for key, value in self.extra.items()]
        return " ".join(parts)

    def assert_clean(self) -> None:
        assert (self.lost, self.stuck, self.illegal) == (0, 0, 0), "\n".join(
            [self.line(), *self.problems[:30]]
        )


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def check(
    scenario: str,
    answers: list[Answer],
    jobs: list[dict[str, Any]],
    ledger: list[Entry],
    *,
    expect_finished: bool = True,
    rss_peak_mb: float = 0.0,
    now: float | None = None,
) -> Figures:
    now = time.time() if now is None else now
    fig = Figures(scenario, submitted=len(answers), rss_peak_mb=rss_peak_mb)
    problem = fig.problems.append

    by_seq: dict[str, dict[str, Any]] = {}
    by_id = {job["id"]: job for job in jobs}
    for job in jobs:
        payload = job["payload"]
        if isinstance(payload, dict) and isinstance(payload.get("seq"), str):
            by_seq[payload["seq"]] = job
    runs: dict[str, list[Entry]] = defaultdict(list)
    for entry in ledger:
        runs[entry.job_id].append(entry)

    latencies = [a.latency * 1000 for a in answers if a.status is not None]
    fig.p50_ms, fig.p99_ms = percentile(latencies, 50), percentile(latencies, 99)

    must_finish: list[dict[str, Any]] = []
    for answer in answers:
        stored = by_seq.get(answer.seq)
        if answer.status in (200, 201):
            fig.acked += 1
            job = by_id.get(answer.job_id or "")
            if job is None:
                fig.lost += 1
                problem(f"lost: {answer.seq} acked as {answer.job_id} but not stored")
                continue
            must_finish.append(job)
        elif answer.status in (429, 503):
            fig.shed += 1
            if stored is not None:
                fig.illegal += 1
                problem(f"illegal: {answer.seq} answered {answer.status} but stored")
        elif answer.status is None:
            fig.unanswered += 1
            if stored is not None:
                must_finish.append(stored)  # stored all the same: it must run
            if stored is not None and not answer.sent:
                fig.illegal += 1
                problem(f"illegal: {answer.seq} never reached the server but is stored")
        else:
            fig.other += 1
            if stored is not None:
                fig.illegal += 1
                problem(f"illegal: {answer.seq} answered {answer.status} but stored")

    if expect_finished:
        for job in must_finish:
            if not finished(job):
                fig.lost += 1
                problem(f"lost: {job['id']} is {job['status']}, not finished, at the end")

    for job in jobs:
        status = job["status"]
        if status == "processing" or (status in ("pending", "failed") and _due(job, now)):
            fig.stuck += 1
            problem(f"stuck: {job['id']} is {status} after quiescence")
        budget = 1 + job["max_retries"]
        if job["attempts"] - job["retry_base"] > budget:
            fig.illegal += 1
            problem(f"illegal: {job['id']} ran {job['attempts']} times, budget {budget}")
        if status in ("completed", "cancelled") and job["run_at"] is not None:
            fig.illegal += 1
            problem(f"illegal: {job['id']} is {status} with a run_at")
        if status == "failed" and job["run_at"] is None and not job["last_error"]:
            fig.illegal += 1
            problem(f"illegal: {job['id']} failed for good without last_error")
        if job["type"] in PROBE_TYPES:
            _check_runs(fig, job, runs.get(job["id"], []))
    return fig


def _due(job: dict[str, Any], now: float) -> bool:
    return job["run_at"] is not None and job["run_at"] <= now


def _check_runs(fig: Figures, job: dict[str, Any], entries: list[Entry]) -> None:
    problem = fig.problems.append
    starts = [e for e in entries if e.outcome == "started"]
    ends = {(e.pid, e.attempt, e.start): e for e in entries if e.outcome != "started"}
    failed_runs = sum(1 for e in ends.values() if e.outcome in FAILED_OUTCOMES)
    if len(starts) - failed_runs > 1:
        fig.dup += 1
    if job["status"] == "completed":
        final_ok = [e for e in ends.values() if e.outcome == "ok" and e.attempt == job["attempts"]]
        if not final_ok:
            fig.illegal += 1
            problem(f"illegal: {job['id']} completed without an ok run of its final attempt")
    budget = 1 + job["max_retries"]
    if any(e.attempt > budget for e in starts):
        fig.illegal += 1
        problem(f"illegal: {job['id']} ran attempt {max(e.attempt for e in starts)} > {budget}")
    # Overlaps: within one process no two runs of a job may overlap (an abandoned,
    # timed-out call included: no retry starts until it has returned); across processes,
    # two runs that both ended must not overlap (a process that died ends its run).
    intervals = []
    for start in starts:
        end = ends.get((start.pid, start.attempt, start.start))
        intervals.append((start.start, end.end if end else None, start.pid))
    intervals.sort(key=lambda item: item[0])
    for i, (_s1, e1, p1) in enumerate(intervals):
        for s2, e2, p2 in intervals[i + 1 :]:
            if p1 == p2 and (e1 is None or s2 < e1):
                fig.illegal += 1
                problem(f"illegal: {job['id']} ran twice at once in pid {p1}")
            elif p1 != p2 and e1 is not None and e2 is not None and s2 < e1:
                fig.illegal += 1
                problem(f"illegal: {job['id']} ran in pids {p1} and {p2} at once")
