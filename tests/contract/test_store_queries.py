"""Store contract: the queries the Registry runs inside a transaction (ready counts, claims,
due retries, expired leases, lease renewal)."""

from __future__ import annotations

import pytest

from workstream.jobs import states
from workstream.jobs.model import JobStatus

NOW = 1_700_000_000.0  # the conftest's jobs are built around this moment

PENDING = JobStatus.PENDING
PROCESSING = JobStatus.PROCESSING
COMPLETED = JobStatus.COMPLETED
FAILED = JobStatus.FAILED
CANCELLED = JobStatus.CANCELLED


def ids(found) -> list[str]:
    return [job.id for job in found]


@pytest.fixture
def mixed(jobs):
    """Jobs in every status, some due and some not. Returns them by name."""
    named = {
        "due_1": jobs.new(run_at=NOW - 10),
        "due_now": jobs.new(run_at=NOW),
        "not_due": jobs.new(run_at=NOW + 0.001),
        "due_2": jobs.new(run_at=NOW - 20),
        "later": jobs.new(run_at=NOW + 60),
        "processing": jobs.new(PROCESSING, run_at=NOW - 30),
        "completed": jobs.new(COMPLETED),
        "cancelled": jobs.new(CANCELLED),
        "retry_due": jobs.new(FAILED, run_at=NOW - 5),
        "retry_not_due": jobs.new(FAILED, run_at=NOW + 5),
        "failed_for_good": jobs.new(FAILED, run_at=None, finished_at=NOW - 1),
    }
    jobs.insert(*named.values())
    return named


# -- count_ready ------------------------------------------------------------------------


def test_count_ready_counts_only_pending_and_due(store, mixed):
    with store.transaction() as tx:
        assert tx.count_ready(NOW, 100) == 3  # due_1, due_now, due_2
        assert tx.count_ready(NOW - 15, 100) == 1
        assert tx.count_ready(NOW + 60, 100) == 5


@pytest.mark.parametrize(("limit", "expected"), [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3)])
def test_count_ready_stops_at_the_limit(store, mixed, limit, expected):
    with store.transaction() as tx:
        assert tx.count_ready(NOW, limit) == expected


def test_count_ready_of_an_empty_store(store):
    with store.transaction() as tx:
        assert tx.count_ready(NOW, 10) == 0


def test_count_ready_sees_the_transactions_own_writes(store, jobs):
    with store.transaction() as tx:
        tx.insert(jobs.new(run_at=NOW - 1))
        tx.insert(jobs.new(run_at=NOW + 1))
        assert tx.count_ready(NOW, 10) == 1


# -- claimable --------------------------------------------------------------------------


def test_claimable_orders_by_run_at_then_submission(store, jobs):
    first = jobs.new(run_at=NOW - 5)
    second = jobs.new(run_at=NOW - 10)
    third = jobs.new(run_at=NOW - 5)
    jobs.insert(first, second, third)
    fourth = jobs.add(run_at=NOW - 10)  # later transaction, same run_at as `second`
    fifth = jobs.add(run_at=NOW - 5)
    with store.transaction() as tx:
        assert ids(tx.claimable(NOW, 100)) == ids([second, fourth, first, third, fifth])


def test_claimable_excludes_not_due_and_non_pending(store, mixed):
    with store.transaction() as tx:
        assert ids(tx.claimable(NOW, 100)) == ids(
            [mixed["due_2"], mixed["due_1"], mixed["due_now"]]
        )


@pytest.mark.parametrize("limit", [0, 1, 2])
def test_claimable_respects_the_limit(store, mixed, limit):
    expected = [mixed["due_2"], mixed["due_1"], mixed["due_now"]][:limit]
    with store.transaction() as tx:
        assert ids(tx.claimable(NOW, limit)) == ids(expected)


def test_claimable_returns_whole_jobs(store, mixed):
    with store.transaction() as tx:
        assert tx.claimable(NOW, 1) == [mixed["due_2"]]


def test_claimed_jobs_are_no_longer_claimable(store, mixed):
    with store.transaction() as tx:
        for job in tx.claimable(NOW, 2):
            assert tx.update(states.claim(job, owner="node-a", now=NOW, lease=30), job)
        assert ids(tx.claimable(NOW, 100)) == [mixed["due_now"].id]
    with store.transaction() as tx:
        assert ids(tx.claimable(NOW, 100)) == [mixed["due_now"].id]
        assert tx.count_ready(NOW, 100) == 1


# -- next_run_at ------------------------------------------------------------------------


def test_next_run_at_is_the_earliest_job_not_yet_due_pending_or_awaiting_retry(store, mixed):
    with store.transaction() as tx:
        assert tx.next_run_at(NOW) == NOW + 0.001
        assert tx.next_run_at(NOW + 0.001) == NOW + 5  # retry_not_due
        assert tx.next_run_at(NOW + 5) == NOW + 60  # due exactly then: not "not yet due"
        assert tx.next_run_at(NOW + 60) is None


def test_next_run_at_of_an_empty_store_is_none(store, jobs):
    with store.transaction() as tx:
        assert tx.next_run_at(NOW) is None
    jobs.add(run_at=NOW - 1)
    jobs.add(FAILED, run_at=NOW - 5)  # a retry due already: not "not yet due"
    jobs.add(FAILED, run_at=None)  # failed for good
    with store.transaction() as tx:
        assert tx.next_run_at(NOW) is None


def test_next_run_at_counts_a_failed_jobs_next_attempt(store, jobs):
    jobs.add(FAILED, run_at=NOW + 10)
    with store.transaction() as tx:
        assert tx.next_run_at(NOW) == NOW + 10
    jobs.add(run_at=NOW + 20)
    jobs.add(FAILED, run_at=NOW + 5)
    with store.transaction() as tx:
        assert tx.next_run_at(NOW) == NOW + 5
        assert tx.next_run_at(NOW + 5) == NOW + 10
        assert tx.next_run_at(NOW + 10) == NOW + 20


# -- due_retries ------------------------------------------------------------------------


def test_due_retries_are_failed_jobs_whose_backoff_is_over(store, mixed, jobs):
    at_now = jobs.add(FAILED, run_at=NOW)
    with store.transaction() as tx:
        assert ids(tx.due_retries(NOW, 100)) == ids([mixed["retry_due"], at_now])
        assert ids(tx.due_retries(NOW + 5, 100)) == ids(
            [mixed["retry_due"], at_now, mixed["retry_not_due"]]
        )
        assert tx.due_retries(NOW - 6, 100) == []


def test_due_retries_never_include_jobs_failed_for_good(store, mixed):
    with store.transaction() as tx:
        found = tx.due_retries(NOW + 10**9, 100)
    assert mixed["failed_for_good"].id not in ids(found)
    assert all(job.status is FAILED and job.run_at is not None for job in found)


def test_due_retries_respect_the_limit_earliest_first(store, jobs):
    failed = [jobs.new(FAILED, run_at=NOW - n) for n in (3, 9, 1, 7, 5)]
    jobs.insert(*failed)
    with store.transaction() as tx:
        assert [job.run_at for job in tx.due_retries(NOW, 3)] == [NOW - 9, NOW - 7, NOW - 5]
        assert tx.due_retries(NOW, 0) == []


# -- expired_leases ---------------------------------------------------------------------


def test_expired_leases_are_processing_jobs_whose_lease_ran_out(store, jobs):
    expired = jobs.new(PROCESSING, lease_expires_at=NOW - 1)
    long_ago = jobs.new(PROCESSING, lease_expires_at=NOW - 500, owner="node-b")
    at_now = jobs.new(PROCESSING, lease_expires_at=NOW)
    alive = jobs.new(PROCESSING, lease_expires_at=NOW + 1)
    pending = jobs.new(PENDING, lease_expires_at=NOW - 100)  # not processing
    jobs.insert(expired, long_ago, at_now, alive, pending)
    with store.transaction() as tx:
        assert set(ids(tx.expired_leases(NOW, 100))) == {expired.id, long_ago.id}
        assert set(ids(tx.expired_leases(NOW + 0.5, 100))) == {
            expired.id,
            long_ago.id,
            at_now.id,
        }
        assert tx.expired_leases(NOW - 1000, 100) == []


def test_expired_leases_respect_the_limit(store, jobs):
    jobs.insert(*[jobs.new(PROCESSING, lease_expires_at=NOW - n) for n in range(1, 6)])
    with store.transaction() as tx:
        found = tx.expired_leases(NOW, 2)
        assert len(found) == 2
        assert all(job.lease_expires_at < NOW for job in found)
        assert tx.expired_leases(NOW, 0) == []


# -- processing -------------------------------------------------------------------------


def test_processing_lists_running_jobs_all_or_by_owner(store, jobs, mixed):
    mine = jobs.add(PROCESSING, owner="node-a")
    theirs = jobs.add(PROCESSING, owner="node-b")
    with store.transaction() as tx:
        assert set(ids(tx.processing())) == {mixed["processing"].id, mine.id, theirs.id}
        assert set(ids(tx.processing("node-a"))) == {mixed["processing"].id, mine.id}
        assert ids(tx.processing("node-b")) == [theirs.id]
        assert tx.processing("node-c") == []
        assert all(job.status is PROCESSING for job in tx.processing())


def test_processing_of_an_empty_store(store):
    with store.transaction() as tx:
        assert tx.processing() == []
        assert tx.processing("node-a") == []


# -- renew_leases -----------------------------------------------------------------------


def test_renew_leases_touches_only_processing_rows_of_that_owner_among_the_ids(store, jobs):
    mine_1 = jobs.new(PROCESSING, owner="node-a")
    mine_2 = jobs.new(PROCESSING, owner="node-a")
    mine_not_asked = jobs.new(PROCESSING, owner="node-a")
    theirs = jobs.new(PROCESSING, owner="node-b")
    pending = jobs.new(PENDING, owner="node-a", lease_expires_at=NOW)  # stale leftovers
    done = jobs.new(COMPLETED, owner="node-a", lease_expires_at=NOW)
    everything = [mine_1, mine_2, mine_not_asked, theirs, pending, done]
    jobs.insert(*everything)
    until = NOW + 1234.5
    asked = [mine_1.id, mine_2.id, theirs.id, pending.id, done.id, "no-such-job"]
    with store.transaction() as tx:
        assert tx.renew_leases("node-a", asked, until) == 2
        assert tx.get(mine_1.id).lease_expires_at == until
    renewed = {mine_1.id, mine_2.id}
    for job in everything:
        stored = store.get(job.id)
        if job.id in renewed:
            assert stored == job.replace(lease_expires_at=until)
        else:
            assert stored == job


def test_renew_leases_with_no_ids(store, jobs):
    running = jobs.add(PROCESSING)
    with store.transaction() as tx:
        assert tx.renew_leases("node-a", [], NOW + 99) == 0
    assert store.get(running.id) == running


def test_renew_leases_of_many_jobs(store, jobs):
    running = [jobs.new(PROCESSING, owner="node-a") for _ in range(1200)]
    jobs.insert(*running)
    with store.transaction() as tx:
        assert tx.renew_leases("node-a", [job.id for job in running], NOW + 77) == 1200
    with store.transaction() as tx:
        assert tx.expired_leases(NOW + 76, 2000) == []
        assert len(tx.expired_leases(NOW + 78, 2000)) == 1200


def test_renewed_lease_is_no_longer_expired(store, jobs):
    running = jobs.add(PROCESSING, lease_expires_at=NOW - 1)
    with store.transaction() as tx:
        assert ids(tx.expired_leases(NOW, 10)) == [running.id]
        assert tx.renew_leases("node-a", [running.id], NOW + 30) == 1
        assert tx.expired_leases(NOW, 10) == []
