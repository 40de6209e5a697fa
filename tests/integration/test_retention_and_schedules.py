"""Retention, MAX_SCHEDULED_JOBS and the built-in scheduler on real actors over real
storage (SQLite and PostgreSQL), in this process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import StoreFactory
from workstream.errors import ConfigError, ScheduledJobsFull
from workstream.handlers import Handler
from workstream.jobs.listing import JobFilter
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.schedules import slot_key
from workstream.jobs.spec import JobSpec


def wait_until(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def finished_job(number: int, status: JobStatus, ended: float, **changes: Any) -> Job:
    job = Job(
        id=f"00000000-0000-4000-8000-{number:012d}",
        type="email_send" if number % 2 else "echo",
        payload={"n": number},
        status=status,
        max_retries=0,
        created_at=ended - 10,
        updated_at=ended,
        attempts=1,
        finished_at=ended,
        run_at=None,
    )
    return job.replace(**changes)


def test_retention_deletes_old_finished_jobs_and_their_outbox_files_only(
    new_store: StoreFactory, start_engine: Any, tmp_path: Path
) -> None:
    now = time.time()
    day = 86400.0
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    old = [
        finished_job(1, JobStatus.COMPLETED, now - 8 * day),
        finished_job(2, JobStatus.CANCELLED, now - 8 * day, attempts=0),
        finished_job(3, JobStatus.FAILED, now - 31 * day, last_error="boom"),
    ] + [finished_job(10 + n, JobStatus.COMPLETED, now - 9 * day) for n in range(1200)]
    kept = [
        finished_job(5, JobStatus.COMPLETED, now - 6 * day),
        finished_job(7, JobStatus.FAILED, now - 20 * day, last_error="boom"),
        finished_job(9, JobStatus.FAILED, now - 40 * day, run_at=now + day, finished_at=None),
    ]
    store = new_store()
    store.open()
    with store.transaction() as tx:
        for job in old + kept:
            tx.insert(job)
    store.close()
    for job in old + kept:
        (outbox / f"{job.id}.eml").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    (outbox / "unrelated.txt").write_text("not a job's")

    engine, _ = start_engine(
        retain_completed=7 * day, retain_failed=30 * day, outbox_dir=str(outbox)
    )
    wait_until(
        lambda: engine.store.counts(now).by_status.get("completed", 0) == 1,
        what="the old completed jobs deleted (3 batches of 500)",
    )
    wait_until(lambda: len(list(outbox.iterdir())) == len(kept) + 1, what="outbox files removed")
    left = {job.id for job in engine.store.list(JobFilter(limit=100)).jobs}
    assert left == {job.id for job in kept}
    assert sorted(path.name for path in outbox.iterdir()) == sorted(
        [f"{job.id}.eml" for job in kept] + ["unrelated.txt"]
    )


def test_zero_keeps_finished_jobs_for_ever(new_store: StoreFactory, start_engine: Any) -> None:
    now = time.time()
    store = new_store()
    store.open()
    with store.transaction() as tx:
        tx.insert(finished_job(1, JobStatus.COMPLETED, now - 10**8))
    store.close()
    engine, _ = start_engine(retain_completed=0.0, retain_failed=0.0)
    sweeps = engine.actors.sweeper.proxy().sweeps.get()
    wait_until(lambda: engine.actors.sweeper.proxy().sweeps.get() > sweeps + 2, what="sweeps")
    assert engine.store.get(finished_job(1, JobStatus.COMPLETED, 0).id) is not None


def test_max_scheduled_jobs_refuses_delayed_jobs_past_the_cap(start_engine: Any) -> None:
    engine, _ = start_engine(max_scheduled_jobs=3)
    later = time.time() + 3600
    engine.jobs.submit([JobSpec("echo", run_at=later) for _ in range(2)])
    engine.jobs.submit([JobSpec("echo", run_at=later)])
    with pytest.raises(ScheduledJobsFull, match=r"3 delayed jobs .* at most 3"):
        engine.jobs.submit([JobSpec("echo", run_at=later)])
    # Due jobs do not count against it.
    engine.jobs.submit([JobSpec("echo")])
    assert engine.store.counts(time.time()).of(JobStatus.PENDING) >= 3


def test_a_schedule_every_second_fires_each_slot_once_with_its_key(start_engine: Any) -> None:
    ran: list[str] = []
    table = [
        Handler("tick", lambda payload, job: ran.append(job.id), schedule="@every 1s"),
    ]
    engine, _ = start_engine(handlers=table)
    assert [e.name for e in engine.extensions] == ["schedules"]
    wait_until(lambda: len(engine.jobs.fired_slots()) == 1, what="a first slot")
    first = engine.jobs.fired_slots()[0]
    wait_until(lambda: engine.jobs.fired_slots()[0].slot >= first.slot + 2, what="two more slots")
    fired = engine.jobs.fired_slots()[0]
    jobs = engine.store.list(JobFilter(limit=100, job_type="tick")).jobs
    keys = [job.idempotency_key for job in jobs]
    assert len(keys) == len(set(keys))
    slots = sorted(int(key.rsplit(":", 1)[1]) for key in keys if key)
    # Every slot once, from the first to the last (a tick more than a slot late would skip
    # slots by the catch-up policy: at least the first and the last two are there).
    assert slots[0] == int(first.slot) and slots[-1] == int(fired.slot)
    assert len(slots) >= 3
    assert slot_key("tick", fired.slot) in keys
    [state] = engine.scheduling.schedules()
    assert (state.name, state.job_type, state.cron, state.timezone) == (
        "tick",
        "tick",
        "@every 1s",
        "UTC",
    )
    assert state.next_run_at is not None and state.next_run_at > fired.slot
    manual = engine.scheduling.run_schedule("tick")
    assert engine.jobs.get(manual).idempotency_key.startswith("schedule:tick:manual:")


def test_a_bad_schedule_stops_the_system_before_anything_starts(new_store: StoreFactory) -> None:
    from tests.integration.conftest import FAST
    from workstream.handlers import HandlerTable
    from workstream.handlers.builtin import HANDLERS
    from workstream.system import System

    bad = Handler("tick", lambda payload, job: None, schedule="0 3 * * *", timezone="Nowhere/X")
    with pytest.raises(ConfigError, match=r"schedule 'tick' .*unknown timezone 'Nowhere/X'"):
        System(FAST, store=new_store(), handlers=HandlerTable([*HANDLERS, bad]), serve_http=False)


def test_max_scheduled_jobs_is_a_429_with_a_json_error_over_http(tmp_path: Path) -> None:
    import json as jsonlib
    import urllib.error
    import urllib.request

    from tests.integration.conftest import FAST
    from workstream.handlers import HandlerTable
    from workstream.handlers.builtin import HANDLERS
    from workstream.store.sqlite import SqliteStore
    from workstream.system import System

    system = System(
        FAST.replace(port=0, max_scheduled_jobs=2),
        store=SqliteStore(tmp_path / "w.db"),
        handlers=HandlerTable(HANDLERS),
    )
    port = system.start()

    def post(body: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/jobs",
            data=jsonlib.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), jsonlib.load(response)
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), jsonlib.load(error)

    try:
        for _ in range(2):
            assert post({"type": "echo", "delay": "1h"})[0] == 201
        status, headers, body = post({"type": "echo", "delay": "1h"})
        assert status == 429
        assert body["code"] == "too_many_scheduled_jobs"
        assert "MAX_SCHEDULED_JOBS" in body["error"] and "at most 2" in body["error"]
        assert int(headers["Retry-After"]) >= 1
        assert post({"type": "echo"})[0] == 201  # a due job is not a scheduled one
    finally:
        system.stop()
