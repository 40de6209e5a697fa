"""Store contract: retention deletes (`delete_finished`), the delayed-job count behind
MAX_SCHEDULED_JOBS (`count_scheduled`), and the schedules' fired slots."""

from __future__ import annotations

import pytest

from workstream.jobs.model import JobStatus
from workstream.jobs.schedules import FiredSlot

NOW = 1_700_000_000.0

COMPLETED = JobStatus.COMPLETED
CANCELLED = JobStatus.CANCELLED
FAILED = JobStatus.FAILED
PENDING = JobStatus.PENDING
PROCESSING = JobStatus.PROCESSING


def _ids(store):
    return {job.id for job in store.list(_all()).jobs}


def _all():
    from workstream.jobs.listing import JobFilter

    return JobFilter(limit=1000)


def test_delete_finished_deletes_old_finished_jobs_and_nothing_else(store, jobs):
    old_done = jobs.add(COMPLETED, finished_at=NOW - 500)
    old_cancelled = jobs.add(CANCELLED, finished_at=NOW - 500)
    old_failed_for_good = jobs.add(FAILED, run_at=None, finished_at=NOW - 500)
    kept = [
        jobs.add(COMPLETED, finished_at=NOW - 50),  # too recent
        jobs.add(CANCELLED, finished_at=NOW - 50),
        jobs.add(FAILED, run_at=None, finished_at=NOW - 150),  # failed keep longer
        jobs.add(FAILED, run_at=NOW - 5000),  # failed, retry pending: never deleted
        jobs.add(PENDING, run_at=NOW - 5000),
        jobs.add(PROCESSING),
    ]
    with store.transaction() as tx:
        deleted = tx.delete_finished(completed_before=NOW - 100, failed_before=NOW - 200, limit=100)
    assert sorted(d.id for d in deleted) == sorted(
        [old_done.id, old_cancelled.id, old_failed_for_good.id]
    )
    assert {d.type for d in deleted} == {"echo"}
    assert _ids(store) == {job.id for job in kept}
    assert store.get(old_done.id) is None
    assert store.counts(NOW).by_status.get("completed") == 1


def test_delete_finished_is_bounded_and_oldest_first(store, jobs):
    ended = [jobs.add(COMPLETED, finished_at=NOW - 1000 + n) for n in (5, 1, 4, 2, 3)]
    with store.transaction() as tx:
        first = tx.delete_finished(completed_before=NOW, failed_before=None, limit=2)
    by_end = sorted(ended, key=lambda job: job.finished_at)
    # The two that ended first (RETURNING gives no order).
    assert sorted(d.id for d in first) == sorted([by_end[0].id, by_end[1].id])
    with store.transaction() as tx:
        rest = tx.delete_finished(completed_before=NOW, failed_before=None, limit=10)
    assert sorted(d.id for d in rest) == sorted(job.id for job in by_end[2:])
    assert _ids(store) == set()


def test_none_keeps_for_ever(store, jobs):
    done = jobs.add(COMPLETED, finished_at=NOW - 10**6)
    failed = jobs.add(FAILED, run_at=None, finished_at=NOW - 10**6)
    with store.transaction() as tx:
        assert tx.delete_finished(completed_before=None, failed_before=None, limit=10) == []
        assert [
            d.id for d in tx.delete_finished(completed_before=None, failed_before=NOW, limit=10)
        ] == [failed.id]
    assert _ids(store) == {done.id}


def test_a_rolled_back_deletion_deletes_nothing(store, jobs):
    done = jobs.add(COMPLETED, finished_at=NOW - 500)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        assert len(tx.delete_finished(completed_before=NOW, failed_before=None, limit=5)) == 1
        assert tx.get(done.id) is None
        raise RuntimeError("roll back")
    assert store.get(done.id) is not None


def test_count_scheduled_counts_delayed_pending_jobs_only(store, jobs):
    for delay in (10, 20, 30):
        jobs.add(PENDING, run_at=NOW + delay)
    jobs.add(PENDING, run_at=NOW - 1)  # due: not scheduled
    jobs.add(FAILED, run_at=NOW + 50)  # a retry's backoff: not a scheduled job
    with store.transaction() as tx:
        assert tx.count_scheduled(NOW, 100) == 3
        assert tx.count_scheduled(NOW, 2) == 2  # counts no further than the limit
        assert tx.count_scheduled(NOW + 15, 100) == 2
        tx.insert(jobs.new(PENDING, run_at=NOW + 100))
        assert tx.count_scheduled(NOW, 100) == 4  # sees its own inserts


def test_fired_slots_are_recorded_and_never_move_back(store):
    assert store.fired_slots() == []
    with store.transaction() as tx:
        assert tx.last_slot("nightly") is None
        tx.record_slot(FiredSlot("nightly", NOW, "job-1", NOW + 0.5))
        assert tx.last_slot("nightly") == NOW
    with store.transaction() as tx:
        tx.record_slot(FiredSlot("nightly", NOW - 60, "job-0", NOW + 1))  # older: ignored
        tx.record_slot(FiredSlot("hourly", NOW - 3600, None, NOW + 1))
    assert store.fired_slots() == [
        FiredSlot("hourly", NOW - 3600, None, NOW + 1),
        FiredSlot("nightly", NOW, "job-1", NOW + 0.5),
    ]
    with store.transaction() as tx:
        tx.record_slot(FiredSlot("nightly", NOW + 60, "job-2", NOW + 61))
        assert tx.last_slot("nightly") == NOW + 60
    assert store.fired_slots()[1] == FiredSlot("nightly", NOW + 60, "job-2", NOW + 61)


def test_a_rolled_back_slot_is_not_recorded(store):
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.record_slot(FiredSlot("nightly", NOW, "job-1", NOW))
        raise RuntimeError("roll back")
    assert store.fired_slots() == []
    with store.transaction() as tx:
        assert tx.last_slot("nightly") is None
