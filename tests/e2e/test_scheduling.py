"""Scheduling on real servers (issue 13): priority order and aging, a rate limit's starts
per second, Snooze and RateLimited in both worker modes, pause/resume from the CLI, and
concurrency limits (per type and per key) on two nodes sharing PostgreSQL with one node
SIGKILLed mid-run. What ran is read from a ledger the handlers write
(tests/e2e/sched_handlers.py), not from the server's own account."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import StartServer
from tests.e2e.serverproc import ServerProcess, run_workstream
from tests.pg import fresh_database
from tests.support import wait_until


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/sched.db"
        return
    with fresh_database("ws_sched") as url:
        yield url


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.jsonl"


def env_for(url: str, ledger: Path, **settings: str) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "JOB_HANDLERS": "tests.e2e.sched_handlers",
        "SCHED_LEDGER": str(ledger),
        "JOB_QUEUE_CAPACITY": "5000",
        "WORKER_PROCESSES": "0",
        **settings,
    }


def read(ledger: Path, event: str | None = None) -> list[dict[str, Any]]:
    if not ledger.exists():
        return []
    rows = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    return [row for row in rows if event is None or row["event"] == event]


def submit(server: ServerProcess, job_type: str, **fields: Any) -> str:
    status, _, body = server.request("POST", "/jobs", {"type": job_type, **fields})
    assert status == 201, body
    return body["id"]


def submit_many(server: ServerProcess, jobs: list[dict[str, Any]]) -> list[str]:
    ids = []
    for start in range(0, len(jobs), 100):
        status, _, body = server.request("POST", "/jobs/batch", {"jobs": jobs[start : start + 100]})
        assert status == 201, body
        ids += [job["id"] for job in body]
    return ids


def get(server: ServerProcess, job_id: str) -> dict[str, Any]:
    status, _, body = server.request("GET", f"/jobs/{job_id}")
    assert status == 200, body
    return body


def all_done(server: ServerProcess, ids: list[str]) -> bool:
    return all(get(server, job_id)["status"] == "completed" for job_id in ids)


def test_a_backlog_starts_in_priority_order_and_an_aged_job_first(
    start_server: StartServer, database_url: str, ledger: Path
) -> None:
    aging = 1.5
    server = start_server(
        env=env_for(database_url, ledger, WORKER_COUNT="1", PRIORITY_AGING=f"{aging}s")
    )
    status, _, paused = server.request("POST", "/types/ordered/pause")
    assert status == 200 and paused["paused"] is True
    old_low = submit(server, "ordered", priority=9, payload={"tag": "old-low"})
    # Aging needs time to pass: the old job must have waited longer than PRIORITY_AGING.
    time.sleep(aging + 0.5)
    tags = ["p5-a", "p0-a", "p9", "p0-b", "p5-b", "p3"]
    submit_many(
        server,
        [{"type": "ordered", "priority": int(tag[1]), "payload": {"tag": tag}} for tag in tags],
    )
    assert read(ledger) == []  # paused: admitted, not started
    status, _, body = server.request("GET", "/types")
    [state] = [item for item in body["types"] if item["name"] == "ordered"]
    assert state["paused"] is True and state["counts"] == {"pending": 7}
    server.request("POST", "/types/ordered/resume")
    wait_until(lambda: len(read(ledger, "end")) == 7, timeout=20, what="7 jobs done")
    order = [row["tag"] for row in read(ledger, "start")]
    assert order == ["old-low", "p0-a", "p0-b", "p3", "p5-a", "p5-b", "p9"]
    assert get(server, old_low)["priority"] == 9


def test_a_rate_limit_of_20_per_second_over_10_seconds(
    start_server: StartServer, database_url: str, ledger: Path
) -> None:
    server = start_server(env=env_for(database_url, ledger, WORKER_COUNT="8"))
    ids = submit_many(server, [{"type": "rated"} for _ in range(300)])
    wait_until(lambda: read(ledger, "start"), timeout=10, what="the first start")
    first = read(ledger, "start")[0]["at"]
    wait_until(lambda: time.time() > first + 10.5, timeout=15, what="ten seconds of starts")
    server.request("POST", "/types/rated/pause")
    starts = [row["at"] for row in read(ledger, "start")]
    in_ten = sum(1 for at in starts if first <= at < first + 10)
    print(f"\nrate limit 20/s: {in_ten} starts in the first 10 s")
    assert 180 <= in_ten <= 220
    # Throttled jobs spent no attempt: every job ran at most once, the rest never.
    counts = defaultdict(int)
    for job_id in ids:
        job = get(server, job_id)
        counts[job["attempts"]] += 1
        if job["status"] == "pending":
            assert job["attempts"] == 0
    assert set(counts) <= {0, 1}
    assert counts[1] == len(starts)


@pytest.mark.parametrize("processes", ["0", "1"], ids=["threads", "processes"])
def test_snooze_and_rate_limited_defer_without_spending_an_attempt(
    start_server: StartServer, database_url: str, ledger: Path, processes: str
) -> None:
    server = start_server(
        env=env_for(database_url, ledger, WORKER_COUNT="2", WORKER_PROCESSES=processes)
    )
    snoozed = submit(server, "snoozer", payload={"seconds": 1})
    held = submit(server, "snoozer", payload={"seconds": 1.5, "rate_limited": True}, priority=0)
    wait_until(lambda: all_done(server, [snoozed, held]), timeout=20, what="both completed")
    for job_id, seconds in ((snoozed, 1.0), (held, 1.5)):
        job = get(server, job_id)
        assert job["attempts"] == 1, job  # the deferred run was not counted
        runs = [row for row in read(ledger, "start") if row["job_id"] == job_id]
        assert [row["attempt"] for row in runs] == [1, 1]
        assert runs[1]["at"] - runs[0]["at"] >= seconds - 0.05


def test_the_cli_lists_pauses_and_resumes_types(
    start_server: StartServer, database_url: str, ledger: Path, workdir: Path
) -> None:
    server = start_server(env=env_for(database_url, ledger))
    env = {**server.env, "WORKSTREAM_URL": server.url}
    paused = run_workstream(workdir, "pause", "limited", env=env)
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["paused"] is True
    listed = run_workstream(workdir, "types", env=env)
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith("limited ")]
    assert "paused" in line and "3" in line
    rated = [line for line in listed.stdout.splitlines() if line.startswith("rated ")]
    assert "20/s" in rated[0]
    per_tenant = [line for line in listed.stdout.splitlines() if line.startswith("per_tenant ")]
    assert "1 per tenant" in per_tenant[0]
    resumed = run_workstream(workdir, "resume", "limited", env=env)
    assert json.loads(resumed.stdout)["paused"] is False
    missing = run_workstream(workdir, "pause", "nope", env=env)
    assert missing.returncode == 1 and "not_found" in missing.stderr
    submitted = run_workstream(workdir, "submit", "ordered", "--priority", "2", env=env)
    assert json.loads(submitted.stdout)["priority"] == 2
    _, _, metrics = server.request("GET", "/metrics")
    assert "workstream_type_max_concurrency{node=" in metrics
    assert 'type="limited"' in metrics


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in points:  # an end at the same instant as a start comes first (-1 < 1)
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.postgres
def test_limits_hold_on_two_nodes_with_one_killed_mid_run(
    start_server: StartServer, ledger: Path
) -> None:
    with fresh_database("ws_sched_nodes") as url:
        env = env_for(
            url,
            ledger,
            # Fewer workers per node than the limits' slots (3 + one per tenant), so that
            # both nodes get some: together they could exceed every limit.
            WORKER_COUNT="4",
            WORKER_PROCESSES="2",  # process mode: the outcomes cross the wire
            LEASE_DURATION="2s",
            SWEEPER_INTERVAL="300ms",
        )
        doomed, survivor = start_server(env=env), start_server(env=env)
        jobs = [{"type": "limited", "payload": {"sleep": 0.3}} for _ in range(24)]
        jobs += [
            {"type": "per_tenant", "payload": {"sleep": 0.3, "tenant": tenant}}
            for tenant in ("a", "b", "c") * 6
        ]
        ids = submit_many(doomed, jobs)
        wait_until(
            lambda: len({row["node"] for row in read(ledger, "start")}) == 2,
            timeout=20,
            what="both nodes running jobs",
        )
        assert doomed.proc is not None
        dead_pid = doomed.proc.pid
        killed_at = time.time()
        doomed.kill()
        wait_until(lambda: all_done(survivor, ids), timeout=60, what="every job completed")
        rows = read(ledger)
        ends = {(row["job_id"], row["attempt"]): row["at"] for row in rows if row["event"] == "end"}
        by_limit: dict[Any, list[tuple[float, float]]] = defaultdict(list)
        for row in rows:
            if row["event"] != "start":
                continue
            end = ends.get((row["job_id"], row["attempt"]))
            if end is None:  # cut short by the SIGKILL: it ran until then at most
                assert row["node"] == dead_pid
                end = killed_at
            key = row["type"] if row["type"] == "limited" else ("tenant", row["tenant"])
            by_limit[key].append((row["at"], end))
        peaks = {str(key): max_overlap(spans) for key, spans in by_limit.items()}
        print(f"\npeak concurrency on two nodes, one killed: {peaks}")
        assert peaks.pop("limited") == 3  # reached, never exceeded
        assert set(peaks.values()) == {1}  # each tenant one at a time
        # The killed node's slots came back when its leases ran out: every job ran to the
        # end on the survivor, and nothing is left processing.
        _, _, body = survivor.request("GET", "/types")
        running = {item["name"]: item["running"] for item in body["types"]}
        assert running["limited"] == 0 and running["per_tenant"] == 0
