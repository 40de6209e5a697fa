"""The ledger's scheduling decisions (issue 13) over the in-memory store: priority order,
aging, concurrency and rate limits counted from the rows, Snooze/RateLimited, pausing."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.support import T0
from workstream.actors.batch import Batch
from workstream.actors.job_ledger import HELD_RECHECK, JobLedger
from workstream.actors.registry_messages import (
    Claim,
    Claimed,
    Create,
    Finish,
    Outcome,
    SetPaused,
    Sweep,
)
from workstream.jobs.events import JOB_SNOOZED
from workstream.jobs.model import JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.spec import JobSpec
from workstream.jobs.throttle import Throttle
from workstream.jobs.types import TypeLimits
from workstream.store.memory import MemoryStore

OWNER = "node-a"
LEASE = 30.0

LIMITS = {
    "one": TypeLimits.build(max_concurrency=1),
    "keyed": TypeLimits.build(max_concurrency=1, concurrency_key="tenant"),
    "rated": TypeLimits.build(rate_limit="2/s"),
}


class Book:
    def __init__(self, aging: float = 300.0, owner: str = OWNER, store: Any = None) -> None:
        self.store = store or MemoryStore()
        ids = (f"{owner}-job-{n}" for n in itertools.count(1))
        self.ledger = JobLedger(
            owner=owner,
            new_id=lambda: next(ids),
            retry_policy=RetryPolicy(base=2.0, cap=100.0, uniform=lambda low, high: 1.0),
            lease_duration=LEASE,
            default_max_retries=2,
            throttle=Throttle(LIMITS, aging),
        )
        self.owner = owner

    def run(self, *commands: Any, now: float = T0) -> Batch:
        batch = Batch(now=now)
        with self.store.transaction() as tx:
            for command in commands:
                self.ledger.apply(command, tx, batch)
        return batch

    def answer(self, command: Any, now: float = T0) -> Any:
        [(_, value, error)] = self.run(command, now=now).answers
        if error is not None:
            raise error
        return value

    def create(self, *specs: JobSpec, now: float = T0) -> list[str]:
        return [job.id for job in self.answer(Create(list(specs), None), now=now).jobs]

    def claim(self, limit: int = 10, now: float = T0) -> Claimed:
        return self.answer(Claim(limit, None), now=now)

    def finish(self, job_id: str, now: float = T0, attempt: int = 1, **fields: Any) -> Batch:
        outcome = Outcome(job_id, attempt, self.owner, "worker-1", 0.1, **fields)
        return self.run(Finish(outcome), now=now)


@pytest.fixture
def book() -> Book:
    return Book()


def ids(claimed: Claimed) -> list[str]:
    return [job.id for job in claimed.jobs]


def test_a_backlog_starts_in_priority_order_then_oldest_first(book):
    low = book.create(JobSpec("echo", priority=9), now=T0 - 3)
    default = book.create(JobSpec("echo"), now=T0 - 2)
    high = book.create(JobSpec("echo", priority=0), now=T0 - 1)
    other_high = book.create(JobSpec("other", priority=0), now=T0 - 5)
    assert ids(book.claim(limit=2)) == other_high + high
    assert ids(book.claim(limit=5)) == default + low


def test_an_aged_low_priority_job_goes_first(book):
    [aged] = book.create(JobSpec("echo", priority=9), now=T0 - 301)
    fresh_high = book.create(*[JobSpec("echo", priority=0) for _ in range(3)], now=T0 - 1)
    assert ids(book.claim(limit=1)) == [aged]
    assert ids(book.claim(limit=3)) == fresh_high


def test_a_concurrency_limit_counts_the_rows_and_frees_on_end(book):
    first, second = book.create(JobSpec("one"), JobSpec("one"))
    [free] = book.create(JobSpec("echo"))
    claimed = book.claim()
    assert sorted(ids(claimed)) == sorted([first, free])
    assert claimed.held and claimed.next_run_at == T0 + HELD_RECHECK
    assert ids(book.claim()) == []
    book.finish(first, now=T0 + 1)
    assert ids(book.claim(now=T0 + 1)) == [second]


def test_a_slot_of_a_dead_node_comes_back_when_its_lease_ends():
    store = MemoryStore()
    dead, alive = Book(store=store, owner="dead"), Book(store=store, owner="alive")
    first, _second = dead.create(JobSpec("one"), JobSpec("one"))
    assert ids(dead.claim()) == [first]
    assert ids(alive.claim()) == []  # the dead node's row still counts
    alive.run(Sweep(), now=T0 + LEASE + 1)  # the lease ran out: recovered, pending again
    assert store.get(first).status is JobStatus.PENDING
    assert len(ids(alive.claim(now=T0 + LEASE + 1))) == 1


def test_per_key_limits_and_fair_sharing(book):
    a = book.create(*[JobSpec("keyed", {"tenant": "a"}) for _ in range(3)], now=T0 - 2)
    [b] = book.create(JobSpec("keyed", {"tenant": "b"}), now=T0 - 1)
    assert sorted(ids(book.claim())) == sorted([a[0], b])
    assert ids(book.claim()) == []
    book.finish(a[0], now=T0 + 1)
    assert ids(book.claim(now=T0 + 1)) == [a[1]]


def test_a_rate_limit_counts_starts_in_the_stored_window(book):
    jobs = book.create(*[JobSpec("rated") for _ in range(5)], now=T0)
    first = book.claim(now=T0 + 0.1)
    assert ids(first) == jobs[:2]
    assert first.held and first.next_run_at == T0 + 1  # the window's end, not later
    assert ids(book.claim(now=T0 + 0.9)) == []
    assert ids(book.claim(now=T0 + 1.0)) == jobs[2:4]
    control = book.store.type_controls()["rated"]
    assert (control.window_start, control.window_count) == (T0 + 1, 2)
    # Throttled jobs stayed pending and spent no attempt.
    assert book.store.get(jobs[4]).attempts == 0


def test_snooze_defers_without_spending_an_attempt(book):
    [job] = book.create(JobSpec("echo"))
    book.claim()
    batch = book.finish(job, now=T0 + 1, error="Snooze: deferred for 30s", defer=30.0)
    stored = book.store.get(job)
    assert (stored.status, stored.attempts, stored.run_at) == (JobStatus.PENDING, 0, T0 + 31)
    assert [event.kind for event in batch.events] == [JOB_SNOOZED]
    assert batch.events[0].run_at == T0 + 31
    assert ids(book.claim(now=T0 + 30)) == []
    again = book.claim(now=T0 + 31)
    assert ids(again) == [job] and again.jobs[0].attempts == 1


def test_rate_limited_holds_the_whole_type_back(book):
    first, second = book.create(JobSpec("echo"), JobSpec("echo"))
    [other] = book.create(JobSpec("other"))
    assert ids(book.claim(limit=1)) == [first]
    book.finish(first, now=T0 + 1, defer=10.0, hold_type=True)
    assert book.store.type_controls()["echo"].blocked_until == T0 + 11
    claimed = book.claim(now=T0 + 2)
    assert ids(claimed) == [other]
    assert ids(book.claim(now=T0 + 2)) == []
    later = book.claim(now=T0 + 11)
    assert sorted(ids(later)) == sorted([first, second])


def test_a_paused_type_is_admitted_but_not_started_until_resumed(book):
    control = book.answer(SetPaused("echo", True, None))
    assert control.paused
    [job] = book.create(JobSpec("echo"))
    [other] = book.create(JobSpec("other"))
    assert ids(book.claim()) == [other]
    assert book.store.type_controls()["echo"].paused
    book.answer(SetPaused("echo", False, None))
    assert ids(book.claim()) == [job]
