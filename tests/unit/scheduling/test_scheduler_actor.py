"""The Scheduler actor with a fake JobService and a hand-moved clock: what it submits on
each tick, and what it does when a submission fails or another node fired first."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from workstream.errors import QueueFull, ShuttingDown, StorageUnavailable
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.schedules import FiredSlot, ScheduleSlot
from workstream.jobs.service import Submission
from workstream.scheduling.actor import Scheduler, Tick
from workstream.scheduling.plan import Plan, make_schedule

START = 1_800_000_000.5


class FakeJobs:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ScheduleSlot | None, Any]] = []
        self.fail: list[Exception] = []
        self.taken: set[str] = set()  # keys another node stored
        self.fired: list[FiredSlot] = []

    def fired_slots(self) -> list[FiredSlot]:
        return self.fired

    def submit(self, specs: Any, *, idempotency_key: str, slot: ScheduleSlot) -> Submission:
        self.calls.append((idempotency_key, slot, specs[0].payload))
        if self.fail:
            raise self.fail.pop(0)
        job = Job(
            id=f"job-{len(self.calls)}",
            type=specs[0].type,
            payload=specs[0].payload,
            status=JobStatus.PENDING,
            max_retries=0,
            created_at=START,
            updated_at=START,
            run_at=START,
            idempotency_key=idempotency_key,
        )
        return Submission([job], created=idempotency_key not in self.taken)


@pytest.fixture
def clock() -> list[float]:
    return [START]


def start(actors: list[Any], jobs: FakeJobs, clock: list[float]) -> Any:
    schedule = make_schedule("beat", job_type="echo", every="10s", payload={"p": 1}, source="test")
    ref = Scheduler.start(
        plan=Plan([schedule], started=clock[0]),
        jobs=jobs,  # type: ignore[arg-type]
        clock=lambda: clock[0],
        log=logging.getLogger("workstream.ext.schedules"),
    )
    actors.append(ref)
    return ref


def tick(ref: Any, clock: list[float], at: float) -> None:
    clock[0] = at
    ref.ask(Tick(), timeout=2)


def test_each_due_slot_is_submitted_once_with_its_key_and_payload(
    actors: list[Any], clock: list[float]
) -> None:
    jobs = FakeJobs()
    ref = start(actors, jobs, clock)
    tick(ref, clock, START + 5)  # 1_800_000_005.5: no slot yet (next is ..010)
    assert jobs.calls == []
    tick(ref, clock, START + 10)
    tick(ref, clock, START + 11)
    assert jobs.calls == [
        ("schedule:beat:1800000010", ScheduleSlot("beat", 1_800_000_010.0), {"p": 1})
    ]
    assert ref.proxy().fired.get() == 1


def test_a_failed_submission_is_tried_again_and_logged_once_per_slot(
    actors: list[Any], clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    jobs = FakeJobs()
    jobs.fail = [QueueFull("full"), StorageUnavailable("down")]
    ref = start(actors, jobs, clock)
    with caplog.at_level(logging.WARNING, logger="workstream.ext.schedules"):
        tick(ref, clock, START + 10)
        tick(ref, clock, START + 10.5)
        tick(ref, clock, START + 11)
    slots = [slot.at for _, slot, _ in jobs.calls if slot is not None]
    assert slots == [1_800_000_010.0] * 3  # the same slot until it is stored
    warnings = [r for r in caplog.records if getattr(r, "event", "") == "schedule_fire_failed"]
    assert len(warnings) == 1
    tick(ref, clock, START + 12)
    assert len(jobs.calls) == 3  # stored at the third try: not again


def test_shutting_down_is_quiet(actors: list[Any], clock: list[float], caplog) -> None:
    jobs = FakeJobs()
    jobs.fail = [ShuttingDown("draining")]
    ref = start(actors, jobs, clock)
    with caplog.at_level(logging.WARNING, logger="workstream.ext.schedules"):
        tick(ref, clock, START + 10)
    assert caplog.records == []


def test_a_slot_another_node_fired_is_not_counted_here(
    actors: list[Any], clock: list[float]
) -> None:
    jobs = FakeJobs()
    jobs.taken.add("schedule:beat:1800000010")
    ref = start(actors, jobs, clock)
    tick(ref, clock, START + 10)
    tick(ref, clock, START + 12)
    assert len(jobs.calls) == 1 and ref.proxy().fired.get() == 0


def test_after_downtime_one_run_catches_up_from_the_store(
    actors: list[Any], clock: list[float]
) -> None:
    jobs = FakeJobs()
    jobs.fired = [FiredSlot("beat", START - 3600.5, "old", START - 3600)]  # an hour ago
    ref = start(actors, jobs, clock)
    tick(ref, clock, START + 1)
    assert [slot.at for _, slot, _ in jobs.calls if slot is not None] == [1_800_000_000.0]
    tick(ref, clock, START + 2)
    assert len(jobs.calls) == 1
