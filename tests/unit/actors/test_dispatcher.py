"""The Dispatcher in isolation: a recording stand-in for the Registry that answers claims
from a script, and recording stand-ins for Workers."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import pykka
import pytest

from tests.support import FakeClock, Recorder, make_job, messages
from workstream.actors.dispatcher import CLAIM_RETRY_DELAY, Dispatcher
from workstream.actors.dispatcher_messages import (
    DispatcherStatus,
    SlotClosed,
    StartHandout,
    Status,
    StopHandout,
    Wake,
    WorkerIdle,
)
from workstream.actors.events import JobEvents
from workstream.actors.registry_messages import Claim, Claimed, Release, Unpark
from workstream.actors.worker_messages import Run
from workstream.errors import StorageUnavailable
from workstream.jobs.events import JOB_COMPLETED, JOB_CREATED, JOB_FAILED, JobEvent


class ScriptedRegistry:
    """Answers each Claim with the next scripted result (jobs list or an exception);
    `hold()` makes claims wait for `answer_held()`, to test what happens meanwhile."""

    def __init__(self) -> None:
        self.script: deque[Any] = deque()
        self.held: list[Claim] = []
        self.holding = False
        self.parking = False  # as the Registry does: a claim that would find nothing waits
        self.parked: Claim | None = None

    def respond(self, message: Any) -> None:
        if isinstance(message, Unpark):
            if self.parked is not None and (message.answer or self.script):
                parked, self.parked = self.parked, None
                self._answer(parked)
            return
        if not isinstance(message, Claim):
            return
        if self.parking and not self.script and message.parked is not None:
            self.parked = message
            message.parked.set(Claimed([], None))
            return
        if self.holding:
            self.held.append(message)
            return
        self._answer(message)

    def _answer(self, claim: Claim) -> None:
        result = self.script.popleft() if self.script else Claimed([], None)
        if isinstance(result, BaseException):
            claim.reply.set_exception((type(result), result, None))
        else:
            claim.reply.set(result)

    def answer_held(self) -> None:
        self.holding = False
        while self.held:
            self._answer(self.held.pop(0))


class Scheduled:
    """The Ticker's `at`, recorded: `ring(now)` calls the alarms due at `now` (once each),
    as the Ticker would on that clock."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.pending: list[tuple[float, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, when: float, fn: Any) -> None:
        with self.lock:
            self.calls.append(when)
            self.pending.append((when, fn))

    def ring(self, now: float) -> int:
        with self.lock:
            due = [fn for when, fn in self.pending if when <= now]
            self.pending = [(when, fn) for when, fn in self.pending if when > now]
        for fn in due:
            fn()
        return len(due)


class Harness:
    def __init__(self, clock: FakeClock, actors: list[Any], held: bool = False) -> None:
        self.clock = clock
        self.handing_out = threading.Event()
        self.script = ScriptedRegistry()
        self.registry = Recorder.start(respond=self.script.respond)
        self.schedule = Scheduled()
        self.ref = Dispatcher.start(
            registry=self.registry,
            clock=clock,
            schedule=self.schedule,
            held=held,
            handing_out=self.handing_out,
        )
        self.workers: list[pykka.ActorRef[Any]] = []
        actors.extend([self.registry, self.ref])
        self._actors = actors

    def add_workers(self, count: int) -> list[pykka.ActorRef[Any]]:
        new = [Recorder.start() for _ in range(count)]
        self._actors.extend(new)
        self.workers.extend(new)
        for worker in new:
            self.ref.tell(WorkerIdle(worker))
        return new

    def status(self) -> DispatcherStatus:
        """An ask: also a barrier for every earlier tell to the Dispatcher."""
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        self.ref.tell(Status(future))
        return future.get(timeout=2)

    def settle(self) -> None:
        """Let the Dispatcher's claim round trips finish: claims are answered in the stand-in's
        thread, which tells the Dispatcher; two barriers in a row cover one round trip."""
        for _ in range(4):
            self.status()
            messages(self.registry)

    def claims(self) -> list[Claim]:
        return [m for m in messages(self.registry) if isinstance(m, Claim)]

    def runs(self, worker: pykka.ActorRef[Any]) -> list[str]:
        return [m.job.id for m in messages(worker) if isinstance(m, Run)]


@pytest.fixture
def disp(clock: FakeClock, actors: list[Any]) -> Harness:
    return Harness(clock, actors)


def test_idle_workers_get_one_claimed_job_each(disp: Harness) -> None:
    disp.script.script.extend(
        [Claimed([make_job("a")], None), Claimed([make_job("b"), make_job("c")], None)]
    )
    disp.script.holding = True
    workers = disp.add_workers(3)
    disp.settle()
    assert len(disp.script.held) == 1  # one claim in flight at a time
    assert disp.script.held[0].limit == 1  # the first worker to report asked for one
    disp.script.answer_held()  # "a" arrives; the next claim asks for the other two
    disp.settle()
    assert [claim.limit for claim in disp.claims()] == [1, 2]
    given = sorted(job for worker in workers for job in disp.runs(worker))
    assert given == ["a", "b", "c"]
    assert disp.status().busy == 3
    assert all(len(disp.runs(worker)) == 1 for worker in workers)


def test_a_short_claim_waits_for_news_before_claiming_again(disp: Harness) -> None:
    disp.add_workers(2)
    disp.settle()
    assert len(disp.claims()) == 1  # answered empty: the queue is dry
    disp.ref.tell(JobEvents([JobEvent(JOB_COMPLETED, "x", "echo", 1, disp.clock.now)]))
    disp.settle()
    assert len(disp.claims()) == 1  # a completion brings no new work
    disp.ref.tell(
        JobEvents([JobEvent(JOB_CREATED, "n", "echo", 0, disp.clock.now, run_at=disp.clock.now)])
    )
    disp.settle()
    assert len(disp.claims()) == 2


def test_a_full_claim_is_followed_by_another_when_workers_free_up(disp: Harness) -> None:
    disp.script.script.extend([Claimed([make_job("a")], None), Claimed([], None)])
    [worker] = disp.add_workers(1)
    disp.settle()
    assert disp.runs(worker) == ["a"]
    disp.ref.tell(WorkerIdle(worker))  # finished "a": more may be due
    disp.settle()
    assert len(disp.claims()) == 2


def test_a_delayed_job_sets_an_alarm_instead_of_a_claim(disp: Harness) -> None:
    disp.add_workers(1)
    disp.settle()
    later = disp.clock.now + 30
    disp.ref.tell(JobEvents([JobEvent(JOB_CREATED, "d", "echo", 0, disp.clock.now, run_at=later)]))
    disp.settle()
    assert len(disp.claims()) == 1
    assert later in disp.schedule.calls


def failed(job_id: str, at: float, run_at: float | None, final: bool = False) -> JobEvents:
    return JobEvents([JobEvent(JOB_FAILED, job_id, "echo", 1, at, run_at=run_at, final=final)])


def test_a_failure_with_runs_left_sets_an_alarm_for_its_retry(disp: Harness) -> None:
    disp.add_workers(1)
    disp.settle()
    retry_at = disp.clock.now + 1.0  # RETRY_BACKOFF, not SWEEPER_INTERVAL
    disp.ref.tell(failed("f", disp.clock.now, retry_at))
    disp.settle()
    assert disp.schedule.calls == [retry_at]
    assert len(disp.claims()) == 1  # not before its time


def test_a_retry_due_already_is_claimed_at_once(disp: Harness) -> None:
    disp.add_workers(1)
    disp.settle()
    disp.ref.tell(failed("f", disp.clock.now, disp.clock.now))  # RETRY_BACKOFF=0s
    disp.settle()
    assert len(disp.claims()) == 2
    assert disp.schedule.calls == []


def test_a_failure_for_good_wakes_nothing(disp: Harness) -> None:
    disp.add_workers(1)
    disp.settle()
    disp.ref.tell(failed("f", disp.clock.now, None, final=True))
    disp.settle()
    assert len(disp.claims()) == 1
    assert disp.schedule.calls == []


def test_the_retry_alarm_claims_when_it_rings(disp: Harness) -> None:
    """Failure at T, backoff 1 s, sweeper far away: nothing is claimed at T + 0.9 s, a
    claim goes out when the clock reaches T + 1 s (and takes the job the Registry gives)."""
    [worker] = disp.add_workers(1)
    disp.settle()
    retry_at = disp.clock.now + 1.0
    disp.ref.tell(failed("f", disp.clock.now, retry_at))
    disp.settle()
    assert disp.schedule.ring(disp.clock.advance(0.9)) == 0
    disp.settle()
    assert len(disp.claims()) == 1
    disp.script.script.append(Claimed([make_job("f", attempts=2)], None))
    assert disp.schedule.ring(disp.clock.advance(0.1)) == 1
    disp.settle()
    assert len(disp.claims()) == 2
    assert disp.runs(worker) == ["f"]


def test_a_short_claim_sets_an_alarm_for_the_next_due_job(disp: Harness) -> None:
    due = disp.clock.now + 12
    disp.script.script.append(Claimed([], due))
    disp.add_workers(1)
    disp.settle()
    assert disp.schedule.calls == [due]


def test_a_failed_claim_is_retried_later(disp: Harness) -> None:
    disp.script.script.append(StorageUnavailable("busy"))
    disp.add_workers(1)
    disp.settle()
    assert disp.schedule.calls == [disp.clock.now + CLAIM_RETRY_DELAY]
    assert disp.ref.is_alive()


def test_stop_handout_releases_late_claims_and_reports_when_idle(disp: Harness) -> None:
    disp.script.script.append(Claimed([make_job("a")], None))
    [worker] = disp.add_workers(1)
    disp.settle()
    assert disp.runs(worker) == ["a"]
    disp.script.holding = True
    disp.ref.tell(JobEvents([JobEvent(JOB_CREATED, "b", "echo", 0, disp.clock.now)]))
    disp.add_workers(1)
    disp.settle()
    all_idle = threading.Event()
    busy: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    disp.ref.tell(StopHandout(busy, all_idle))
    assert busy.get(timeout=2) == 1
    assert not all_idle.is_set()
    disp.script.script.append(Claimed([make_job("b")], None))
    disp.script.answer_held()  # a claim that was in flight lands after the stop
    disp.settle()
    releases = [m for m in messages(disp.registry) if isinstance(m, Release)]
    assert [r.job_ids for r in releases] == [["b"]]
    disp.ref.tell(WorkerIdle(worker))
    disp.settle()
    assert all_idle.is_set()
    assert len(disp.claims()) == 2  # nothing claimed after the stop


def test_a_wake_up_during_a_claim_is_not_lost_when_the_claim_comes_back_short(
    disp: Harness,
) -> None:
    # Another node's NOTIFY arrives while our claim is in flight: that claim may have read
    # the queue before the other node committed, so an empty answer proves nothing.
    disp.script.holding = True
    disp.add_workers(2)
    disp.settle()
    assert len(disp.claims()) == 1
    disp.ref.tell(Wake())
    disp.status()
    disp.script.script.append(Claimed([], None))
    disp.script.answer_held()
    disp.settle()
    assert len(disp.claims()) == 2, "the wake-up was swallowed by the claim in flight"


def test_outside_wake_ups_do_not_pile_up_alarms_for_a_delayed_job(disp: Harness) -> None:
    far = disp.clock.now + 86400.0  # a job delayed by a day
    for _ in range(60):
        disp.script.script.append(Claimed([], far))
    disp.add_workers(1)
    disp.settle()
    for _ in range(50):  # 50 sweep-interval looks or NOTIFYs
        disp.ref.tell(Wake())
        disp.settle()
    assert len(disp.claims()) == 51  # each wake-up looks again ...
    assert disp.schedule.calls.count(far) == 1  # ... but the one alarm stays the one alarm


def test_a_held_dispatcher_claims_nothing_until_hand_out_starts(
    clock: FakeClock, actors: list[Any]
) -> None:
    disp = Harness(clock, actors, held=True)
    disp.add_workers(2)
    disp.ref.tell(Wake())
    disp.settle()
    assert disp.claims() == [] and disp.status().handing_out is False
    assert not disp.handing_out.is_set()  # the Workers' view: no finish-and-claim yet
    disp.ref.tell(StartHandout())
    disp.settle()
    assert len(disp.claims()) == 1 and disp.status().handing_out is True
    assert disp.handing_out.is_set()


def test_hand_out_stays_stopped_if_shutdown_began_before_it_started(
    clock: FakeClock, actors: list[Any]
) -> None:
    disp = Harness(clock, actors, held=True)
    disp.add_workers(1)
    stopped: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    disp.ref.tell(StopHandout(stopped, threading.Event()))
    stopped.get(timeout=2)
    disp.ref.tell(StartHandout())
    disp.settle()
    assert disp.claims() == [] and disp.status().handing_out is False


def test_a_process_worker_is_handed_out_per_slot(disp: Harness) -> None:
    disp.script.script.extend([Claimed([make_job("a")], None), Claimed([make_job("b")], None)])
    worker = Recorder.start()
    disp.workers.append(worker)
    for slot in (0, 1, 2):
        disp.ref.tell(WorkerIdle(worker, slot))
    disp.ref.tell(WorkerIdle(worker, 2))  # said twice: still one slot
    disp.settle()
    runs = [m for m in messages(worker) if isinstance(m, Run)]
    assert sorted(run.job.id for run in runs) == ["a", "b"]
    assert len({run.slot for run in runs}) == 2  # two slots, one job each
    status = disp.status()
    assert (status.workers, status.idle, status.busy) == (3, 1, 2)
    worker.stop()


def test_closed_slots_are_neither_busy_nor_idle_and_let_the_drain_end(disp: Harness) -> None:
    disp.script.script.append(Claimed([make_job("a")], None))
    worker = Recorder.start()
    disp.workers.append(worker)
    disp.ref.tell(WorkerIdle(worker, 0))
    disp.settle()
    disp.ref.tell(WorkerIdle(worker, 1))
    all_idle = threading.Event()
    busy: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    disp.ref.tell(StopHandout(busy, all_idle))
    assert busy.get(timeout=2) == 1  # slot 0 runs "a"
    disp.ref.tell(SlotClosed(worker, 1))  # its child is going: the idle slot closes
    disp.ref.tell(SlotClosed(worker, 0))  # ... and the running one (its attempt failed)
    disp.settle()
    assert all_idle.is_set()
    status = disp.status()
    assert (status.workers, status.idle, status.busy) == (0, 0, 0)
    worker.stop()


def test_a_parked_claim_is_unparked_by_a_new_idle_slot_and_parked_again_for_all(
    disp: Harness,
) -> None:
    disp.script.parking = True
    disp.add_workers(1)
    disp.settle()
    assert [claim.limit for claim in disp.claims()] == [1]
    assert disp.script.parked is not None  # waits at the Registry for work
    disp.add_workers(1)
    disp.settle()
    unparks = [m for m in messages(disp.registry) if isinstance(m, Unpark)]
    assert len(unparks) == 1
    assert [claim.limit for claim in disp.claims()] == [1, 2]  # parked again for both
    assert disp.script.parked is not None and disp.script.parked.limit == 2


def test_a_wake_up_pokes_the_parked_claim_and_the_jobs_it_finds_start(disp: Harness) -> None:
    disp.script.parking = True
    [worker] = disp.add_workers(1)
    disp.settle()
    disp.ref.tell(Wake())  # nothing found: the claim stays parked
    disp.settle()
    assert disp.script.parked is not None and len(disp.claims()) == 1
    disp.script.script.append(Claimed([make_job("from-another-node")], None))
    disp.ref.tell(Wake())
    disp.settle()
    assert disp.runs(worker) == ["from-another-node"]
    unparks = [m for m in messages(disp.registry) if isinstance(m, Unpark)]
    assert [unpark.answer for unpark in unparks] == [False, False]  # pokes, not answers


def test_a_parked_claim_that_took_fewer_jobs_than_slots_is_parked_again(
    disp: Harness,
) -> None:
    disp.script.parking = True
    workers = disp.add_workers(2)
    disp.settle()
    parked = disp.script.parked
    assert parked is not None and parked.limit == 2
    disp.script.parked = None
    parked.reply.set(Claimed([make_job("new")], None))  # the Registry took it as it stored it
    disp.settle()
    assert sum(len(disp.runs(worker)) for worker in workers) == 1
    again = disp.script.parked
    assert again is not None and again.limit == 1  # the idle slot waits for the next one


def test_stop_handout_clears_the_workers_flag(disp: Harness) -> None:
    assert disp.handing_out.is_set()
    stopped: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    disp.ref.tell(StopHandout(stopped, threading.Event()))
    stopped.get(timeout=2)
    assert not disp.handing_out.is_set()


def test_a_slot_whose_own_claim_came_back_short_has_the_dispatcher_look_again(
    disp: Harness,
) -> None:
    """Finish-and-claim: a Worker's claim for its freed slot found nothing. The Dispatcher
    claims for it even though its own last claim came back short (it would otherwise wait
    for news), so that a claim is parked for the slot and learns when work is due."""
    [worker] = disp.add_workers(1)
    disp.settle()
    assert len(disp.claims()) == 1  # short: the Dispatcher waits for news
    other = Recorder.start()
    disp._actors.append(other)
    disp.ref.tell(WorkerIdle(other))
    disp.settle()
    assert len(disp.claims()) == 1  # an idle slot alone is no news
    disp.ref.tell(WorkerIdle(worker, 1, look=True))
    disp.settle()
    assert len(disp.claims()) == 2
