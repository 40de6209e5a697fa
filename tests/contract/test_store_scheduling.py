"""Store contract: the scheduling queries (issue 13): types with pending jobs, claims per
type in priority order with aging, running jobs of a type, the per-type control rows."""

from __future__ import annotations

import pytest

from workstream.jobs import states
from workstream.jobs.model import JobStatus
from workstream.jobs.types import TypeControl

NOW = 1_700_000_000.0

PENDING = JobStatus.PENDING
PROCESSING = JobStatus.PROCESSING
COMPLETED = JobStatus.COMPLETED


def ids(found) -> list[str]:
    return [job.id for job in found]


def test_pending_types_lists_each_type_with_pending_jobs_once(store, jobs):
    jobs.insert(
        jobs.new(type="b"),
        jobs.new(type="a"),
        jobs.new(type="b", run_at=NOW + 100),  # delayed still counts: one probe per type
        jobs.new(PROCESSING, type="c"),
        jobs.new(COMPLETED, type="d"),
        jobs.new(type="a"),
    )
    with store.transaction() as tx:
        assert tx.pending_types() == {"a": TypeControl("a"), "b": TypeControl("b")}
        tx.save_type(TypeControl("b", paused=True, window_start=NOW, window_count=2))
        tx.save_type(TypeControl("d", paused=True))  # no pending job: not listed
        assert tx.pending_types() == {
            "a": TypeControl("a"),
            "b": TypeControl("b", paused=True, window_start=NOW, window_count=2),
        }


def test_pending_types_of_an_empty_store(store):
    with store.transaction() as tx:
        assert tx.pending_types() == {}


def test_claimable_by_type_orders_by_priority_then_due_time(store, jobs):
    low_old = jobs.new(priority=9, run_at=NOW - 50)
    high_new = jobs.new(priority=0, run_at=NOW - 1)
    mid_a = jobs.new(priority=5, run_at=NOW - 10)
    mid_b = jobs.new(priority=5, run_at=NOW - 20)
    mid_tie = jobs.new(priority=5, run_at=NOW - 10)  # same time as mid_a: submission order
    delayed = jobs.new(priority=0, run_at=NOW + 1)
    other = jobs.new(type="other", priority=0)
    jobs.insert(low_old, high_new, mid_a, mid_b, mid_tie, delayed, other)
    with store.transaction() as tx:
        found = tx.claimable_by_type(NOW, {"echo": 10})
    assert list(found) == ["echo"]
    assert ids(found["echo"]) == ids([high_new, mid_b, mid_a, mid_tie, low_old])


def test_claimable_by_type_puts_aged_jobs_first_oldest_first(store, jobs):
    aged_low = jobs.new(priority=9, run_at=NOW - 400)
    aged_lower = jobs.new(priority=8, run_at=NOW - 500)
    high = jobs.new(priority=0, run_at=NOW - 10)
    young_low = jobs.new(priority=9, run_at=NOW - 100)
    jobs.insert(aged_low, aged_lower, high, young_low)
    with store.transaction() as tx:
        found = tx.claimable_by_type(NOW, {"echo": 10}, aged_before=NOW - 300)
        assert ids(found["echo"]) == ids([aged_lower, aged_low, high, young_low])
        # Each type gets at most its quota, aged ones first.
        assert ids(tx.claimable_by_type(NOW, {"echo": 2}, NOW - 300)["echo"]) == ids(
            [aged_lower, aged_low]
        )


def test_claimable_by_type_gives_each_type_its_own_quota(store, jobs):
    a = [jobs.new(type="a", run_at=NOW - n) for n in range(5)]
    b = [jobs.new(type="b", run_at=NOW - n) for n in range(5)]
    jobs.insert(*a, *b)
    with store.transaction() as tx:
        found = tx.claimable_by_type(NOW, {"a": 2, "b": 0, "c": 3, "b2": 1})
    assert list(found) == ["a"]
    assert ids(found["a"]) == ids([a[4], a[3]])


def test_claimable_by_type_finds_other_types_behind_a_big_backlog(store, jobs):
    # Ten thousand would be the real case; the index probe per type makes the size moot.
    jobs.insert(*[jobs.new(type="busy", run_at=NOW - 500) for _ in range(300)])
    quiet = jobs.add(type="quiet", run_at=NOW - 1)
    with store.transaction() as tx:
        assert ids(tx.claimable_by_type(NOW, {"quiet": 5})["quiet"]) == [quiet.id]


def test_claimable_by_type_sees_own_claims(store, jobs):
    first, second = jobs.new(), jobs.new()
    jobs.insert(first, second)
    with store.transaction() as tx:
        [job, _] = tx.claimable_by_type(NOW, {"echo": 2})["echo"]
        assert tx.update(states.claim(job, owner="me", now=NOW, lease=30), job)
        assert ids(tx.claimable_by_type(NOW, {"echo": 2})["echo"]) == [second.id]


def test_running_lists_the_processing_jobs_of_a_type(store, jobs):
    mine = jobs.new(PROCESSING, type="resize")
    jobs.insert(mine, jobs.new(type="resize"), jobs.new(PROCESSING, type="other"))
    with store.transaction() as tx:
        assert tx.running("resize") == [mine]
        assert tx.running("nothing") == []


def test_type_controls_default_then_saved_then_read_back(store):
    with store.transaction() as tx:
        assert tx.type_controls() == {}
        assert tx.lock_types(["a", "b"]) == {"a": TypeControl("a"), "b": TypeControl("b")}
        tx.save_type(TypeControl("a", paused=True))
        tx.save_type(TypeControl("b", blocked_until=NOW + 5, window_start=NOW, window_count=3))
        assert tx.lock_types(["a"]) == {"a": TypeControl("a", paused=True)}
    assert store.type_controls() == {
        "a": TypeControl("a", paused=True),
        "b": TypeControl("b", blocked_until=NOW + 5, window_start=NOW, window_count=3),
    }
    with store.transaction() as tx:
        tx.save_type(TypeControl("a", paused=False), wake=True)
    assert store.type_controls()["a"].paused is False


def test_a_rolled_back_control_is_not_kept(store):
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.save_type(TypeControl("a", paused=True))
        raise RuntimeError("abort")
    assert store.type_controls() == {}


def test_counts_by_type(store, jobs):
    jobs.insert(
        jobs.new(type="a"),
        jobs.new(type="a"),
        jobs.new(PROCESSING, type="a"),
        jobs.new(COMPLETED, type="b"),
    )
    assert store.counts_by_type() == {
        "a": {"pending": 2, "processing": 1},
        "b": {"completed": 1},
    }


def test_priority_is_stored_and_read_back(store, jobs):
    job = jobs.add(priority=0)
    assert store.get(job.id) == job
    assert store.get(job.id).priority == 0


# -- the claim's queries are index-backed (the plans, on the real engines) ----------------


def _plan(store, store_kind: str, name: str, params: tuple) -> str:
    if store_kind == "sqlite":
        import sqlite3

        from workstream.store.sqlite.queries import SQL

        conn = sqlite3.connect(store.path)
        try:
            rows = conn.execute("EXPLAIN QUERY PLAN " + SQL[name], params).fetchall()
        finally:
            conn.close()
        return "\n".join(row[3] for row in rows)
    import psycopg

    from workstream.store.postgres.queries import SQL as PG_SQL

    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")  # a tiny table: ask what it *can* use
        rows = conn.execute("EXPLAIN " + PG_SQL[name], params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_claim_queries_use_the_scheduling_indexes(store, store_kind, jobs):
    if store_kind == "memory":
        pytest.skip("no query planner")
    jobs.insert(*[jobs.new(type=f"t{n % 3}", priority=n % 10) for n in range(30)])
    if store_kind == "sqlite":
        claim = _plan(store, store_kind, "claimable_of_type", ("t1", NOW - 300, 5, "t1", NOW, 5))
        assert "USING INDEX jobs_pending_by_type " in claim and "TEMP B-TREE" not in claim
        assert "jobs_pending_by_type_age" in claim
    else:
        claim = _plan(
            store, store_kind, "claimable_by_type", (["t1"], [5], NOW - 300, ["t1"], [5], NOW)
        )
        assert "jobs_pending_by_type_age" in claim and "jobs_pending_by_type " in claim
        assert "Sort" not in claim
    types = _plan(store, store_kind, "pending_types", ())
    assert "jobs_pending_by_type" in types
    running = _plan(store, store_kind, "running_of_type", ("t1",))
    assert "jobs_processing_by_type" in running


def test_count_running_counts_the_processing_jobs_of_a_type(store, jobs):
    jobs.insert(
        jobs.new(PROCESSING, type="resize"),
        jobs.new(PROCESSING, type="resize"),
        jobs.new(type="resize"),
        jobs.new(PROCESSING, type="other"),
    )
    with store.transaction() as tx:
        assert tx.count_running("resize") == 2
        assert tx.count_running("nothing") == 0
