"""The Registry in isolation: a started actor over the in-memory store, a hand-moved clock.

Each step ends with an ask (a reply future), which is a barrier for every earlier tell.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pykka
import pytest

from tests.support import FakeClock, make_job
from workstream.actors.events import EventBus
from workstream.actors.registry import Registry
from workstream.actors.registry_messages import (
    AttemptEnded,
    Barrier,
    Cancel,
    Claim,
    Claimed,
    Create,
    Created,
    Finish,
    Outcome,
    Recover,
    Release,
    RenewLeases,
    Retry,
    Sweep,
    Swept,
)
from workstream.actors.replies import Ticket
from workstream.actors.write_health import WriteHealth
from workstream.errors import (
    IdempotencyKeyReused,
    IllegalTransition,
    NotFound,
    QueueFull,
    ServiceBusy,
    StorageUnavailable,
)
from workstream.jobs.events import (
    JOB_CANCELLED,
    JOB_COMPLETED,
    JOB_CREATED,
    JOB_FAILED,
    JOB_FENCED,
    JOB_RECOVERED,
    JOB_REJECTED,
    JOB_RELEASED,
    JOB_RETRIED,
    JobEvent,
)
from workstream.jobs.model import JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.spec import JobSpec
from workstream.store.memory import MemoryStore

OWNER = "node-a"
LEASE = 30.0


class EventLog:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self._lock = threading.Lock()

    def __call__(self, events: Any) -> None:
        with self._lock:
            self.events.extend(events)

    def kinds(self) -> list[str]:
        with self._lock:
            return [event.kind for event in self.events]


class Harness:
    def __init__(self, clock: FakeClock, store: MemoryStore | None = None) -> None:
        self.clock = clock
        self.store = store or MemoryStore()
        self.bus = EventBus()
        self.log = EventLog()
        self.bus.subscribe(self.log)
        ids = (f"job-{n}" for n in itertools.count(1))
        self.ref = Registry.start(
            store=self.store,
            events=self.bus,
            owner=OWNER,
            clock=clock,
            new_id=lambda: next(ids),
            retry_policy=RetryPolicy(base=2.0, cap=100.0, uniform=lambda low, high: 1.0),
            lease_duration=LEASE,
            default_max_retries=2,
        )

    def ask(self, make: Any, timeout: float = 2.0) -> Any:
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        self.ref.tell(make(future))
        return future.get(timeout=timeout)

    def create(self, *specs: JobSpec, limit: int | None = None, **kwargs: Any) -> Created:
        return self.ask(lambda reply: Create(list(specs), reply, limit=limit, **kwargs))

    def claim(self, limit: int = 10) -> Claimed:
        return self.ask(lambda reply: Claim(limit, reply))

    def finish(
        self,
        job_id: str,
        attempt: int,
        *,
        error: str | None = None,
        owner: str = OWNER,
        result: Any = None,
    ) -> None:
        self.ref.tell(Finish(Outcome(job_id, attempt, owner, "worker-1", 0.01, result, error)))
        self.barrier()

    def barrier(self) -> None:
        self.ask(lambda reply: Barrier(reply))

    def stored(self, job_id: str) -> Any:
        job = self.store.get(job_id)
        assert job is not None
        return job


@pytest.fixture
def reg(clock: FakeClock) -> Iterator[Harness]:
    harness = Harness(clock)
    yield harness
    harness.ref.stop()


def test_create_is_stored_before_the_reply_and_publishes_created(reg: Harness) -> None:
    created = reg.create(JobSpec("echo", {"a": 1}))
    assert created.created is True
    [job] = created.jobs
    assert reg.stored(job.id) == job
    assert job.status is JobStatus.PENDING
    assert job.max_retries == 2  # the default
    assert job.run_at == reg.clock.now
    assert reg.log.kinds() == [JOB_CREATED]


class GatedStore(MemoryStore):
    """Holds the next transaction until the test opens the gate, so that the commands the
    test sends meanwhile wait in the Registry's inbox and form one batch."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self._armed = False

    def arm(self) -> None:
        self.entered.clear()
        self.gate.clear()
        self._armed = True

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with super().transaction() as tx:
            if self._armed:
                self._armed = False
                self.entered.set()
                assert self.gate.wait(5)
            yield tx


def hold_registry(harness: Harness, store: GatedStore) -> pykka.ThreadingFuture[Any]:
    """Park the Registry inside a transaction; returns the parked command's reply."""
    store.arm()
    parked: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    harness.ref.tell(Barrier(parked))
    assert store.entered.wait(5)
    return parked


def test_commands_waiting_in_the_inbox_share_one_transaction(clock: FakeClock) -> None:
    """Group commit: while one batch is being written, everything that arrives is
    committed together in the next, and nobody is answered before their commit."""
    store = GatedStore()
    harness = Harness(clock, store)
    try:
        parked = hold_registry(harness, store)
        waiting = []
        for _ in range(10):
            future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
            harness.ref.tell(Create([JobSpec("echo")], future))
            waiting.append(future)
        with pytest.raises(pykka.Timeout):
            waiting[0].get(timeout=0.05)  # not answered: not yet committed
        before = store.transactions
        store.gate.set()
        parked.get(timeout=2)
        for future in waiting:
            future.get(timeout=2)
        assert store.transactions == before + 2
        assert len(store.all_jobs()) == 10
    finally:
        store.gate.set()
        harness.ref.stop()


def test_capacity_counts_due_pending_jobs_and_refuses_without_storing(reg: Harness) -> None:
    reg.create(JobSpec("echo"), JobSpec("echo"), limit=3)
    reg.create(JobSpec("echo", run_at=reg.clock.now + 60), limit=3)  # delayed: not counted
    reg.create(JobSpec("echo"), limit=3)
    with pytest.raises(QueueFull):
        reg.create(JobSpec("echo"), limit=3)
    with pytest.raises(QueueFull):  # a batch is all or nothing
        reg.create(JobSpec("echo"), JobSpec("echo"), limit=4)
    assert len(reg.store.all_jobs()) == 4
    assert reg.log.kinds().count(JOB_REJECTED) == 2
    assert reg.log.kinds().count(JOB_CREATED) == 4


def test_idempotency_key_returns_the_first_job_or_refuses_a_different_body(reg: Harness) -> None:
    first = reg.create(JobSpec("echo", {"x": 1}), idempotency_key="k1", request_hash="h1")
    again = reg.create(JobSpec("echo", {"x": 1}), idempotency_key="k1", request_hash="h1")
    assert again.created is False
    assert again.jobs == first.jobs
    with pytest.raises(IdempotencyKeyReused):
        reg.create(JobSpec("echo", {"x": 2}), idempotency_key="k1", request_hash="h2")
    assert len(reg.store.all_jobs()) == 1


def test_racing_repeats_of_an_idempotency_key_store_one_job(reg: Harness) -> None:
    futures = []
    for _ in range(5):
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        reg.ref.tell(Create([JobSpec("echo")], future, idempotency_key="same", request_hash="h"))
        futures.append(future)
    results = [future.get(timeout=2) for future in futures]
    assert sum(result.created for result in results) == 1
    assert len({result.jobs[0].id for result in results}) == 1
    assert len(reg.store.all_jobs()) == 1


class KeyRaceStore(MemoryStore):
    """Another node has stored an Idempotency-Key, but committed only after this node's
    look-up (a shared database): the first look-up misses it, the insert then collides."""

    def __init__(self) -> None:
        super().__init__()
        self.missed = False

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with super().transaction() as tx:
            look_up = tx.find_by_idempotency_key

            def missed_once(key: str) -> Any:
                if self.missed:
                    return look_up(key)
                self.missed = True
                return None

            tx.find_by_idempotency_key = missed_once
            yield tx


@pytest.mark.parametrize(("request_hash", "answer"), [("h", "repeat"), ("h2", "reused")])
def test_a_key_stored_by_another_node_meanwhile_answers_as_a_repeat(
    clock: FakeClock, request_hash: str, answer: str
) -> None:
    store = KeyRaceStore()
    with store.transaction() as tx:
        tx.insert(make_job("other-node-job", idempotency_key="k", request_hash="h", now=clock.now))
    store.missed = False
    harness = Harness(clock, store)
    try:
        if answer == "repeat":
            created = harness.create(JobSpec("echo"), idempotency_key="k", request_hash="h")
            assert created.created is False
            assert [job.id for job in created.jobs] == ["other-node-job"]
        else:
            with pytest.raises(IdempotencyKeyReused):
                harness.create(JobSpec("echo"), idempotency_key="k", request_hash=request_hash)
        assert [job.id for job in harness.store.all_jobs()] == ["other-node-job"]
        assert JOB_CREATED not in harness.log.kinds()
    finally:
        harness.ref.stop()


def test_claim_takes_due_jobs_in_order_for_this_owner(reg: Harness) -> None:
    reg.create(JobSpec("echo"), JobSpec("echo"), JobSpec("echo", run_at=reg.clock.now + 5))
    claimed = reg.claim(limit=5)
    assert [job.id for job in claimed.jobs] == ["job-1", "job-2"]
    assert claimed.next_run_at == reg.clock.now + 5
    for job in claimed.jobs:
        stored = reg.stored(job.id)
        assert stored.status is JobStatus.PROCESSING
        assert stored.owner == OWNER
        assert stored.attempts == 1
        assert stored.lease_expires_at == reg.clock.now + LEASE
    assert reg.claim(limit=5).jobs == []


def test_completion_and_failure_follow_the_table(reg: Harness) -> None:
    reg.create(JobSpec("echo"), JobSpec("echo", max_retries=0))
    reg.claim()
    reg.finish("job-1", 1, result={"ok": True})
    done = reg.stored("job-1")
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"ok": True}
    assert done.run_at is None and done.finished_at == reg.clock.now
    reg.finish("job-2", 1, error="ValueError: boom")
    failed = reg.stored("job-2")
    assert failed.status is JobStatus.FAILED and failed.failed_for_good
    assert failed.last_error == "ValueError: boom"
    failed_events = [e for e in reg.log.events if e.kind == JOB_FAILED]
    assert [e.final for e in failed_events] == [True]
    assert JOB_COMPLETED in reg.log.kinds()


def test_a_failed_attempt_with_runs_left_waits_for_its_backoff(reg: Harness) -> None:
    reg.create(JobSpec("echo"))
    reg.claim()
    reg.finish("job-1", 1, error="boom")
    job = reg.stored("job-1")
    assert job.status is JobStatus.FAILED
    assert job.run_at == reg.clock.now + 2.0  # base 2s x 2^0, jitter fixed at 1.0
    assert job.finished_at is None


def test_a_late_outcome_is_fenced_not_applied(reg: Harness) -> None:
    reg.create(JobSpec("echo"))
    reg.claim()
    reg.finish("job-1", 1, owner="someone-else", result="late")
    reg.finish("job-1", 7, result="wrong attempt")
    job = reg.stored("job-1")
    assert job.status is JobStatus.PROCESSING
    assert job.result is None
    assert reg.log.kinds().count(JOB_FENCED) == 2


def test_cancel_and_retry_obey_the_table(reg: Harness) -> None:
    reg.create(JobSpec("echo", max_retries=0), JobSpec("echo"))
    with pytest.raises(NotFound):
        reg.ask(lambda reply: Cancel("nope", reply))
    with pytest.raises(IllegalTransition):
        reg.ask(lambda reply: Retry("job-1", reply))  # pending cannot be retried
    reg.claim(limit=1)
    with pytest.raises(IllegalTransition):
        reg.ask(lambda reply: Cancel("job-1", reply))  # processing cannot be cancelled
    reg.finish("job-1", 1, error="boom")
    again = reg.ask(lambda reply: Retry("job-1", reply))
    assert again.status is JobStatus.PENDING and again.retry_base == 1
    cancelled = reg.ask(lambda reply: Cancel("job-2", reply))
    assert cancelled.status is JobStatus.CANCELLED
    with pytest.raises(IllegalTransition):
        reg.ask(lambda reply: Retry("job-2", reply))
    assert reg.log.kinds().count(JOB_RETRIED) == 1
    assert reg.log.kinds().count(JOB_CANCELLED) == 1


def test_sweep_requeues_due_retries_and_recovers_expired_leases(reg: Harness) -> None:
    reg.create(JobSpec("echo"))
    reg.claim()
    reg.finish("job-1", 1, error="boom")  # retry due in 2s
    stale = make_job(
        "stale",
        status=JobStatus.PROCESSING,
        attempts=1,
        owner="dead-node",
        lease_expires_at=reg.clock.now + 1,
        now=reg.clock.now,
    )
    with reg.store.transaction() as tx:
        tx.insert(stale)
    swept = reg.ask(lambda reply: Sweep(reply))
    assert swept == Swept(requeued=0, recovered=0, more=False)
    reg.clock.advance(2.5)
    swept = reg.ask(lambda reply: Sweep(reply))
    assert swept == Swept(requeued=1, recovered=1, more=False)
    assert reg.stored("job-1").status is JobStatus.PENDING
    recovered = reg.stored("stale")
    assert recovered.status is JobStatus.PENDING and recovered.attempts == 1
    assert "lease expired" in (recovered.last_error or "")
    assert JOB_RECOVERED in reg.log.kinds()


def test_sweep_leaves_jobs_this_process_is_still_running(reg: Harness) -> None:
    reg.create(JobSpec("echo"))
    reg.claim()
    reg.clock.advance(LEASE + 1)  # renewal missed: the lease ran out, but we run it
    swept = reg.ask(lambda reply: Sweep(reply))
    assert swept.recovered == 0
    assert reg.stored("job-1").status is JobStatus.PROCESSING


def test_sweep_reports_more_when_its_batch_is_full(reg: Harness) -> None:
    reg.create(*[JobSpec("echo", max_retries=1) for _ in range(3)])
    reg.claim()
    for n in (1, 2, 3):
        reg.finish(f"job-{n}", 1, error="boom")
    reg.clock.advance(10)
    assert reg.ask(lambda reply: Sweep(reply, limit=2)).more is True
    assert reg.ask(lambda reply: Sweep(reply, limit=2)) == Swept(1, 0, more=False)


def test_renewal_extends_the_leases_of_running_jobs(reg: Harness) -> None:
    reg.create(JobSpec("echo"))
    reg.claim()
    reg.clock.advance(10)
    reg.ref.tell(RenewLeases())
    reg.barrier()
    assert reg.stored("job-1").lease_expires_at == reg.clock.now + LEASE


def test_recover_counts_the_interrupted_attempt(reg: Harness) -> None:
    now = reg.clock.now
    with reg.store.transaction() as tx:
        tx.insert(make_job("a", status=JobStatus.PROCESSING, attempts=1, owner="old", now=now))
        tx.insert(make_job("b", status=JobStatus.PROCESSING, attempts=4, owner="old", now=now))
    assert reg.ask(lambda reply: Recover(reply)) == 2
    a, b = reg.stored("a"), reg.stored("b")
    assert a.status is JobStatus.PENDING and a.attempts == 1
    assert b.status is JobStatus.FAILED and b.failed_for_good  # 4 runs of 1 + 3 used
    assert "interrupted" in (b.last_error or "")
    assert reg.log.kinds().count(JOB_RECOVERED) == 2


def test_release_gives_back_running_jobs_without_counting_the_attempt(reg: Harness) -> None:
    reg.create(JobSpec("echo"), JobSpec("echo"))
    reg.claim()
    assert reg.ask(lambda reply: Release(reply)) == 2
    for job_id in ("job-1", "job-2"):
        job = reg.stored(job_id)
        assert job.status is JobStatus.PENDING and job.attempts == 0 and job.owner is None
    assert reg.log.kinds().count(JOB_RELEASED) == 2
    reg.finish("job-1", 1, result="too late")  # the worker finishing after the release
    assert reg.stored("job-1").status is JobStatus.PENDING


def test_a_storage_failure_refuses_requests_but_keeps_outcomes(clock: FakeClock) -> None:
    store = GatedStore()
    reg = Harness(clock, store)
    try:
        reg.create(JobSpec("echo"))
        reg.claim()
        parked = hold_registry(reg, store)
        reg.ref.tell(Finish(Outcome("job-1", 1, OWNER, "worker-1", 0.01, "done")))
        refused: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        reg.ref.tell(Create([JobSpec("echo")], refused))
        store.fail_next_transaction()  # the batch holding Finish and Create fails
        store.gate.set()
        parked.get(timeout=2)
        with pytest.raises(StorageUnavailable):
            refused.get(timeout=2)
        assert reg.stored("job-1").status is JobStatus.PROCESSING
        assert len(store.all_jobs()) == 1
        reg.barrier()  # the next batch writes the kept outcome
        assert reg.stored("job-1").status is JobStatus.COMPLETED
        assert reg.ref.is_alive()
    finally:
        store.gate.set()
        reg.ref.stop()


class PickyStore(GatedStore):
    """Raises a non-storage error (a value the database cannot take) for one result."""

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with super().transaction() as tx:
            original = tx.update

            def update(job: Any, expected: Any) -> bool:
                if job.result == "poison":
                    raise ValueError("the database cannot take this value")
                return original(job, expected)

            tx.update = update
            yield tx


def test_a_command_that_breaks_its_batch_fails_alone(clock: FakeClock) -> None:
    store = PickyStore()
    reg = Harness(clock, store)
    try:
        reg.create(JobSpec("echo"), JobSpec("echo"))
        reg.claim()
        parked = hold_registry(reg, store)  # the next three commands form one batch
        reg.ref.tell(Finish(Outcome("job-1", 1, OWNER, "worker-1", 0.01, "poison")))
        reg.ref.tell(Finish(Outcome("job-2", 1, OWNER, "worker-1", 0.01, "fine")))
        created: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        reg.ref.tell(Create([JobSpec("echo")], created))
        store.gate.set()
        parked.get(timeout=2)
        assert created.get(timeout=2).created
        poisoned = reg.stored("job-1")
        assert poisoned.status is JobStatus.FAILED  # recorded as a failed attempt instead
        assert "could not be stored" in (poisoned.last_error or "")
        assert reg.stored("job-2").status is JobStatus.COMPLETED
        assert reg.ref.is_alive()
    finally:
        store.gate.set()
        reg.ref.stop()


def test_a_timed_out_attempt_still_running_is_not_retried_beside_itself(reg: Harness) -> None:
    reg.create(JobSpec("echo"))
    reg.claim()
    reg.ref.tell(
        Finish(Outcome("job-1", 1, OWNER, "worker-1", 5.0, error="TimeoutError", abandoned=True))
    )
    reg.barrier()
    reg.clock.advance(60)  # the backoff is long over
    assert reg.ask(lambda reply: Sweep(reply)).requeued == 0
    with pytest.raises(IllegalTransition, match="still running"):
        reg.ask(lambda reply: Retry("job-1", reply))
    reg.ref.tell(AttemptEnded("job-1", 1))  # the abandoned call returned at last
    assert reg.ask(lambda reply: Sweep(reply)).requeued == 1
    assert reg.stored("job-1").status is JobStatus.PENDING


def test_kept_outcomes_do_not_hold_new_requests_hostage(clock: FakeClock) -> None:
    store = GatedStore()
    reg = Harness(clock, store)
    try:
        reg.create(JobSpec("echo"))
        reg.claim()
        parked = hold_registry(reg, store)  # the Finish and the barrier form one batch
        reg.ref.tell(Finish(Outcome("job-1", 1, OWNER, "worker-1", 0.01, "done")))
        failed: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        reg.ref.tell(Barrier(failed))
        store.fail_next_transaction()
        store.gate.set()
        parked.get(timeout=2)
        with pytest.raises(StorageUnavailable):
            failed.get(timeout=2)  # that batch failed; the outcome was kept
        store.fail_next_transaction()  # the kept outcome fails again, in its own commit
        assert reg.create(JobSpec("echo")).created  # ...and the new request gets through
        assert reg.stored("job-1").status is JobStatus.PROCESSING
        reg.barrier()
        assert reg.stored("job-1").status is JobStatus.COMPLETED
    finally:
        store.gate.set()
        reg.ref.stop()


def test_a_create_whose_caller_gave_up_is_not_stored(reg: Harness) -> None:
    gave_up = Ticket()
    assert gave_up.abandon()
    with pytest.raises(ServiceBusy):
        reg.create(JobSpec("echo"), ticket=gave_up)
    assert reg.store.all_jobs() == []
    waiting = Ticket()
    assert reg.create(JobSpec("echo"), ticket=waiting).created
    assert not waiting.abandon(), "a stored job's caller must wait for the answer"


def test_a_caller_that_gives_up_while_the_registry_stores_waits_for_the_outcome(
    clock: FakeClock,
) -> None:
    store = GatedStore()
    harness = Harness(clock, store)
    try:
        parked = hold_registry(harness, store)  # the Registry is busy in a transaction
        ticket = Ticket()
        created: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        harness.ref.tell(Create([JobSpec("echo")], created, ticket=ticket))
        assert ticket.abandon()  # the caller gives up before the Registry reaches it
        store.gate.set()
        parked.get(timeout=2)
        with pytest.raises(ServiceBusy):
            created.get(timeout=2)
        assert harness.store.all_jobs() == []  # its 503 said nothing was stored: true
    finally:
        store.gate.set()
        harness.ref.stop()


def test_repeated_commit_failures_show_in_write_health(clock: FakeClock) -> None:
    health = WriteHealth()
    store = MemoryStore()
    ids = (f"job-{n}" for n in itertools.count(1))
    ref = Registry.start(
        store=store,
        events=EventBus(),
        owner=OWNER,
        clock=clock,
        new_id=lambda: next(ids),
        retry_policy=RetryPolicy(),
        lease_duration=LEASE,
        default_max_retries=2,
        write_health=health,
    )
    try:
        store.fail_next_transaction(WriteHealth.FAILING_AFTER)
        for _ in range(WriteHealth.FAILING_AFTER):
            future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
            ref.tell(Create([JobSpec("echo")], future))
            with pytest.raises(StorageUnavailable):
                future.get(timeout=2)
        assert health.failing
        future = pykka.ThreadingFuture()
        ref.tell(Create([JobSpec("echo")], future))
        future.get(timeout=2)
        assert not health.failing
    finally:
        ref.stop()
