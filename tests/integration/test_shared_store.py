"""What the engine does differently on a store that several nodes share (PostgreSQL), shown
on the in-memory store marked as shared: start-up recovers by expired lease only, and a
wake-up from the store (another node's new job) starts work at once.

The same behaviour on real PostgreSQL, with two server processes, is in
tests/e2e/test_multinode.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.conftest import Watcher, engine_factory
from tests.support import make_job
from workstream.jobs.events import JOB_COMPLETED, JOB_RECOVERED
from workstream.jobs.model import JobStatus
from workstream.store.memory import MemoryStore
from workstream.system import System


class SharedMemoryStore(MemoryStore):
    """The in-memory store, as if other processes shared it: keeps the wake callback."""

    exclusive = False

    def __init__(self) -> None:
        super().__init__()
        self.wake: Callable[[], None] | None = None

    def watch(self, wake: Callable[[], None]) -> None:
        self.wake = wake


@pytest.fixture
def shared() -> Iterator[tuple[SharedMemoryStore, Callable[[], tuple[System, Watcher]]]]:
    store = SharedMemoryStore()
    start, engines = engine_factory(lambda: store)
    # A sweep interval far beyond the test: only the store's wake-up can start work.
    yield store, lambda: start(sweeper_interval=600.0)
    for engine in engines:
        engine.stop()


def test_start_up_recovers_expired_leases_only_never_a_live_nodes_jobs(shared) -> None:
    store, start = shared
    now = time.time()
    with store.transaction() as tx:
        tx.insert(
            make_job(
                "held-by-a-live-node",
                status=JobStatus.PROCESSING,
                attempts=1,
                owner="live-node",
                lease_expires_at=now + 600,
                now=now,
            )
        )
        tx.insert(
            make_job(
                "left-by-a-dead-node",
                status=JobStatus.PROCESSING,
                attempts=1,
                owner="dead-node",
                lease_expires_at=now - 1,
                now=now,
            )
        )
    engine, watcher = start()
    assert engine.recovered == 1
    watcher.wait_for(JOB_COMPLETED, job_id="left-by-a-dead-node")
    assert engine.jobs.get("left-by-a-dead-node").attempts == 2  # the interrupted attempt counts
    live = engine.jobs.get("held-by-a-live-node")
    assert (live.status, live.owner) == (JobStatus.PROCESSING, "live-node")
    assert watcher.count(JOB_RECOVERED) == 1


def test_a_wake_up_from_the_store_starts_another_nodes_job_at_once(shared) -> None:
    store, start = shared
    engine, watcher = start()
    assert store.wake is not None, "the engine did not watch its shared store"
    with store.transaction() as tx:  # as another node's submission would
        tx.insert(make_job("from-another-node", now=time.time()))
    store.wake()
    watcher.wait_for(JOB_COMPLETED, job_id="from-another-node", timeout=10.0)
    assert engine.jobs.get("from-another-node").status is JobStatus.COMPLETED
