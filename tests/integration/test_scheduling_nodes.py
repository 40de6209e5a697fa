"""Two ledgers on two PostgreSQL connections (two nodes) claiming a limited type at the
same moment: the second claim waits for the first to commit, then counts its rows, so the
limit holds exactly; claims of an unlimited type do not wait."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.pg import ScratchDatabase, scratch_database
from tests.support import wait_until
from workstream.actors.batch import Batch
from workstream.actors.job_ledger import JobLedger
from workstream.actors.registry_messages import Claim, Create
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.spec import JobSpec
from workstream.jobs.throttle import Throttle
from workstream.jobs.types import TypeLimits
from workstream.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

NOW = 1_800_000_000.0
LIMITS = {
    "limited": TypeLimits.build(max_concurrency=3),
    "rated": TypeLimits.build(rate_limit="4/s"),
}


@pytest.fixture
def database() -> Iterator[ScratchDatabase]:
    with scratch_database("ws_sched_ledgers") as db:
        yield db


def node(db: ScratchDatabase, name: str) -> tuple[PostgresStore, JobLedger]:
    store = PostgresStore(db.url, statement_timeout=10.0, lock_timeout=10.0)
    store.open()
    ids = (f"{name}-{n}" for n in itertools.count())
    ledger = JobLedger(
        owner=name,
        new_id=lambda: next(ids),
        retry_policy=RetryPolicy(1.0, 10.0),
        lease_duration=30.0,
        default_max_retries=0,
        throttle=Throttle(LIMITS, 300.0),
    )
    return store, ledger


def apply(store: PostgresStore, ledger: JobLedger, command: Any, now: float = NOW) -> Any:
    batch = Batch(now=now)
    with store.transaction() as tx:
        ledger.apply(command, tx, batch)
    [(_, value, error)] = batch.answers
    assert error is None, error
    return value


def test_two_nodes_claiming_a_limited_type_at_once_never_exceed_it(database) -> None:
    (store_a, ledger_a), (store_b, ledger_b) = node(database, "a"), node(database, "b")
    try:
        limited = Create([JobSpec("limited") for _ in range(10)], None)
        apply(store_a, ledger_a, limited, now=NOW - 1)  # older: A's claim takes these first
        apply(store_a, ledger_a, Create([JobSpec("free") for _ in range(4)], None))
        got: dict[str, Any] = {}
        with store_a.transaction() as tx_a:
            batch = Batch(now=NOW)
            ledger_a.apply(Claim(2, None), tx_a, batch)  # holds limited's row until commit
            first = batch.answers[0][1]

            def claim_on_b() -> None:
                got["b"] = apply(store_b, ledger_b, Claim(10, None))

            other = threading.Thread(target=claim_on_b)
            other.start()
            wait_until(
                lambda: (
                    database.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )[0][0]
                    == 1
                ),
                timeout=10,
                what="B's claim waiting for the type's row A holds",
            )
            assert other.is_alive()
        other.join(10)
        assert not other.is_alive()
        limited_a = [job for job in first.jobs if job.type == "limited"]
        limited_b = [job for job in got["b"].jobs if job.type == "limited"]
        assert len(limited_a) + len(limited_b) == 3  # exactly the limit, over both nodes
        assert len(limited_a) == 2  # A first, then B counted A's rows: 1 more
        assert {job.type for job in got["b"].jobs} <= {"limited", "free"}
    finally:
        store_a.close()
        store_b.close()


def test_a_rate_window_is_shared_by_the_nodes(database) -> None:
    (store_a, ledger_a), (store_b, ledger_b) = node(database, "a"), node(database, "b")
    try:
        apply(store_a, ledger_a, Create([JobSpec("rated") for _ in range(10)], None))
        a = apply(store_a, ledger_a, Claim(3, None), now=NOW + 0.1)
        b = apply(store_b, ledger_b, Claim(10, None), now=NOW + 0.2)
        assert (len(a.jobs), len(b.jobs)) == (3, 1)  # 4 per second in all
        assert b.next_run_at == NOW + 1  # the next window
        c = apply(store_b, ledger_b, Claim(10, None), now=NOW + 1.0)
        assert len(c.jobs) == 4
    finally:
        store_a.close()
        store_b.close()
