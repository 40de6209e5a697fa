"""Store contract: reads outside transactions (list with cursors and filters, counts, ping),
from any thread."""

from __future__ import annotations

import threading

from workstream.jobs import states
from workstream.jobs.listing import JobFilter
from workstream.jobs.model import JobStatus
from workstream.store.base import Counts

NOW = 1_700_000_000.0  # the conftest's jobs are built around this moment

PENDING = JobStatus.PENDING
PROCESSING = JobStatus.PROCESSING
COMPLETED = JobStatus.COMPLETED
FAILED = JobStatus.FAILED
CANCELLED = JobStatus.CANCELLED

WAIT = 5.0  # bound for waits on other threads


def ids(found) -> list[str]:
    return [job.id for job in found]


def walk(store, page_size: int, **filters) -> tuple[list[str], list[int]]:
    """Follow next_after to the end. Returns every id and the size of each page."""
    seen: list[str] = []
    sizes: list[int] = []
    after = None
    for _ in range(10_000):
        page = store.list(JobFilter(order="oldest", limit=page_size, after=after, **filters))
        seen.extend(ids(page.jobs))
        sizes.append(len(page.jobs))
        if page.next_after is None:
            return seen, sizes
        after = page.next_after
    raise AssertionError("pagination never ended")


# -- list -------------------------------------------------------------------------------


def test_list_of_an_empty_store(store):
    page = store.list(JobFilter(order="oldest"))
    assert page.jobs == []
    assert page.next_after is None


def test_list_is_in_submission_order_across_transactions_and_updates(store, jobs):
    first = jobs.new(run_at=NOW + 50)
    second = jobs.new(run_at=NOW - 50)
    jobs.insert(first, second)
    third = jobs.add(run_at=NOW)
    claimed = states.claim(second, owner="node-a", now=NOW, lease=30)
    with store.transaction() as tx:
        assert tx.update(claimed, second)
    page = store.list(JobFilter(order="oldest"))
    assert page.jobs == [first, claimed, third]
    assert page.next_after is None


def test_list_walks_250_jobs_in_pages_of_100(store, jobs):
    everything = [jobs.new() for _ in range(250)]
    jobs.insert(*everything)
    seen, sizes = walk(store, 100)
    assert seen == ids(everything)
    assert sizes == [100, 100, 50]


def test_list_pages_return_whole_jobs(store, jobs):
    everything = [jobs.new(payload={"i": i}) for i in range(5)]
    jobs.insert(*everything)
    first = store.list(JobFilter(order="oldest", limit=2))
    assert first.jobs == everything[:2]
    second = store.list(JobFilter(order="oldest", limit=2, after=first.next_after))
    assert second.jobs == everything[2:4]
    third = store.list(JobFilter(order="oldest", limit=2, after=second.next_after))
    assert third.jobs == everything[4:]
    assert third.next_after is None


def test_a_full_last_page_has_no_next(store, jobs):
    jobs.insert(*[jobs.new() for _ in range(200)])
    first = store.list(JobFilter(order="oldest", limit=100))
    assert first.next_after is not None
    second = store.list(JobFilter(order="oldest", limit=100, after=first.next_after))
    assert len(second.jobs) == 100
    assert second.next_after is None


def test_after_none_starts_at_the_beginning(store, jobs):
    everything = [jobs.new() for _ in range(3)]
    jobs.insert(*everything)
    assert store.list(JobFilter(order="oldest", after=None)) == store.list(
        JobFilter(order="oldest")
    )
    assert store.list(JobFilter(order="oldest", after=None, limit=1)).jobs == everything[:1]


def test_list_limit(store, jobs):
    everything = [jobs.new() for _ in range(7)]
    jobs.insert(*everything)
    assert store.list(JobFilter(order="oldest", limit=3)).jobs == everything[:3]
    assert store.list(JobFilter(order="oldest", limit=7)).jobs == everything
    assert store.list(JobFilter(order="oldest", limit=7)).next_after is None
    assert store.list(JobFilter(order="oldest", limit=1000)).jobs == everything


def test_default_limit_is_100(store, jobs):
    jobs.insert(*[jobs.new() for _ in range(101)])
    page = store.list(JobFilter(order="oldest"))
    assert len(page.jobs) == 100
    assert page.next_after is not None


def test_cursor_stays_valid_when_jobs_are_added(store, jobs):
    early = [jobs.new() for _ in range(4)]
    jobs.insert(*early)
    first = store.list(JobFilter(order="oldest", limit=2))
    late = jobs.add()
    rest = store.list(JobFilter(order="oldest", limit=10, after=first.next_after))
    assert ids(rest.jobs) == ids([*early[2:], late])


def test_list_filters_by_status(store, jobs):
    by_status = {status: [] for status in JobStatus}
    made = []
    for n in range(20):
        status = list(JobStatus)[n % len(JobStatus)]
        job = jobs.new(status)
        by_status[status].append(job.id)
        made.append(job)
    jobs.insert(*made)
    for status, expected in by_status.items():
        assert ids(store.list(JobFilter(order="oldest", status=status)).jobs) == expected


def test_list_filters_by_type(store, jobs):
    made = [jobs.new(type="resize" if n % 3 == 0 else "echo") for n in range(12)]
    jobs.insert(*made)
    assert ids(store.list(JobFilter(order="oldest", job_type="resize")).jobs) == [
        j.id for j in made if j.type == "resize"
    ]
    assert ids(store.list(JobFilter(order="oldest", job_type="echo")).jobs) == [
        j.id for j in made if j.type == "echo"
    ]
    assert store.list(JobFilter(order="oldest", job_type="nothing")).jobs == []
    assert (
        store.list(JobFilter(order="oldest", job_type="ech")).jobs == []
    )  # exact match, not a prefix


def test_list_filters_combine(store, jobs):
    made = [
        jobs.new(FAILED, type="a"),
        jobs.new(FAILED, type="b"),
        jobs.new(PENDING, type="a"),
        jobs.new(FAILED, type="a"),
    ]
    jobs.insert(*made)
    assert ids(store.list(JobFilter(order="oldest", status=FAILED, job_type="a")).jobs) == [
        made[0].id,
        made[3].id,
    ]


def test_filtered_pagination_walks_every_match_once(store, jobs):
    made = [jobs.new(type="even" if n % 2 == 0 else "odd") for n in range(250)]
    jobs.insert(*made)
    seen, sizes = walk(store, 100, job_type="even")
    assert seen == [job.id for job in made if job.type == "even"]
    assert sizes == [100, 25]
    seen, sizes = walk(store, 40, job_type="odd", status=PENDING)
    assert seen == [job.id for job in made if job.type == "odd"]
    assert sizes == [40, 40, 40, 5]


# -- counts -----------------------------------------------------------------------------


def test_counts_of_an_empty_store(store):
    counts = store.counts(NOW)
    assert counts.ready == 0
    assert {k: v for k, v in counts.by_status.items() if v} == {}
    assert all(counts.of(status) == 0 for status in JobStatus)


def test_counts_ready_and_by_status(store, jobs):
    jobs.insert(
        jobs.new(run_at=NOW - 1),
        jobs.new(run_at=NOW),
        jobs.new(run_at=NOW + 1),
        jobs.new(PROCESSING),
        jobs.new(PROCESSING),
        jobs.new(PROCESSING),
        jobs.new(COMPLETED),
        jobs.new(FAILED, run_at=NOW - 1),
        jobs.new(FAILED, run_at=None),
        jobs.new(CANCELLED),
    )
    counts = store.counts(NOW)
    assert isinstance(counts, Counts)
    assert counts.ready == 2
    assert {k: v for k, v in counts.by_status.items() if v} == {
        "pending": 3,
        "processing": 3,
        "completed": 1,
        "failed": 2,
        "cancelled": 1,
    }
    assert counts.of(PENDING) == 3
    assert counts.of(FAILED) == 2
    assert store.counts(NOW + 1).ready == 3
    assert store.counts(NOW - 10).ready == 0


def test_counts_follow_committed_changes_only(store, jobs):
    pending = jobs.add(run_at=NOW - 1)
    with store.transaction() as tx:
        assert tx.update(states.claim(pending, owner="node-a", now=NOW, lease=30), pending)
        assert store.counts(NOW).of(PENDING) == 1  # not committed yet
    counts = store.counts(NOW)
    assert (counts.ready, counts.of(PENDING), counts.of(PROCESSING)) == (0, 0, 1)


def test_ping_on_an_open_store(store):
    assert store.ping() is None


# -- reads from other threads -----------------------------------------------------------


def test_reads_from_another_thread_see_committed_data(store, jobs):
    job = jobs.add()
    results: dict[str, object] = {}

    def read() -> None:
        results["get"] = store.get(job.id)
        results["list"] = store.list(JobFilter(order="oldest")).jobs
        results["ready"] = store.counts(NOW).ready

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert results == {"get": job, "list": [job], "ready": 1}


def test_reads_from_another_thread_do_not_wait_for_an_open_transaction(store, jobs):
    committed = jobs.add()
    uncommitted = jobs.new()
    results: dict[str, object] = {}
    done = threading.Event()

    def read() -> None:
        results["committed"] = store.get(committed.id)
        results["uncommitted"] = store.get(uncommitted.id)
        results["listed"] = ids(store.list(JobFilter(order="oldest")).jobs)
        results["counts"] = store.counts(NOW).of(PENDING)
        done.set()

    reader = threading.Thread(target=read)
    with store.transaction() as tx:
        tx.insert(uncommitted)
        reader.start()
        finished_during_transaction = done.wait(1.0)
    reader.join(WAIT)
    assert not reader.is_alive()
    assert finished_during_transaction
    assert results == {
        "committed": committed,
        "uncommitted": None,
        "listed": [committed.id],
        "counts": 1,
    }


def test_a_page_of_large_jobs_stops_at_the_byte_budget(store, jobs):
    big = "x" * 10_000
    added = [jobs.add(payload={"blob": big}) for _ in range(5)]
    page = store.list(JobFilter(order="oldest", limit=100, max_bytes=25_000))
    assert ids(page.jobs) == ids(added[:2])  # a third would pass 25 kB
    assert page.next_after is not None
    rest = store.list(JobFilter(order="oldest", limit=100, after=page.next_after, max_bytes=25_000))
    assert ids(rest.jobs) == ids(added[2:4])
    one = store.list(JobFilter(order="oldest", limit=100, max_bytes=10))  # never fewer than one job
    assert ids(one.jobs) == ids(added[:1])
    assert (
        store.list(JobFilter(order="oldest", limit=100)).next_after is None
    )  # no budget: everything
