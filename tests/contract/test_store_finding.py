"""Store contract: finding jobs (issue 14). Newest first by default, oldest first on
request, both walked with cursors; filters by status, type, time range, id prefix,
idempotency key and text in the error; capped counts; the console's failure groups and
jobs finished per minute."""

from __future__ import annotations

import pytest

from workstream.jobs.listing import JobFilter
from workstream.jobs.model import JobStatus
from workstream.store.sqlite import store as sqlite_store

NOW = 1_700_000_000.0  # the conftest's jobs are built around this moment
PENDING = JobStatus.PENDING
COMPLETED = JobStatus.COMPLETED
FAILED = JobStatus.FAILED


def ids(found) -> list[str]:
    return [job.id for job in found]


def walk(store, page_size: int, **filters) -> list[str]:
    """Every id the filter selects, page by page, following the cursor to the end."""
    seen: list[str] = []
    after = None
    for _ in range(1000):
        page = store.list(JobFilter(limit=page_size, after=after, **filters))
        seen += ids(page.jobs)
        if page.next_after is None:
            return seen
        assert len(page.jobs) == page_size
        after = page.next_after
    raise AssertionError("the cursor never reached the end")


@pytest.fixture(params=["index", "scan"])
def way(request, store_kind, monkeypatch) -> str:
    """SQLite picks between a filter's own index and a walk along the listing order by a
    capped count: run the filters both ways (the other stores do not care)."""
    if request.param == "scan":
        if store_kind != "sqlite":
            pytest.skip("only SQLite chooses its way by a count")
        monkeypatch.setattr(sqlite_store, "FEW", 1)
    return request.param


def test_newest_first_by_default_and_oldest_first_on_request(store, jobs):
    made = [jobs.add() for _ in range(5)]

    assert ids(store.list(JobFilter()).jobs) == ids(reversed(made))
    assert ids(store.list(JobFilter(order="oldest")).jobs) == ids(made)


def test_the_order_is_by_creation_time_then_submission(store, jobs):
    late = jobs.add(created_at=NOW + 50)
    early = jobs.add(created_at=NOW - 50)
    tie_one = jobs.add(created_at=NOW)
    tie_two = jobs.add(created_at=NOW)

    expected = [late.id, tie_two.id, tie_one.id, early.id]
    assert ids(store.list(JobFilter()).jobs) == expected
    assert ids(store.list(JobFilter(order="oldest")).jobs) == expected[::-1]
    for size in (1, 2, 3):
        assert walk(store, size) == expected
        assert walk(store, size, order="oldest") == expected[::-1]


def test_cursors_walk_every_job_once_in_both_orders(store, jobs):
    made = [jobs.new(created_at=NOW + (n // 3)) for n in range(25)]  # ties in threes
    jobs.insert(*made)

    assert walk(store, 7) == ids(reversed(made))
    assert walk(store, 7, order="oldest") == ids(made)
    first = store.list(JobFilter(limit=10))
    assert first.next_after == (made[15].created_at, first.next_after[1])


def test_a_newest_first_cursor_does_not_show_jobs_added_after_the_first_page(store, jobs):
    made = [jobs.add() for _ in range(4)]
    first = store.list(JobFilter(limit=2))
    jobs.add()  # newer: above the cursor
    rest = store.list(JobFilter(limit=10, after=first.next_after))

    assert ids(first.jobs) + ids(rest.jobs) == ids(reversed(made))
    assert rest.next_after is None


def test_filter_by_status_and_type_in_both_orders(store, jobs):
    made = [
        jobs.add(FAILED, type="a"),
        jobs.add(PENDING, type="a"),
        jobs.add(FAILED, type="b"),
        jobs.add(FAILED, type="a"),
    ]
    wanted = [made[0].id, made[3].id]

    assert walk(store, 1, status=FAILED, job_type="a") == wanted[::-1]
    assert walk(store, 1, status=FAILED, job_type="a", order="oldest") == wanted
    assert walk(store, 2, job_type="b") == [made[2].id]


def test_filter_by_creation_time_range(store, jobs):
    made = [jobs.add(created_at=NOW + n) for n in range(10)]

    inside = walk(store, 2, created_after=NOW + 3, created_before=NOW + 7)
    assert inside == ids(reversed(made[3:7]))  # from inclusive, to exclusive
    assert walk(store, 3, created_after=NOW + 8) == ids(reversed(made[8:]))
    assert walk(store, 3, created_before=NOW + 2, order="oldest") == ids(made[:2])
    assert store.list(JobFilter(created_after=NOW + 5, created_before=NOW + 5)).jobs == []
    assert walk(store, 2, created_after=NOW + 3, status=PENDING, order="oldest") == ids(made[3:])


def test_filter_by_id_prefix(store, jobs, way):
    made = [
        jobs.new(id=f"{prefix}-0000-4000-8000-{n:012d}")
        for n, prefix in enumerate(["abcd0001", "abcd0002", "abce0001", "ffff0001", "abcd1234"])
    ]
    jobs.insert(*made)

    assert walk(store, 1, id_prefix="abcd") == [made[4].id, made[1].id, made[0].id]
    assert walk(store, 2, id_prefix="abc", order="oldest") == [*ids(made[:3]), made[4].id]
    assert walk(store, 2, id_prefix=made[3].id) == [made[3].id]
    assert walk(store, 2, id_prefix="f") == [made[3].id]
    assert store.list(JobFilter(id_prefix="0")).jobs == []


def test_filter_by_idempotency_key(store, jobs):
    keyed = jobs.add(idempotency_key="order-17")
    jobs.add(idempotency_key="order-170")
    jobs.add()

    assert ids(store.list(JobFilter(idempotency_key="order-17")).jobs) == [keyed.id]
    assert store.list(JobFilter(idempotency_key="order-1")).jobs == []


def test_filter_by_text_in_the_error(store, jobs, way):
    made = [
        jobs.add(FAILED, last_error="RuntimeError: Disk FULL on /dev/sda1"),
        jobs.add(FAILED, last_error="ValueError: bad input"),
        jobs.add(COMPLETED, last_error="OSError: disk full (retried, then it worked)"),
        jobs.add(PENDING),
        jobs.add(FAILED, last_error="KeyError: 'disk'"),
        jobs.add(FAILED, last_error="100% _done_ \\ here \u00e9t\u00e9"),
    ]

    assert walk(store, 1, error="disk full") == [made[2].id, made[0].id]  # any case
    assert walk(store, 5, error="DISK", order="oldest") == [made[0].id, made[2].id, made[4].id]
    assert walk(store, 5, error="disk full", status=FAILED) == [made[0].id]
    assert walk(store, 5, error="0% _") == [made[5].id]  # % and _ are text, not wildcards
    assert walk(store, 5, error="_ \\ h") == [made[5].id]
    assert walk(store, 5, error="\u00e9t\u00e9") == [made[5].id]
    assert walk(store, 5, error="ValueError: bad input") == [made[1].id]
    assert store.list(JobFilter(error="nothing like it")).jobs == []
    assert store.list(JobFilter(error="0%_")).jobs == []


def test_the_error_filter_follows_changes_of_the_error(store, jobs):
    job = jobs.add(FAILED, last_error="RuntimeError: first trouble")
    with store.transaction() as tx:
        tx.update(job.replace(last_error="ValueError: second trouble"), job)

    assert store.list(JobFilter(error="first")).jobs == []
    assert ids(store.list(JobFilter(error="second")).jobs) == [job.id]


def test_count_is_capped_and_ignores_the_position(store, jobs, way):
    for n in range(6):
        jobs.add(FAILED if n % 2 else PENDING, last_error="RuntimeError: boom" if n % 2 else None)

    assert store.count(JobFilter(), 100) == 6
    assert store.count(JobFilter(), 4) == 4
    assert store.count(JobFilter(status=FAILED), 100) == 3
    assert store.count(JobFilter(error="boom", limit=1, after=(NOW + 10_000, 10**9)), 100) == 3
    assert store.count(JobFilter(error="boom"), 2) == 2
    assert store.count(JobFilter(job_type="nothing"), 100) == 0
    assert store.count(JobFilter(id_prefix="00000000"), 5) == 5


def test_failure_groups_count_jobs_failed_for_good_by_type_and_error_class(store, jobs):
    def failed(job_type, error_class, finished_at, **more):
        return jobs.add(
            FAILED,
            type=job_type,
            error_class=error_class,
            last_error=f"{error_class}: x",
            run_at=None,
            finished_at=finished_at,
            **more,
        )

    failed("resize", "RuntimeError", NOW + 1)
    failed("resize", "RuntimeError", NOW + 5)
    failed("resize", "RuntimeError", NOW + 3)
    failed("resize", "TimeoutError", NOW + 2)
    failed("email", "RuntimeError", NOW + 4)
    jobs.add(FAILED, type="resize", error_class="RuntimeError", run_at=NOW + 100)  # will retry
    jobs.add(COMPLETED, type="resize", error_class="RuntimeError")  # failed, then worked

    groups = store.failure_groups(50)
    assert [(g.job_type, g.error_class, g.count, g.latest_at) for g in groups] == [
        ("resize", "RuntimeError", 3, NOW + 5),
        ("email", "RuntimeError", 1, NOW + 4),
        ("resize", "TimeoutError", 1, NOW + 2),
    ]
    assert len(store.failure_groups(1)) == 1


def test_jobs_finished_per_minute(store, jobs):
    minute = 60 * (NOW // 60)
    jobs.add(COMPLETED, finished_at=minute + 1)
    jobs.add(COMPLETED, finished_at=minute + 59)
    jobs.add(COMPLETED, finished_at=minute + 61)
    jobs.add(FAILED, run_at=None, finished_at=minute + 70)
    jobs.add(COMPLETED, finished_at=minute - 1)  # before the window
    jobs.add(JobStatus.CANCELLED, finished_at=minute + 2)  # not a completion or a failure

    rows = sorted(store.finished_per_minute(minute))
    assert rows == [
        (minute, "completed", 2),
        (minute + 60, "completed", 1),
        (minute + 60, "failed", 1),
    ]
