"""Store contract: transactions, conditional updates (row-level fencing), idempotency keys,
and faithful storage of every field."""

from __future__ import annotations

import json

import pytest

from workstream.errors import Conflict
from workstream.jobs import states
from workstream.jobs.listing import JobFilter
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.retry import RetryPolicy

NOW = 1_700_000_000.0  # the conftest's jobs are built around this moment
OWNER = "node-a"

PENDING = JobStatus.PENDING
PROCESSING = JobStatus.PROCESSING
FAILED = JobStatus.FAILED


class Boom(Exception):
    pass


# -- insert and get ---------------------------------------------------------------------


def test_get_of_an_unknown_id_is_none(store):
    assert store.get("no-such-job") is None
    with store.transaction() as tx:
        assert tx.get("no-such-job") is None


def test_inserted_job_is_visible_inside_its_transaction_and_after_commit(store, jobs):
    job = jobs.new()
    with store.transaction() as tx:
        tx.insert(job)
        assert tx.get(job.id) == job
        assert store.get(job.id) is None  # not committed yet
    assert store.get(job.id) == job
    with store.transaction() as tx:
        assert tx.get(job.id) == job


def test_every_field_round_trips(store, jobs):
    job = jobs.new(
        PROCESSING,
        type="resize_image:v2",
        payload={"w": 640, "h": 480.5, "tags": ["a", "b"]},
        attempts=5,
        retry_base=3,
        max_retries=7,
        last_error="attempt 4 failed: ValueError('x')",
        result=None,
        started_at=NOW - 3.25,
        owner="node-b",
        lease_expires_at=NOW + 29.75,
        idempotency_key="key-1",
        request_hash="sha256:abc",
    )
    jobs.insert(job)
    assert store.get(job.id) == job


def test_a_transaction_that_raises_rolls_everything_back(store, jobs):
    existing = jobs.add()
    fresh = jobs.new()
    claimed = states.claim(existing, owner=OWNER, now=NOW, lease=30)
    with pytest.raises(Boom), store.transaction() as tx:
        tx.insert(fresh)
        assert tx.update(claimed, existing)
        raise Boom
    assert store.get(fresh.id) is None
    assert store.get(existing.id) == existing
    with store.transaction() as tx:
        assert tx.get(fresh.id) is None
        assert tx.get(existing.id) == existing
    assert store.list(JobFilter(order="oldest")).jobs == [existing]
    assert store.counts(NOW).by_status == {"pending": 1}


def test_the_store_works_after_a_rolled_back_transaction(store, jobs):
    with pytest.raises(Boom), store.transaction() as tx:
        tx.insert(jobs.new())
        raise Boom
    job = jobs.add()
    assert store.get(job.id) == job


def test_duplicate_id_is_refused_and_nothing_of_the_transaction_is_kept(store, jobs):
    first = jobs.add()
    other = jobs.new()
    with pytest.raises(Conflict), store.transaction() as tx:
        tx.insert(other)
        tx.insert(jobs.new(id=first.id, payload="impostor"))
    assert store.get(first.id) == first
    assert store.get(other.id) is None


# -- conditional update (fencing at the row level) ----------------------------------------


def test_update_applies_when_status_attempts_and_owner_match(store, jobs):
    pending = jobs.add()
    claimed = states.claim(pending, owner=OWNER, now=NOW, lease=30)
    with store.transaction() as tx:
        assert tx.update(claimed, pending) is True
        assert tx.get(pending.id) == claimed
    assert store.get(pending.id) == claimed


def test_update_writes_every_changing_field(store, jobs):
    running = jobs.add(PROCESSING, attempts=2, retry_base=1, last_error="first")
    done = states.complete(
        running, attempt=2, owner=OWNER, result={"out": [1, "two", None]}, now=NOW + 5.5
    )
    with store.transaction() as tx:
        assert tx.update(done, running)
    assert store.get(running.id) == done
    failed = jobs.add(PROCESSING)
    policy = RetryPolicy(base=2.0, cap=60.0, uniform=lambda low, high: 1.0)
    after = states.fail(failed, attempt=1, owner=OWNER, error="bad", now=NOW, policy=policy)
    with store.transaction() as tx:
        assert tx.update(after, failed)
    assert store.get(failed.id) == after


@pytest.mark.parametrize(
    "stale",
    [
        {"status": JobStatus.PENDING},
        {"attempts": 2},
        {"attempts": 0},
        {"owner": "node-b"},
        {"owner": None},
    ],
    ids=["status", "attempts-ahead", "attempts-behind", "other-owner", "no-owner"],
)
def test_update_refuses_when_expected_does_not_match(store, jobs, stale):
    running = jobs.add(PROCESSING)
    done = states.complete(running, attempt=1, owner=OWNER, result=1, now=NOW)
    with store.transaction() as tx:
        assert tx.update(done, running.replace(**stale)) is False
        assert tx.get(running.id) == running
    assert store.get(running.id) == running


def test_update_matches_no_owner_against_no_owner(store, jobs):
    pending = jobs.add()
    assert pending.owner is None
    cancelled = states.cancel(pending, now=NOW)
    with store.transaction() as tx:
        assert tx.update(cancelled, pending.replace(owner="node-a")) is False
        assert tx.update(cancelled, pending) is True
    assert store.get(pending.id) == cancelled


def test_update_only_compares_status_attempts_and_owner(store, jobs):
    pending = jobs.add(last_error="old", run_at=NOW - 5)
    claimed = states.claim(pending, owner=OWNER, now=NOW, lease=30)
    expected = pending.replace(last_error="different", run_at=NOW + 999, updated_at=0.0)
    with store.transaction() as tx:
        assert tx.update(claimed, expected) is True
    assert store.get(pending.id) == claimed


def test_update_of_an_unknown_job_is_refused(store, jobs):
    ghost = jobs.new()
    with store.transaction() as tx:
        assert tx.update(states.cancel(ghost, now=NOW), ghost) is False
        assert tx.get(ghost.id) is None
    assert store.get(ghost.id) is None


def test_second_writer_with_a_stale_view_loses(store, jobs):
    pending = jobs.add()
    # Two writers read the same row; the first claim wins, the second is fenced off.
    mine = states.claim(pending, owner="node-a", now=NOW, lease=30)
    theirs = states.claim(pending, owner="node-b", now=NOW, lease=30)
    with store.transaction() as tx:
        assert tx.update(mine, pending)
    with store.transaction() as tx:
        assert tx.update(theirs, pending) is False
    assert store.get(pending.id) == mine


def test_update_sees_earlier_writes_of_the_same_transaction(store, jobs):
    pending = jobs.add()
    claimed = states.claim(pending, owner=OWNER, now=NOW, lease=30)
    done = states.complete(claimed, attempt=1, owner=OWNER, result="r", now=NOW + 1)
    with store.transaction() as tx:
        assert tx.update(claimed, pending)
        assert tx.update(claimed, pending) is False  # the row already moved on
        assert tx.update(done, claimed)
    assert store.get(pending.id) == done


def test_a_late_completion_after_recovery_is_refused_by_the_row(store, jobs):
    running = jobs.add(PROCESSING, attempts=1, owner="node-a")
    recovered = states.recover(running, now=NOW, reason="lease expired")
    reclaimed = states.claim(recovered, owner="node-b", now=NOW, lease=30)
    with store.transaction() as tx:
        assert tx.update(recovered, running)
        assert tx.update(reclaimed, recovered)
    late = states.complete(running, attempt=1, owner="node-a", result="late", now=NOW + 2)
    with store.transaction() as tx:
        assert tx.update(late, running) is False
    assert store.get(running.id) == reclaimed


# -- lock: rows whose fenced updates follow (PostgreSQL decides and pipelines them) --------


def test_updates_after_lock_apply_hits_and_refuse_misses(store, jobs):
    """The Registry locks the rows of a batch's outcomes first; each outcome's fenced update
    must still be exact: applied on a match, refused (reported False) on a miss."""
    hit_1 = jobs.add(PROCESSING, attempts=1, owner=OWNER)
    hit_2 = jobs.add(PROCESSING, attempts=2, owner=OWNER)
    taken_over = jobs.add(PROCESSING, attempts=2, owner="node-b")  # recovered, reclaimed
    finished = jobs.add(JobStatus.COMPLETED)
    ghost = jobs.new(PROCESSING, owner=OWNER)  # never stored
    late_1 = states.complete(
        taken_over.replace(attempts=1, owner=OWNER), attempt=1, owner=OWNER, result=1, now=NOW
    )
    late_2 = states.complete(
        finished.replace(status=PROCESSING, owner=OWNER),
        attempt=1,
        owner=OWNER,
        result=2,
        now=NOW,
    )
    done_1 = states.complete(hit_1, attempt=1, owner=OWNER, result="one", now=NOW)
    policy = RetryPolicy(base=2.0, cap=60.0, uniform=lambda low, high: 1.0)
    done_2 = states.fail(hit_2, attempt=2, owner=OWNER, error="two", now=NOW, policy=policy)
    with store.transaction() as tx:
        tx.lock([hit_1.id, taken_over.id, hit_2.id, finished.id, ghost.id, hit_1.id])
        assert tx.update(done_1, hit_1) is True
        assert tx.update(late_1, taken_over.replace(attempts=1, owner=OWNER)) is False
        assert tx.update(late_2, finished.replace(status=PROCESSING, owner=OWNER)) is False
        assert tx.update(ghost.replace(status=JobStatus.COMPLETED), ghost) is False
        assert tx.update(done_2, hit_2) is True
        assert tx.update(done_2, hit_2) is False  # the row moved on in this transaction
    assert store.get(hit_1.id) == done_1
    assert store.get(hit_2.id) == done_2
    assert store.get(taken_over.id) == taken_over
    assert store.get(finished.id) == finished
    assert store.get(ghost.id) is None


def test_a_batch_mixing_locked_claimed_and_read_rows_stays_consistent(store, jobs):
    """Claims (rows read FOR UPDATE), outcomes of locked rows and reads in one transaction:
    every read sees the writes made before it, and every fence the row as it is by then."""
    running = [jobs.add(PROCESSING, attempts=1, owner=OWNER) for _ in range(3)]
    waiting = [jobs.add() for _ in range(2)]
    with store.transaction() as tx:
        tx.lock([job.id for job in running])
        claimed = []
        for job in tx.claimable(NOW, 10):
            taken = states.claim(job, owner=OWNER, now=NOW, lease=30)
            assert tx.update(taken, job)
            claimed.append(taken)
        assert [job.id for job in claimed] == [job.id for job in waiting]
        done = states.complete(running[0], attempt=1, owner=OWNER, result="r", now=NOW)
        assert tx.update(done, running[0])
        released = states.release(running[1], attempt=1, owner=OWNER, now=NOW)
        assert tx.update(released, running[1])
        # Reads after the writes see them.
        assert tx.get(running[0].id) == done
        assert [job.id for job in tx.processing(OWNER)] == [
            running[2].id,
            *[job.id for job in claimed],
        ]
        assert [job.id for job in tx.claimable(NOW, 10)] == [running[1].id]
        # A later write is fenced on the row as this transaction left it.
        late = states.complete(running[1], attempt=1, owner=OWNER, result="late", now=NOW)
        assert tx.update(late, running[1]) is False
        again = states.claim(released, owner=OWNER, now=NOW, lease=30)
        assert tx.update(again, released)
        assert tx.update(done, running[0]) is False
    assert store.get(running[0].id) == done
    assert store.get(running[1].id) == again
    assert store.get(running[2].id) == running[2]
    assert [store.get(job.id) for job in waiting] == claimed


def test_lock_after_a_write_of_the_same_transaction_keeps_that_write(store, jobs):
    running = jobs.add(PROCESSING, attempts=1, owner=OWNER)
    recovered = states.recover(running, now=NOW, reason="lease expired")
    with store.transaction() as tx:
        assert tx.update(recovered, running)
        tx.lock([running.id])
        late = states.complete(running, attempt=1, owner=OWNER, result="late", now=NOW)
        assert tx.update(late, running) is False
        assert tx.get(running.id) == recovered
    assert store.get(running.id) == recovered


def test_updates_after_lock_in_a_rolled_back_transaction_write_nothing(store, jobs):
    running = jobs.add(PROCESSING, attempts=1, owner=OWNER)
    done = states.complete(running, attempt=1, owner=OWNER, result="r", now=NOW)
    with pytest.raises(Boom), store.transaction() as tx:
        tx.lock([running.id])
        assert tx.update(done, running)
        raise Boom
    assert store.get(running.id) == running
    with store.transaction() as tx:  # and the row is free again
        tx.lock([running.id])
        assert tx.update(done, running)
    assert store.get(running.id) == done


# -- idempotency keys -------------------------------------------------------------------


def test_find_by_idempotency_key(store, jobs):
    keyed = jobs.add(idempotency_key="order-42", request_hash="h1")
    jobs.add()
    with store.transaction() as tx:
        assert tx.find_by_idempotency_key("order-42") == keyed
        assert tx.find_by_idempotency_key("order-43") is None


def test_find_by_idempotency_key_sees_the_transactions_own_insert(store, jobs):
    keyed = jobs.new(idempotency_key="k")
    with store.transaction() as tx:
        tx.insert(keyed)
        assert tx.find_by_idempotency_key("k") == keyed


def test_idempotency_key_of_a_rolled_back_insert_is_free(store, jobs):
    with pytest.raises(Boom), store.transaction() as tx:
        tx.insert(jobs.new(idempotency_key="k"))
        raise Boom
    with store.transaction() as tx:
        assert tx.find_by_idempotency_key("k") is None
    again = jobs.add(idempotency_key="k")
    with store.transaction() as tx:
        assert tx.find_by_idempotency_key("k") == again


def test_an_idempotency_key_is_unique(store, jobs):
    first = jobs.add(idempotency_key="k")
    second = jobs.new(idempotency_key="k")
    with pytest.raises(Conflict), store.transaction() as tx:
        tx.insert(second)
    assert store.get(second.id) is None
    with store.transaction() as tx:
        assert tx.find_by_idempotency_key("k") == first


def test_many_jobs_without_a_key(store, jobs):
    several = [jobs.new() for _ in range(3)]
    jobs.insert(*several)
    assert [job.idempotency_key for job in store.list(JobFilter(order="oldest")).jobs] == [
        None,
        None,
        None,
    ]


# -- JSON and times ---------------------------------------------------------------------

JSON_VALUES = [
    None,
    {},
    [],
    "",
    "plain",
    0,
    -1,
    2**53 + 1,
    2**70,
    -(2**63),
    0.1,
    -0.0,
    1e-300,
    1.7976931348623157e308,
    True,
    False,
    {"nested": {"list": [1, [2, [3, {"deep": None}]]], "empty": {}}},
    [None, True, 0, "0", 0.5, {"k": []}],
    "unicode: héllo wörld 日本語 Ελληνικά עברית 🎉👩‍💻",
    {"ключ": "значение", "emoji 🎉": ["🚀"]},
    "control: \u0000 \n \t \r \u001f \u007f \u2028 \u2029",
    "quotes: \" ' \\ / `",
    {"": "empty key", " ": "space key"},
    "x" * 100_000,
]


def _same_json(got, expected) -> bool:
    """Equal, and the same JSON (so True is not 1 and 1.0 is not 1)."""
    return got == expected and json.dumps(got) == json.dumps(expected)


@pytest.mark.parametrize("value", JSON_VALUES, ids=range(len(JSON_VALUES)))
def test_payload_round_trips(store, jobs, value):
    job = jobs.add(payload=value)
    assert _same_json(store.get(job.id).payload, value)
    with store.transaction() as tx:
        assert _same_json(tx.get(job.id).payload, value)


@pytest.mark.parametrize("value", JSON_VALUES, ids=range(len(JSON_VALUES)))
def test_result_round_trips(store, jobs, value):
    running = jobs.add(PROCESSING)
    done = states.complete(running, attempt=1, owner=OWNER, result=value, now=NOW)
    with store.transaction() as tx:
        assert tx.update(done, running)
    assert _same_json(store.get(running.id).result, value)


def test_unicode_text_fields_round_trip(store, jobs):
    job = jobs.add(
        FAILED,
        type="échec",  # the store does not validate types; the spec parser does
        last_error="Ошибка: 失败 💥\nline two",
        idempotency_key="ключ-🔑",
        request_hash="hash-ü",
    )
    assert store.get(job.id) == job


def test_a_result_with_a_lone_surrogate_can_be_stored(store, jobs):
    # Text from surrogateescape-decoded bytes (file names): the store must not choke on it.
    value = json.loads('{"name": "\\udce9t\\u00e9"}')  # valid JSON text
    running = jobs.add(PROCESSING)
    done = states.complete(running, attempt=1, owner=OWNER, result=value, now=NOW)
    with store.transaction() as tx:
        assert tx.update(done, running)
    assert store.get(running.id).result == value


def test_an_error_message_with_a_lone_surrogate_can_be_stored(store, jobs):
    running = jobs.add(PROCESSING)
    error = "FileNotFoundError: " + b"/data/\xe9t\xe9.csv".decode("utf-8", "surrogateescape")
    policy = RetryPolicy(base=1.0, cap=1.0, uniform=lambda low, high: 1.0)
    failed = states.fail(running, attempt=1, owner=OWNER, error=error, now=NOW, policy=policy)
    with store.transaction() as tx:
        assert tx.update(failed, running)
    stored = store.get(running.id)
    assert stored.status is FAILED
    assert isinstance(stored.last_error, str)
    assert stored.last_error.startswith("FileNotFoundError: /data/")


TIMES = [
    NOW,
    NOW + 0.1,
    0.1 + 0.2,
    1_700_000_000.123456789,
    1_764_403_784.987654321,
    1e-7,
    0.0,
    2**52 + 0.5,
    4_102_444_800.000001,
]


@pytest.mark.parametrize("moment", TIMES, ids=range(len(TIMES)))
def test_times_stay_exact_floats(store, jobs, moment):
    job = jobs.add(
        PROCESSING,
        created_at=moment,
        updated_at=moment + 1 / 3,
        started_at=moment * 1.000001,
        lease_expires_at=moment + 0.000001,
        run_at=moment - 1 / 7,
    )
    stored = store.get(job.id)
    for name in ("created_at", "updated_at", "started_at", "lease_expires_at", "run_at"):
        assert type(getattr(stored, name)) is float, name
        assert getattr(stored, name) == getattr(job, name), name
    assert stored.finished_at is None


def test_unset_times_stay_none(store, jobs):
    job = jobs.add(run_at=None, started_at=None, finished_at=None, lease_expires_at=None)
    stored = store.get(job.id)
    assert (stored.run_at, stored.started_at, stored.finished_at, stored.lease_expires_at) == (
        None,
        None,
        None,
        None,
    )


def test_job_types_and_statuses_come_back_as_the_domain_types(store, jobs):
    for status in JobStatus:
        job = jobs.add(status)
        stored = store.get(job.id)
        assert stored.status is status
        assert isinstance(stored, Job)
        assert type(stored.attempts) is int
        assert type(stored.retry_base) is int
        assert type(stored.max_retries) is int


def test_error_text_with_control_characters_round_trips(store, jobs):
    job = jobs.add(FAILED, last_error="nul:\x00 bell:\x07 tab:\t cr:\r lf:\n del:\x7f end")
    assert store.get(job.id).last_error == job.last_error
