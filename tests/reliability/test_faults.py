"""Scenarios 4-8 (faults): SIGKILL under load, graceful SIGTERM (a, b, c), handlers that
raise, hang, or kill the process. Each prints its figures line and asserts lost = 0,
stuck = 0, illegal = 0.

Also covered in tests/e2e/test_lifecycle.py (not repeated here): SIGTERM with three
short jobs (exit 0, all finished), SIGTERM past SHUTDOWN_TIMEOUT with one job (pending,
uncounted), a single SIGKILL and restart, os._exit on every attempt until failed, a
handler raising SystemExit.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.checker import finished
from tests.reliability.harness import Harness, RssSampler, scale
from tests.reliability.load import Answer
from tests.support import wait_until

KILL_ENV = {"WORKER_COUNT": "4", "JOB_QUEUE_CAPACITY": "100000"}


def probe(seconds: float = 0.02, **more: Any):
    def make(seq: str) -> dict[str, Any]:
        return {"type": "probe", "payload": {"seq": seq, "sleep": seconds, **more}}

    return make


# -- 4. SIGKILL at random moments under load ------------------------------------------------


def run_sigkills(harness: Harness, kills: int, scenario: str, seed: int) -> None:
    rng = random.Random(seed)
    harness.start(**KILL_ENV)
    rss = RssSampler(harness.pid).start()
    load = harness.load(probe(0.02), threads=6, rate=150).start()
    for _ in range(kills):
        time.sleep(rng.uniform(0.2, 1.5))  # a random moment under load
        assert harness.server is not None
        harness.server.kill()
        harness.start(**KILL_ENV)
    acked = load.count(201)
    wait_until(lambda: load.count(201) >= acked + 10, 30, "service after the last restart")
    answers = load.stop()
    harness.wait_quiescent(timeout=120)
    rss.stop()
    fig = harness.figures(scenario, answers, rss=rss, kills=kills, seed=seed)
    fig.assert_clean()
    assert fig.other == 0
    assert fig.acked > 0


def test_sigkill_at_random_moments_under_load(harness: Harness) -> None:
    kills = int(scale(5, "RELIABILITY_KILLS"))
    run_sigkills(harness, kills, "sigkill", seed=int(scale(4, "RELIABILITY_SEED")))


@pytest.mark.slow
def test_many_sigkills_under_load(harness: Harness) -> None:
    kills = int(scale(50, "RELIABILITY_KILLS_SLOW"))
    run_sigkills(harness, kills, "sigkill_long", seed=int(scale(5, "RELIABILITY_SEED")))


# -- 5. SIGTERM ------------------------------------------------------------------------------


def _runs_of(harness: Harness, pid: int) -> tuple[int, int]:
    """(started, ended) runs of the probe in process `pid`."""
    entries = [e for e in harness.ledger() if e.pid == pid]
    started = sum(1 for e in entries if e.outcome == "started")
    return started, len(entries) - started


def test_sigterm_a_running_jobs_finish_and_it_exits_zero(harness: Harness) -> None:
    # Threads: runs are counted by the server's pid (with worker processes, the probe runs
    # in children: tests/e2e/test_worker_processes.py covers their SIGTERM drain).
    server = harness.start(WORKER_COUNT="4", JOB_QUEUE_CAPACITY="10000", WORKER_PROCESSES="0")
    assert server.proc is not None
    pid = server.proc.pid
    load = harness.load(probe(0.3), threads=4, rate=40).start()
    wait_until(lambda: _runs_of(harness, pid)[0] >= 8, 30, "jobs to be running")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    code = server.wait(60)
    exit_s = time.monotonic() - started
    answers = load.stop()
    runs_started, runs_ended = _runs_of(harness, pid)
    # Every run the server started, it finished before exiting.
    assert code == 0 and runs_started == runs_ended, (code, runs_started, runs_ended)
    assert not [job for job in harness.jobs() if job["status"] == "processing"]
    harness.start(WORKER_COUNT="4", JOB_QUEUE_CAPACITY="10000", WORKER_PROCESSES="0")
    harness.wait_quiescent(timeout=60)
    fig = harness.figures(
        "sigterm_a", answers, exit_code=code, exit_s=round(exit_s, 2), runs_at_exit=runs_started
    )
    fig.assert_clean()
    assert {a.status for a in answers} <= {201, 503, None}


def test_sigterm_b_jobs_past_the_timeout_go_back_to_pending_uncounted(
    harness: Harness, tmp_path: Path
) -> None:
    block = tmp_path / "block"
    block.write_text("")
    env = {"WORKER_COUNT": "4", "SHUTDOWN_TIMEOUT": "1s", "WORKER_PROCESSES": "0"}  # by pid
    server = harness.start(**env)
    assert server.proc is not None
    load = harness.load(probe(0.0, block=str(block)), threads=2, total=6).start()
    load.wait_done(30)
    wait_until(lambda: _runs_of(harness, server.proc.pid)[0] == 4, 30, "4 jobs running")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    code = server.wait(30)
    exit_s = time.monotonic() - started
    jobs = harness.jobs()
    assert code == 0 and exit_s < 1 + 5, (code, exit_s)
    assert sorted((j["status"], j["attempts"]) for j in jobs) == [("pending", 0)] * 6
    block.unlink()
    harness.start(**env)
    harness.wait_quiescent(timeout=60)
    fig = harness.figures("sigterm_b", load.answers, exit_code=code, exit_s=round(exit_s, 2))
    fig.assert_clean()
    assert fig.acked == 6 and fig.dup == 4  # the four given back ran again: reported
    assert all(j["attempts"] == 1 for j in harness.jobs())  # the interrupted run uncounted


def test_sigterm_c_then_sigkill_two_seconds_later_recovers_at_the_next_start(
    harness: Harness, tmp_path: Path
) -> None:
    block = tmp_path / "block"
    block.write_text("")
    env = {"WORKER_COUNT": "4", "SHUTDOWN_TIMEOUT": "30s", "WORKER_PROCESSES": "0"}  # by pid
    server = harness.start(**env)
    assert server.proc is not None
    load = harness.load(probe(0.0, block=str(block)), threads=2, total=6).start()
    load.wait_done(30)
    wait_until(lambda: _runs_of(harness, server.proc.pid)[0] == 4, 30, "4 jobs running")
    server.signal(signal.SIGTERM)
    time.sleep(2)  # the scenario: SIGKILL 2 s after SIGTERM, mid-drain
    server.kill()
    assert sorted(j["status"] for j in harness.jobs()) == ["pending"] * 2 + ["processing"] * 4
    block.unlink()
    harness.start(**env)
    harness.wait_quiescent(timeout=60)
    fig = harness.figures("sigterm_c", load.answers)
    fig.assert_clean()
    assert fig.acked == 6 and fig.dup == 4
    # The interrupted attempt counted: the four reran as attempt 2.
    assert sorted(j["attempts"] for j in harness.jobs()) == [1, 1, 2, 2, 2, 2]


# -- 6. handlers that raise ------------------------------------------------------------------

BACKOFF = 0.3


def test_handlers_that_raise_sometimes_or_always_follow_the_backoff(harness: Harness) -> None:
    harness.start(RETRY_BACKOFF=f"{int(BACKOFF * 1000)}ms", SWEEPER_INTERVAL="50ms")

    def make(seq: str) -> dict[str, Any]:
        n = int(seq.rsplit("-", 1)[1])
        fail: Any = True if n % 2 else 2  # odd: always; even: the first two attempts
        return {"type": "probe", "payload": {"seq": seq, "fail": fail}, "max_retries": 3}

    load = harness.load(make, threads=2, total=10).start()
    answers = load.wait_done(30)
    harness.wait_finished(timeout=60)
    jobs = {j["id"]: j for j in harness.jobs()}
    gaps_ok, worst = _check_backoff(harness, jobs)
    fig = harness.figures("handler_raises", answers, backoff_ok=gaps_ok, worst_gap_ratio=worst)
    fig.assert_clean()
    for answer in answers:
        job = jobs[answer.job_id or ""]
        n = int(answer.seq.rsplit("-", 1)[1])
        if n % 2:
            assert (job["status"], job["attempts"], job["run_at"]) == ("failed", 4, None)
            assert job["last_error"] == "RuntimeError: probe failed on attempt 4"
        else:
            assert (job["status"], job["attempts"]) == ("completed", 3)
            assert job["last_error"] == "RuntimeError: probe failed on attempt 2"
    assert gaps_ok


def _check_backoff(harness: Harness, jobs: dict[str, Any]) -> tuple[bool, float]:
    """Each wait between the end of failed attempt n and the start of n + 1 is at least
    base x 2^(n-1) minus the 10% jitter, and not much more (a sweep, a claim)."""
    ends = {(e.job_id, e.attempt): e.end for e in harness.ledger() if e.outcome == "raised"}
    starts = {(e.job_id, e.attempt): e.start for e in harness.ledger() if e.outcome == "started"}
    ok, worst = True, 0.0
    for (job_id, attempt), end in ends.items():
        later = starts.get((job_id, attempt + 1))
        if later is None or end is None:
            continue
        wait = BACKOFF * 2 ** (attempt - 1)
        gap = later - end
        worst = max(worst, round(gap / wait, 2))
        if not (0.9 * wait - 0.02 <= gap <= 1.1 * wait + 2.0):
            ok = False
    return ok, worst


# -- 7. a handler that hangs -----------------------------------------------------------------


def test_a_hanging_handler_times_out_others_flow_and_sigterm_exits_in_time(
    harness: Harness,
) -> None:
    server = harness.start(
        WORKER_COUNT="2",
        PROBE_TIMEOUT="0.5",
        SHUTDOWN_TIMEOUT="2s",
        RETRY_BACKOFF="0s",
        SWEEPER_INTERVAL="100ms",
    )
    hung = harness.submit("probe_timed", {"seq": "hang-0", "hang": 3}, max_retries=1)
    wait_until(
        lambda: any(e.outcome == "started" for e in harness.ledger()), 30, "the hang to start"
    )
    # While the call hangs (past its timeout), the freed worker keeps jobs flowing.
    load = harness.load(probe(0.01), threads=2, total=20, tag="flow").start()
    answers = load.wait_done(30)
    wait_until(
        lambda: sum(1 for j in harness.jobs() if j["status"] == "completed") >= 20,
        30,
        "the other jobs to complete while the call hangs",
    )
    # The timed-out job is retried only once its call has returned, then times out again.
    wait_until(
        lambda: (
            next(j for j in harness.jobs() if j["id"] == hung["id"])["run_at"] is None
            and next(j for j in harness.jobs() if j["id"] == hung["id"])["status"] == "failed"
        ),
        30,
        "the hanging job to fail for good",
    )
    job = next(j for j in harness.jobs() if j["id"] == hung["id"])
    assert job["attempts"] == 2 and "timeout" in job["last_error"]
    # SIGTERM with an abandoned call still hanging (60 s) exits within the timeout.
    harness.submit("probe_timed", {"seq": "hang-1", "hang": 60}, max_retries=0)
    wait_until(
        lambda: sum(1 for e in harness.ledger() if e.outcome == "started") >= 23,
        30,
        "the second hang to start",
    )
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    code = server.wait(30)
    exit_s = time.monotonic() - started
    fig = harness.figures(
        "handler_hangs",
        [*answers, Answer("hang-0", 201, hung["id"], 0, None, None, None, True)],
        exit_code=code,
        exit_s=round(exit_s, 2),
    )
    fig.assert_clean()
    assert code == 0 and exit_s < 2 + 5


# -- 8. poison pills ---------------------------------------------------------------------------


def test_poison_pills_end_failed_while_other_jobs_progress(harness: Harness) -> None:
    """A handler that raises SystemExit, then one that SIGKILLs its own process and one
    that calls os._exit, all under load: SystemExit fails its attempts with the server
    alive; what kills the server is restarted (a supervisor's job) and ends failed after
    its attempts; everything else completes."""
    env = {
        "WORKER_COUNT": "2",
        "JOB_QUEUE_CAPACITY": "10000",
        "RETRY_BACKOFF": "100ms",
        "SWEEPER_INTERVAL": "100ms",
        "WORKER_PROCESSES": "0",  # threads: a handler that kills its process kills the server
    }
    first = harness.start(**env)
    load = harness.load(probe(0.01), threads=2, rate=30).start()
    sysexit = harness.submit("probe", {"seq": "p-sysexit", "system_exit": True}, max_retries=1)
    wait_until(
        lambda: finished(next(j for j in harness.jobs() if j["id"] == sysexit["id"])),
        30,
        "the SystemExit job to fail for good",
    )
    assert first.proc is not None and first.proc.poll() is None  # the server lived
    # Delayed, so that both are acknowledged before the first one kills the server.
    killers = {
        "sigkill": harness.submit(
            "probe", {"seq": "p-kill", "sigkill": True}, max_retries=1, delay=1
        ),
        "os_exit": harness.submit(
            "probe", {"seq": "p-exit", "os_exit": True}, max_retries=0, delay=1
        ),
    }
    restarts = 0
    deadline = time.monotonic() + 90
    while True:
        states = {j["id"]: j for j in harness.jobs()}
        if all(finished(states[p["id"]]) for p in killers.values()):
            break
        assert time.monotonic() < deadline, "the poison jobs did not end failed"
        server = harness.server
        assert server is not None and server.proc is not None
        if server.proc.poll() is not None:
            restarts += 1
            assert restarts <= 3  # sigkill twice (1 + 1 retry), os_exit once
            # Workers start before the port opens: a poison may kill it early too.
            harness.start(wait=False, **env)
        time.sleep(0.1)
    assert harness.server is not None
    harness.wait_started(harness.server)
    acked = load.count(201)
    wait_until(lambda: load.count(201) >= acked + 5, 30, "service after the poison jobs")
    answers = load.stop()
    harness.wait_quiescent(timeout=60)
    extra = [
        Answer(p["payload"]["seq"], 201, p["id"], 0, None, None, None, True)
        for p in (sysexit, *killers.values())
    ]
    fig = harness.figures("poison", [*answers, *extra], restarts=restarts)
    fig.assert_clean()
    # Three deaths (sigkill twice, os_exit once), or two when both killers ran at once.
    assert restarts in (2, 3)
    jobs = {j["id"]: j for j in harness.jobs()}
    assert (jobs[sysexit["id"]]["status"], jobs[sysexit["id"]]["attempts"]) == ("failed", 2)
    assert jobs[sysexit["id"]]["last_error"] == "SystemExit: 3"
    assert jobs[killers["sigkill"]["id"]]["attempts"] == 2
    assert "interrupted" in jobs[killers["os_exit"]["id"]]["last_error"]
    assert all(jobs[p["id"]]["status"] == "failed" for p in killers.values())
